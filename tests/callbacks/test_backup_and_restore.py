"""StepBackupAndRestore: a run interrupted mid-epoch resumes at the step it
last saved and ends with the uninterrupted run's weights, bit for bit.

In-process tests interrupt `fit` with an exception from a callback (as a
crash would) and resume with a new model in a new `fit`; the SIGKILL tests
(one process, two workers) are in tests/models/test_fault_tolerance.py.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.callbacks import KLWarmUp, StepBackupAndRestore
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data, mlp_vae


class Interrupt(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Raises after `step` train steps of this fit (a crash)."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise Interrupt


class Record(keras.callbacks.Callback):
    """The loss logged after each batch and each epoch."""

    def __init__(self):
        super().__init__()
        self.batches, self.epochs = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.batches.append((batch, float(logs["loss"])))

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append((epoch, float(logs["loss"])))


def build(objective="elbo", jit_compile=False):
    """Uncompiled steps keep these tests fast (each run is a new model, an
    XLA compilation each); the XLA runs are the SIGKILL tests' and
    `test_xla_run_resumes_bit_for_bit`."""
    keras.utils.set_random_seed(0)
    vae = mlp_vae(seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3), loss=BernoulliNLL(),
                objective=objective, jit_compile=jit_compile,
                num_samples=3 if objective == "iwae" else None)
    return vae


def shuffled(n=320, batch=64, repeat=False):
    """Reshuffled each epoch: the order of an epoch depends on how many
    epochs the dataset has given, which only a restored iterator knows."""
    ds = tf.data.Dataset.from_tensor_slices(binary_data(n))
    ds = ds.shuffle(n, seed=7, reshuffle_each_iteration=True)
    return (ds.repeat() if repeat else ds).batch(batch)


def run(backup, interrupt=None, extra=(), data=shuffled, **fit_kwargs):
    """A new model trained with `backup`; the data made after the seed is
    set (tf.data's shuffle seed pairs the global seed with its own)."""
    vae = build(**fit_kwargs.pop("build", {}))
    record = Record()
    callbacks = [backup] if backup is not None else []
    callbacks += list(extra) + [record]
    if interrupt is not None:
        callbacks.append(InterruptAt(interrupt))
    fit_kwargs["x"] = data()
    fit_kwargs.setdefault("epochs", 3)
    try:
        vae.fit(verbose=0, callbacks=callbacks, **fit_kwargs)
    except Interrupt:
        return vae, record, True
    return vae, record, False


def assert_same_weights(a, b):
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a.optimizer.variables, b.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def straight():
    """The uninterrupted run (3 epochs of 5 batches), once for the module."""
    return run(None)[:2]


@pytest.mark.parametrize("save_freq,interrupt", [(2, 8), ("epoch", 12)])
def test_interrupted_run_resumes_to_the_same_weights(tmp_path, straight,
                                                     save_freq, interrupt):
    """5 batches per epoch; interrupted in epoch 1 (step 8) after a save
    before step 8, or in epoch 2 (step 12) after the save before step 10,
    the start of that epoch."""
    straight, straight_log = straight
    backup = StepBackupAndRestore(str(tmp_path / "b"), save_freq=save_freq)
    _, _, stopped = run(backup, interrupt=interrupt)
    assert stopped
    commit = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert commit["iterator"] == "checkpoint"
    resumed, resumed_log, _ = run(
        StepBackupAndRestore(str(tmp_path / "b"), save_freq=save_freq))
    assert_same_weights(straight, resumed)
    # The resumed epoch has the uninterrupted run's length and logs.
    assert resumed_log.epochs == straight_log.epochs[commit["epoch"]:]
    assert [b for b, _ in resumed_log.batches] == [
        b for b, _ in straight_log.batches][commit["epoch"] * 5:]
    assert not (tmp_path / "b").exists()  # deleted after a complete fit


def test_keras_backup_and_restore_does_not_resume_the_step(tmp_path,
                                                          straight):
    """The baseline this callback exists for: Keras' BackupAndRestore
    repeats the interrupted epoch from its start (with the epoch's data in
    another order and the noise state moved on), so the weights differ."""
    straight, _ = straight
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "k"),
                                              save_freq=2)
    run(backup, interrupt=8)
    resumed, _, _ = run(keras.callbacks.BackupAndRestore(
        str(tmp_path / "k"), save_freq=2))
    diff = max(np.abs(a - b).max() for a, b in
               zip(straight.get_weights(), resumed.get_weights()))
    assert diff > 1e-4


