"""Step-level backup and restore: a run killed mid-epoch resumes at the
step it last saved, with the same data position, noise and optimizer
state."""

import os

import keras
import tensorflow as tf

from keras_vae.callbacks import _training_state as ts

_REPLAY_ATTR = "_keras_vae_replayed_batches"


def replayed_batches(model):
    """How many batches at the start of the current epoch are the no-op
    replays of a resumed run (callbacks that count batches skip them)."""
    return getattr(model, _REPLAY_ATTR, 0)


class StepBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` at step granularity.

    Keras' callback restores the weights and the epoch: a run interrupted
    mid-epoch repeats that epoch from its first batch, with the data drawn
    anew and the noise and optimizer state of the epoch's end. This one
    saves, every `save_freq` steps (or at the start of each epoch), and
    restores at the next `fit`:

    - the model's variables: weights, non-trainable state, and the state of
      every `keras.random.SeedGenerator` (the samplers' noise streams);
    - every optimizer's variables (slots, step count, loss scale), the
      model's and an objective's own;
    - the metrics' accumulators of the epoch, so the epoch's logs are the
      uninterrupted run's;
    - the position: epoch, step, and the data iterator's position.

    ```none
    uninterrupted:  steps 0 1 2 3 4 5 6 7 8 9 ...
    killed:         steps 0 1 2 3 4 5 6 ✗          (saved before step 4)
    resumed:                        4 5 6 7 8 9 ... same batches, noise,
                                                    optimizer state
    ```

    The data position: `fit` creates the data iterator itself, and the
    callback sees it by wrapping `model.train_function` for the length of
    `fit`. On one device (no multi-replica strategy) it saves the
    `tf.data` iterator with `tf.train.Checkpoint`: the exact position of
    any pipeline, shuffling buffers and per-epoch reshuffling included.
    Under `MirroredStrategy` / `MultiWorkerMirroredStrategy` the iterator
    is a `tf.distribute` iterator, which TensorFlow cannot checkpoint; the
    callback then re-reads (and discards) the batches already consumed
    from a fresh iterator, which is the same position only if the
    dataset's order is reproducible in a new process: a dataset without
    per-epoch reshuffling, or `dataset.shuffle(n, seed=s).repeat()` with
    `fit(..., steps_per_epoch=...)` (one iterator for the whole run,
    reshuffled reproducibly within it).

    In the resumed epoch Keras calls the batch loop from batch 0: the
    batches done before the interruption are no-op calls (no data read, no
    update, the restored metrics as logs), so batch numbers, epoch lengths
    and the epoch's logs are the uninterrupted run's. Callbacks that count
    batches themselves see those calls (keras_vae's schedules skip them).

    Multi-worker: every worker must call `fit` with this callback (saving
    reads variables collectively). The chief writes the checkpoint, the
    other workers write theirs to temporary directories they delete, and
    each worker writes its own iterator position; a barrier then lets the
    chief commit. When a worker dies the others fail at their next
    collective: restart every worker, and each resumes from the last
    commit (TensorFlow's recovery model; `backup_dir` must be on storage
    every worker reads).

    Bit-for-bit resumption needs deterministic steps: the same program,
    devices and batch shapes as the interrupted run (XLA on CPU is; GPU
    kernels with atomic reductions, or a changed `steps_per_execution`, are
    not).

    Args:
        backup_dir: directory of the checkpoint, for this run only. Must be
            on storage every worker reads (multi-worker).
        save_freq: `"epoch"` (before the first step of each epoch) or a
            positive int: every `save_freq` steps (each save before the
            step that follows them).
        delete_checkpoint: delete `backup_dir` when `fit` completes
            (default True); with False the final state is kept and a new
            `fit` with the callback continues after the completed epochs.

    Example:

    ```python
    backup = keras_vae.callbacks.StepBackupAndRestore("/tmp/run1", save_freq=100)
    vae.fit(dataset, epochs=20, callbacks=[backup])   # rerun after a crash
    ```

    References: keras.callbacks.BackupAndRestore; the fault-tolerance
    section of TensorFlow's multi-worker training guide.
    """

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        valid = save_freq == "epoch" or (
            isinstance(save_freq, int) and not isinstance(save_freq, bool)
            and save_freq > 0)
        if not valid:
            raise ValueError(
                "Invalid value received for argument `save_freq`. Expected "
                "'epoch' or a positive int (steps). Received: "
                f"save_freq={save_freq!r}"
            )
        super().__init__(backup_dir, save_freq=save_freq,
                         delete_checkpoint=delete_checkpoint)
        self._active = False

    # ------------------------------------------------------- fit hooks
    def on_train_begin(self, logs=None):
        model = self.model
        ts.build_optimizers(model)
        self._role = ts.WorkerRole(model.distribute_strategy)
        self._state = ts.TrainingState(model)
        self._spe = int(model.steps_per_execution or 1)
        self._calls = self._saved_calls = 0  # train_function calls so far
        self._epoch = self._epoch_calls = 0
        self._iterator, self._iterator_calls = None, 0
        self._pending = None
        self._set_initial_epoch = False
        self._generation = 0  # commits so far: names checkpoint directories
        self._restored_mode = None
        self._completed = 0   # epochs completed
        setattr(model, _REPLAY_ATTR, 0)
        commit = ts.read_commit(self.backup_dir)
        if commit is not None:
            self._restore(commit)
        function = model.train_function
        owner = getattr(function, "__self__", None)
        if isinstance(owner, StepBackupAndRestore):
            # Left by a fit that ended in an exception (a retry in the
            # same process): wrap what that callback wrapped.
            function = owner._train_function
        self._train_function = function
        model.train_function = self._step
        self._active = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch, self._epoch_calls = epoch, 0
        pending = self._pending
        if pending is not None and pending["epoch"] == epoch:
            # Keras has just reset the metrics: the epoch's accumulators.
            self._state.set_metrics(pending["metrics"])
            setattr(self.model, _REPLAY_ATTR,
                    pending["epoch_calls"] * self._spe)

    def on_epoch_end(self, epoch, logs=None):
        # "epoch" saves happen before the next epoch's first step.
        self._completed = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        pass  # saves happen in `_step`, before a step

    def on_train_end(self, logs=None):
        model = self.model
        self._active = False
        if model.train_function == self._step:  # a bound method: ==, not is
            model.train_function = self._train_function
        setattr(model, _REPLAY_ATTR, 0)
        if self._set_initial_epoch:
            model._initial_epoch = None  # set by _restore, Keras' mechanism
        if self.delete_checkpoint:
            self._role.barrier()
            if self._role.is_chief:
                ts.remove_tree(self.backup_dir)
        else:
            self._save(None, final=True)

    # ------------------------------------------------------------ step
    def _step(self, iterator):
        """`model.train_function` while `fit` runs."""
        if not self._active:
            return self._train_function(iterator)
        if iterator is not self._iterator:
            # A new iterator: Keras makes one per epoch (one per run with
            # steps_per_epoch and a repeated dataset).
            self._iterator, self._iterator_calls = iterator, 0
            if self._pending is not None:
                self._position(iterator)
        if replayed_batches(self.model) > self._epoch_calls * self._spe:
            self._epoch_calls += 1  # done before the interruption
            if replayed_batches(self.model) <= self._epoch_calls * self._spe:
                setattr(self.model, _REPLAY_ATTR, 0)
                self._pending = None
            return self.model.get_metrics_result()
        self._pending = None
        if self._due():
            self._save(iterator)
        logs = self._train_function(iterator)
        self._calls += 1
        self._epoch_calls += 1
        self._iterator_calls += 1
        return logs

    def _due(self):
        if self._calls == self._saved_calls:
            return False  # just restored or saved here
        if self.save_freq == "epoch":
            return self._epoch_calls == 0
        steps = self._calls * self._spe
        return steps // self.save_freq > (
            self._saved_calls * self._spe) // self.save_freq

    # ---------------------------------------------------------- saving
    def _save(self, iterator, final=False):
        role, calls = self._role, self._calls
        if final and calls == self._saved_calls and self._pending_final():
            return  # a completed run restored and nothing trained since
        # Named by the commit count, which only grows (across restarts
        # too): a new checkpoint never overwrites the committed one.
        self._generation += 1
        name = f"ckpt-{self._generation:06d}-step-{calls * self._spe}"
        directory = os.path.join(self.backup_dir, name)
        if role.is_chief:
            ts.write_atomically(
                lambda tmp: self._state.write(os.path.join(tmp, "ckpt")),
                os.path.join(directory, "state"))
        else:
            # Every worker writes (the write reads variables collectively);
            # only the chief's copy is kept.
            tmp = os.path.join(self.backup_dir, f".tmp-{role.task}")
            self._state.write(os.path.join(tmp, "ckpt"))
            ts.remove_tree(tmp)
        mode = "none" if final else self._iterator_mode(iterator)
        if mode == "checkpoint":
            ts.write_atomically(
                lambda tmp: tf.train.Checkpoint(iterator=iterator).write(
                    os.path.join(tmp, "ckpt")),
                os.path.join(directory, f"iterator-{role.task}"))
        role.barrier()  # every worker's part is on disk
        if role.is_chief:
            ts.write_commit(self.backup_dir, {
                "checkpoint": name,
                "generation": self._generation,
                "epoch": self._completed if final else self._epoch,
                "epoch_calls": 0 if final else self._epoch_calls,
                "iterator_calls": 0 if final else self._iterator_calls,
                "calls": calls,
                "steps_per_execution": self._spe,
                "iterator": mode,
                "workers": role.num_workers,
            })
            ts.remove_stale(self.backup_dir, keep=name)
        role.barrier()  # nobody reads a directory the chief removes
        self._saved_calls = calls

    def _pending_final(self):
        """Whether the restored checkpoint is a completed run's."""
        return self._restored_mode == "none"

    @staticmethod
    def _iterator_mode(iterator):
        """"checkpoint" for a tf.data iterator, "replay" for a
        tf.distribute one (TensorFlow cannot checkpoint those)."""
        if isinstance(iterator, tf.data.Iterator) and not isinstance(
                iterator, tf.distribute.DistributedIterator):
            return "checkpoint"
        return "replay"

    # -------------------------------------------------------- restoring
    def _restore(self, commit):
        role = self._role
        if commit.get("workers", 1) != role.num_workers:
            raise ValueError(
                f"The checkpoint in {self.backup_dir} was written by "
                f"{commit['workers']} worker(s); this run has "
                f"{role.num_workers}. Resume with the same cluster, or "
                "delete the backup directory to start afresh."
            )
        if commit["steps_per_execution"] != self._spe:
            raise ValueError(
                f"The checkpoint in {self.backup_dir} was written with "
                f"steps_per_execution={commit['steps_per_execution']}; "
                f"compile() gave {self._spe}. Resume with the same value."
            )
        directory = os.path.join(self.backup_dir, commit["checkpoint"])
        metrics = self._state.read(os.path.join(directory, "state", "ckpt"))
        self._calls = self._saved_calls = commit["calls"]
        self._generation = commit["generation"]
        self._completed = commit["epoch"]
        # Keras' own mechanism (keras.callbacks.BackupAndRestore sets it).
        self.model._initial_epoch = commit["epoch"]
        self._set_initial_epoch = True
        self._restored_mode = commit["iterator"]
        self._pending = {
            "epoch": commit["epoch"],
            "epoch_calls": commit["epoch_calls"],
            "iterator_calls": commit["iterator_calls"],
            "iterator": commit["iterator"],
            "path": os.path.join(directory, f"iterator-{role.task}", "ckpt"),
            "metrics": metrics,
        }

    def _position(self, iterator):
        """Puts a fresh iterator where the saved run's was."""
        pending = self._pending
        mode = pending["iterator"]
        if mode == "checkpoint" and self._iterator_mode(iterator) != mode:
            raise ValueError(
                "The checkpoint holds the position of a tf.data iterator "
                "(a run on one device); this run's data iterator is a "
                "tf.distribute one. Resume under the same strategy."
            )
        if mode == "checkpoint":
            tf.train.Checkpoint(iterator=iterator).read(
                pending["path"]).assert_consumed()
        elif mode == "replay" and pending["iterator_calls"]:
            _skip(iterator, pending["iterator_calls"] * self._spe)
        self._iterator_calls = pending["iterator_calls"]


@tf.function
def _skip(iterator, n):
    """Reads and discards `n` batches of `iterator`."""
    for _ in tf.range(n):
        iterator.get_next()
