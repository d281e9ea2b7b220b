"""What `StepBackupAndRestore` saves, and how it writes it to disk.

```none
<backup_dir>/
  checkpoint.json            the commit record: which ckpt-* is complete,
                             and the position in training (written last,
                             by the chief, replaced atomically)
  ckpt-<calls>/state/        weights, every optimizer's variables, the
                             metrics' accumulators (tf.train.Checkpoint)
  ckpt-<calls>/iterator-<w>/ worker w's tf.data iterator (one device only)
```

Each directory is written under a temporary name and renamed when
complete; `checkpoint.json` is replaced (write, then rename) only after
every worker has written its part, so a process killed at any moment
leaves either the previous or the new checkpoint, never a mixture.
"""

import json
import os
import shutil
import uuid

import keras
import tensorflow as tf

COMMIT = "checkpoint.json"


def _tf_variable(v):
    """The tf.Variable (or distributed variable) behind a Keras variable."""
    return v.value if isinstance(v, keras.Variable) else v


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        v = _tf_variable(v)
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def optimizers(model):
    """The model's optimizer and any an objective owns (a discriminator's),
    each once."""
    found = [getattr(model, "optimizer", None)]
    layer = getattr(model, "objective_layer", None)
    found.append(getattr(layer, "optimizer", None))
    own = getattr(getattr(model, "objective", None), "optimizer", None)
    if callable(own) and not isinstance(own, keras.optimizers.Optimizer):
        own = own()  # the objective's own optimizer, as an accessor
    found.append(own)
    out, seen = [], set()
    for opt in found:
        if isinstance(opt, keras.optimizers.Optimizer) and id(opt) not in seen:
            seen.add(id(opt))
            out.append(opt)
    return out


def build_optimizers(model):
    """Creates the optimizers' variables (slots) so that they can be
    restored before the first step, as Keras' BackupAndRestore does."""
    opt = getattr(model, "optimizer", None)
    if opt is not None and not opt.built:
        with model.distribute_strategy.scope():
            opt.build(model.trainable_variables)


class TrainingState:
    """The variables of one checkpoint: the model's (weights, non-trainable
    state, the samplers' `SeedGenerator` states), every optimizer's, and
    the metrics' accumulators. Keys are indices with the variable's path,
    so a checkpoint of another model fails to load with a clear error."""

    def __init__(self, model):
        self.model = model
        layer = getattr(model, "objective_layer", None)
        extra = list(layer.variables) if layer is not None else []
        self.variables = _unique(list(model.variables) + extra)
        self.optimizer_variables = _unique(
            [v for opt in optimizers(model) for v in opt.variables])
        self.metric_variables = _unique(model.metrics_variables)

    def _checkpoint(self, metrics):
        def named(variables):
            return {f"{i:05d}": v for i, v in enumerate(variables)}

        return tf.train.Checkpoint(
            variables=named(self.variables),
            optimizers=named(self.optimizer_variables),
            metrics=named(metrics),
        )

    def write(self, path):
        self._checkpoint(self.metric_variables).write(path)

    def read(self, path):
        """Restores weights and optimizers now; returns the metrics' saved
        values (to be set when Keras has reset the metrics of the epoch)."""
        holders = []
        with tf.init_scope():
            for v in self.metric_variables:
                holders.append(tf.Variable(tf.zeros(v.shape, v.dtype),
                                           trainable=False))
        try:
            status = self._checkpoint(holders).read(path)
            status.assert_existing_objects_matched()
            status.expect_partial()
        except (AssertionError, ValueError, tf.errors.OpError) as error:
            raise ValueError(
                f"The checkpoint {path} does not match model "
                f"'{self.model.name}' (its variables, optimizers and "
                "metrics must be those of the run that wrote it; delete "
                f"the backup directory to start afresh): {error}"
            ) from error
        return [h.numpy() for h in holders]

    def set_metrics(self, values):
        for v, value in zip(self.metric_variables, values):
            v.assign(value)


# ----------------------------------------------------------------- files
def write_atomically(write, final_dir):
    """`write(tmp_dir)`, then rename `tmp_dir` to `final_dir` (replacing an
    uncommitted leftover of an earlier attempt)."""
    tmp = f"{final_dir}.tmp-{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(tmp)
    write(tmp)
    if tf.io.gfile.exists(final_dir):
        tf.io.gfile.rmtree(final_dir)
    tf.io.gfile.rename(tmp, final_dir)


def read_commit(backup_dir):
    path = os.path.join(backup_dir, COMMIT)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def write_commit(backup_dir, record):
    """Replaces `checkpoint.json` in one rename: readers see the old or the
    new record, never a partial one."""
    path = os.path.join(backup_dir, COMMIT)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write(json.dumps(record, indent=1))
    tf.io.gfile.rename(tmp, path, overwrite=True)


def remove_stale(backup_dir, keep):
    """Deletes checkpoint directories other than `keep` (older ones and
    leftovers of interrupted writes)."""
    for name in tf.io.gfile.listdir(backup_dir):
        name = name.rstrip("/")
        if name.startswith("ckpt-") and name != keep:
            tf.io.gfile.rmtree(os.path.join(backup_dir, name))


def remove_tree(path):
    if tf.io.gfile.exists(path):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)


def local_rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------- workers
class WorkerRole:
    """Who this process is in a `MultiWorkerMirroredStrategy` cluster."""

    def __init__(self, strategy):
        self.strategy = strategy
        resolver = getattr(strategy, "cluster_resolver", None)
        spec = resolver.cluster_spec().as_dict() if resolver else {}
        self.multi_worker = bool(spec) and isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if self.multi_worker:
            self.task = f"{resolver.task_type}-{resolver.task_id}"
            self.is_chief = bool(strategy.extended.should_checkpoint)
            self.num_workers = sum(len(v) for k, v in spec.items()
                                   if k in ("chief", "worker"))
        else:
            self.task, self.is_chief, self.num_workers = "worker-0", True, 1
        self._barrier = None

    def barrier(self):
        """Returns when every worker has called it (a collective sum)."""
        if not self.multi_worker:
            return
        if self._barrier is None:
            strategy = self.strategy

            @tf.function
            def barrier():
                ones = strategy.run(lambda: tf.ones([], tf.int32))
                return strategy.reduce("SUM", ones, axis=None)

            self._barrier = barrier
        self._barrier()
