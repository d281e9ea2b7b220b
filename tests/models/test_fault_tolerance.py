"""Surviving a lost process: a training run killed with SIGKILL mid-epoch
and restarted resumes, through `keras_vae.callbacks.StepBackupAndRestore`,
at the step it last saved, and ends with the uninterrupted run's weights
bit for bit (XLA on).

One process: on one device the data position is the tf.data iterator's
checkpoint. Two workers (MultiWorkerMirroredStrategy on 127.0.0.1, each
step XLA-compiled per replica): one worker SIGKILLs itself; the survivor
fails at its next collective (or is stopped by the test when it does not
within the bound); both restart and resume from the chief's last commit,
the data position re-read from a fresh distributed iterator.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.models.test_replica_step import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(**extra):
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                **extra)


ONE_PROCESS = textwrap.dedent(
    """
    import os, signal, sys
    import keras, numpy as np, tensorflow as tf
    from keras_vae.callbacks import StepBackupAndRestore
    from keras_vae.losses import BernoulliNLL
    from tests.builders import binary_data, mlp_vae


    class KillAt(keras.callbacks.Callback):
        def __init__(self, step):
            super().__init__()
            self.step, self.seen = step, 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == self.step:
                os.kill(os.getpid(), signal.SIGKILL)


    def train(out, backup_dir=None, kill_at=0):
        keras.utils.set_random_seed(0)
        vae = mlp_vae(seed=1)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=BernoulliNLL())                     # XLA (default)
        ds = tf.data.Dataset.from_tensor_slices(binary_data(320))
        ds = ds.shuffle(320, seed=7, reshuffle_each_iteration=True).batch(64)
        callbacks = []
        if backup_dir:
            callbacks.append(StepBackupAndRestore(backup_dir, save_freq=3))
        if kill_at:
            callbacks.append(KillAt(kill_at))
        vae.fit(ds, epochs=3, verbose=0, callbacks=callbacks)
        np.savez(out, *vae.get_weights(),
                 *[np.asarray(v) for v in vae.optimizer.variables])


    if __name__ == "__main__":
        train(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


@pytest.mark.slow
def test_one_process_killed_and_restarted(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(ONE_PROCESS)
    namespace = {"__name__": "train"}
    exec(ONE_PROCESS, namespace)
    namespace["train"](str(tmp_path / "straight.npz"))  # uninterrupted
    backup = tmp_path / "backup"

    def launch(kill_at):
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path / "resumed.npz"),
             str(backup), str(kill_at)],
            env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)

    killed = launch(kill_at=8)      # epoch 1, batch 3; last save before 7
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    commit = json.loads((backup / "checkpoint.json").read_text())
    assert (commit["calls"], commit["epoch"], commit["epoch_calls"]) == (6, 1, 1)
    assert commit["iterator"] == "checkpoint"
    resumed = launch(kill_at=0)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert len(a.files) == len(b.files) > 10
    for key in a.files:  # weights, then every optimizer variable
        np.testing.assert_array_equal(a[key], b[key])
    assert not backup.exists()


WORKER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import tensorflow as tf
    # No collective timeout: a killed peer's connections are reset, and the
    # survivor's next collective fails at once (UnavailableError). A host
    # that vanishes without closing them needs CommunicationOptions(
    # timeout_seconds=...) or the coordination service's heartbeat timeout.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras, numpy as np
    from keras_vae.callbacks import StepBackupAndRestore
    from keras_vae.losses import BernoulliNLL
    from tests.builders import binary_data
    from tests.models.replica_xla_vae import ReplicaXLAVAE
    from tests.models import test_replica_step as t

    out, backup_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]


    class KillAt(keras.callbacks.Callback):
        def __init__(self, step):
            super().__init__()
            self.step, self.seen = step, 0

        def on_train_batch_end(self, batch, logs=None):
            self.seen += 1
            if self.seen == self.step:
                print("killing myself", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)


    def train(backup=None, kill_at=0):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        with strategy.scope():
            keras.utils.set_random_seed(0)
            vae = t.flat_vae(sampler=t.keras_vae.ReparameterizedSample)
            vae.compile(optimizer=keras.optimizers.Adam(3e-3),
                        loss=BernoulliNLL())                 # XLA per replica
        # Reshuffled each pass, one iterator for the run: the position is
        # re-read reproducibly from a fresh iterator.
        ds = tf.data.Dataset.from_tensor_slices(binary_data(320))
        ds = ds.shuffle(320, seed=7, reshuffle_each_iteration=True).repeat()
        ds = ds.batch(64).with_options(options)
        callbacks = []
        if backup:
            callbacks.append(StepBackupAndRestore(backup, save_freq=3))
        if kill_at:
            callbacks.append(KillAt(kill_at))
        vae.fit(ds, epochs=3, steps_per_epoch=4, verbose=0,
                callbacks=callbacks)
        assert vae.train_function.uses_xla()
        return vae


    def save(vae, path):
        np.savez(path, *vae.get_weights(),
                 *[np.asarray(v) for v in vae.optimizer.variables])


    if mode == "first":
        save(train(), out + ".straight.npz")    # the uninterrupted run
        print("straight done", flush=True)
        started = time.time()
        try:
            train(backup_dir, kill_at=7 if index == 1 else 0)
        except Exception as error:  # the survivor: its peer is gone
            print(f"survivor failed after {time.time() - started:.0f} s: "
                  f"{type(error).__name__}", flush=True)
            sys.exit(3)
        sys.exit(0)
    else:
        save(train(backup_dir), out + ".resumed.npz")
    """
)


def _launch_workers(script, tmp_path, mode):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        config = {"cluster": {"worker": workers},
                  "task": {"type": "worker", "index": index}}
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / f"w{index}"),
             str(tmp_path / "backup"), mode],
            env=_env(TF_CONFIG=json.dumps(config)),
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    return procs


def _wait(procs, deadline):
    """Waits for every process until `deadline` (time.time()); kills and
    marks as None those still running. Returns (returncodes, outputs)."""
    codes, outputs = [], []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
            codes.append(p.returncode)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            codes.append(None)
        outputs.append(out)
    return codes, outputs


@pytest.mark.slow
def test_two_workers_one_killed_both_restarted(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    # First launch: the uninterrupted run, then the run worker 1 kills.
    procs = _launch_workers(script, tmp_path, "first")
    codes, outs = _wait(procs, time.time() + 150)
    assert codes[1] == -signal.SIGKILL, outs[1][-3000:]
    assert "killing myself" in outs[1]
    # The survivor fails at its next collective (UnavailableError: its
    # peer's connection was reset); it never completes the run.
    assert codes[0] == 3 and "survivor failed" in outs[0], outs[0][-3000:]
    commit = json.loads((tmp_path / "backup" / "checkpoint.json").read_text())
    assert (commit["calls"], commit["epoch"], commit["epoch_calls"],
            commit["iterator"], commit["workers"]) == (6, 1, 2, "replay", 2)
    # Recovery: restart every worker; they resume from the chief's commit.
    procs = _launch_workers(script, tmp_path, "resume")
    codes, outs = _wait(procs, time.time() + 120)
    assert codes == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    for index in range(2):
        a = np.load(tmp_path / f"w{index}.straight.npz")
        b = np.load(tmp_path / f"w{index}.resumed.npz")
        assert len(a.files) == len(b.files) > 10
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])
    assert not (tmp_path / "backup").exists()