def test_repeated_dataset_with_steps_per_epoch(tmp_path):
    """One iterator for the whole run (`repeat()` + steps_per_epoch): the
    resumed epoch replays its first batches as no-ops and runs the rest."""
    kwargs = dict(data=lambda: shuffled(repeat=True), steps_per_epoch=4)
    straight, straight_log, _ = run(None, **kwargs)
    backup = StepBackupAndRestore(str(tmp_path / "b"), save_freq=3)
    run(backup, interrupt=7, **kwargs)
    resumed, resumed_log, _ = run(
        StepBackupAndRestore(str(tmp_path / "b"), save_freq=3), **kwargs)
    assert_same_weights(straight, resumed)
    assert resumed_log.epochs == straight_log.epochs[1:]


def test_kl_warm_up_continues_on_the_same_schedule(tmp_path):
    """The schedule follows the restored optimizer step and skips the
    replayed batches, whatever the order of the callbacks."""
    straight, _, _ = run(None, extra=[KLWarmUp(12)])
    backup = StepBackupAndRestore(str(tmp_path / "b"), save_freq=3)
    run(None, interrupt=8, extra=[KLWarmUp(12), backup])
    resumed, _, _ = run(None, extra=[
        KLWarmUp(12), StepBackupAndRestore(str(tmp_path / "b"), save_freq=3)])
    assert_same_weights(straight, resumed)


@pytest.mark.slow
def test_xla_run_resumes_bit_for_bit(tmp_path):
    """IWAE with the XLA-compiled step (VAEModel's default)."""
    config = {"objective": "iwae", "jit_compile": True}
    straight, _, _ = run(None, build=config)
    backup = StepBackupAndRestore(str(tmp_path / "b"), save_freq=4)
    run(backup, interrupt=9, build=config)
    resumed, _, _ = run(StepBackupAndRestore(str(tmp_path / "b"),
                                             save_freq=4), build=config)
    assert_same_weights(straight, resumed)


def test_an_uncommitted_write_is_ignored(tmp_path, straight):
    """A process killed while writing leaves a temporary directory that
    checkpoint.json does not name: the last committed checkpoint is used,
    and the leftover removed at the next save."""
    straight, _ = straight
    backup_dir = tmp_path / "b"
    run(StepBackupAndRestore(str(backup_dir), save_freq=2), interrupt=5)
    commit = json.loads((backup_dir / "checkpoint.json").read_text())
    leftover = backup_dir / "ckpt-000003-step-6" / "state.tmp-123"
    leftover.mkdir(parents=True)
    (leftover / "ckpt.index").write_text("half written")
    resumed, _, _ = run(StepBackupAndRestore(str(backup_dir), save_freq=2,
                                             delete_checkpoint=False))
    assert commit["checkpoint"] == "ckpt-000002-step-4"
    assert_same_weights(straight, resumed)
    names = os.listdir(backup_dir)
    assert "checkpoint.json" in names and not any(
        ".tmp" in n for n in names)
    # delete_checkpoint=False keeps the final state: another fit with the
    # callback has nothing left to do.
    done = json.loads((backup_dir / "checkpoint.json").read_text())
    assert done["epoch"] == 3 and done["iterator"] == "none"
    again, again_log, _ = run(StepBackupAndRestore(
        str(backup_dir), save_freq=2, delete_checkpoint=False))
    assert again_log.batches == [] and again_log.epochs == []
    assert_same_weights(straight, again)
    assert json.loads((backup_dir / "checkpoint.json").read_text()) == done


def test_retry_in_the_same_process_with_the_same_model(tmp_path, straight):
    """As in Keras' BackupAndRestore example: the fit that raised is retried
    on the same model object, with a new callback."""
    straight, _ = straight
    vae = build()
    try:
        vae.fit(shuffled(), epochs=3, verbose=0, callbacks=[
            StepBackupAndRestore(str(tmp_path / "b"), save_freq=2),
            InterruptAt(8)])
    except Interrupt:
        pass
    vae.fit(shuffled(), epochs=3, verbose=0, callbacks=[
        StepBackupAndRestore(str(tmp_path / "b"), save_freq=2)])
    assert_same_weights(straight, vae)


def test_another_model_is_refused(tmp_path):
    run(StepBackupAndRestore(str(tmp_path / "b"), save_freq=2), interrupt=3)
    keras.utils.set_random_seed(0)
    other = mlp_vae(seed=1, hidden=16)
    other.compile(optimizer="adam", loss=BernoulliNLL())
    with pytest.raises(ValueError, match="does not match model"):
        other.fit(shuffled(), epochs=1, verbose=0, callbacks=[
            StepBackupAndRestore(str(tmp_path / "b"), save_freq=2)])


@pytest.mark.parametrize("save_freq", [0, -3, 2.5, "batch", True])
def test_bad_save_freq(save_freq, tmp_path):
    with pytest.raises(ValueError, match="save_freq"):
        StepBackupAndRestore(str(tmp_path), save_freq=save_freq)
