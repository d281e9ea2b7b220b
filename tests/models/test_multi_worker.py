"""VAEModel.fit under MultiWorkerMirroredStrategy: 2 worker processes on
localhost (TF_CONFIG), which must end with identical weights."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def build():
    """The model both workers and the single-device reference train."""
    import keras

    from keras_vae.losses import BernoulliNLL
    from tests.builders import mlp_vae

    keras.utils.set_random_seed(0)
    vae = mlp_vae(seed=1, min_scale=1e-7, max_abs_log_variance=80.0)
    vae.compile(optimizer=keras.optimizers.SGD(0.05), loss=BernoulliNLL())
    # Near-zero posterior scale: z = loc, so every run sees the same z and a
    # difference could only come from how the workers combine losses.
    head = vae.encoder.layers[-1]
    kernel, bias = head.scale_dense.get_weights()
    head.scale_dense.set_weights([0 * kernel, bias - 70.0])  # σ ≈ 1e-7
    return vae


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras, numpy as np
    from tests.builders import binary_data
    from tests.models.test_multi_worker import build

    x = binary_data(512)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    ds = tf.data.Dataset.from_tensor_slices(x).batch(128).with_options(options)
    with strategy.scope():
        vae = build()
    hist = vae.fit(ds, epochs=2, verbose=0).history
    np.savez(sys.argv[1], *vae.get_weights())
    json.dump({"loss": hist["loss"], "replicas": strategy.num_replicas_in_sync},
              open(sys.argv[1] + ".json", "w"))
    """
)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_end_with_identical_weights(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                  "task": {"type": "worker", "index": index}}),
        )
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / f"w{index}.npz")],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    outputs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        outputs.append(out)
        assert p.returncode == 0, out[-3000:]
    w0 = np.load(tmp_path / "w0.npz")
    w1 = np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    r0 = json.loads((tmp_path / "w0.npz.json").read_text())
    r1 = json.loads((tmp_path / "w1.npz.json").read_text())
    assert r0["replicas"] == 2
    assert np.all(np.isfinite(r0["loss"])) and r0["loss"] == r1["loss"]
    # The dataset's batches of 128 are global batches, split between the
    # workers: one device trained on the same batches gets the same losses
    # and weights.
    from tests.builders import binary_data

    single = build()
    hist = single.fit(binary_data(512), batch_size=128, epochs=2,
                      shuffle=False, verbose=0).history
    np.testing.assert_allclose(r0["loss"], hist["loss"], rtol=1e-4)
    for got, want in zip([w0[k] for k in w0.files], single.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-4)
