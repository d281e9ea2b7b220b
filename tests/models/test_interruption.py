"""A run killed mid-epoch resumes with BackupAndRestore and ends with the
same weights as an uninterrupted run (the noise stream is saved too)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import keras, numpy as np, tensorflow as tf
    from keras_vae.losses import BernoulliNLL
    from tests.builders import binary_data, mlp_vae

    def train(out, backup, kill_epoch):
        class KillMidEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == kill_epoch and batch == 2:
                    os.kill(os.getpid(), signal.SIGKILL)

        keras.utils.set_random_seed(0)
        vae = mlp_vae(seed=1)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3),
                    loss=BernoulliNLL())
        ds = tf.data.Dataset.from_tensor_slices(binary_data(512)).batch(64)
        vae.fit(ds, epochs=4, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup), KillMidEpoch()])
        np.savez(out, *vae.get_weights())

    if __name__ == "__main__":
        train(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    """
)


def _run(tmp_path, name, kill_epoch):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, str(tmp_path / "train.py"), str(tmp_path / name),
         str(tmp_path / f"backup_{name}"), str(kill_epoch)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(tmp_path):
    (tmp_path / "train.py").write_text(SCRIPT)
    # The uninterrupted run in this process (the same script, nothing
    # killed); the killed and the resumed runs are processes of their own.
    namespace = {"__name__": "train"}
    exec(SCRIPT, namespace)
    namespace["train"](str(tmp_path / "straight.npz"),
                       str(tmp_path / "backup_straight"), -1)
    killed = _run(tmp_path, "resumed.npz", kill_epoch=2)
    assert killed.returncode == -9  # SIGKILL in epoch 3, batch 3
    assert not (tmp_path / "resumed.npz").exists()
    resumed = _run(tmp_path, "resumed.npz", kill_epoch=-1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    for key in a.files:
        np.testing.assert_array_equal(a[key], b[key])
