"""VAEModel.fit under tf.distribute.MirroredStrategy (2 logical CPUs).

Runs in a subprocess: logical devices must be configured before TensorFlow
initialises, which the test session has already done.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_vae.losses import BernoulliNLL
    from tests.builders import binary_data, mlp_vae

    x = binary_data(512)

    def build():
        keras.utils.set_random_seed(0)
        vae = mlp_vae(seed=1, min_scale=1e-7, max_abs_log_variance=80.0)
        vae.compile(optimizer=keras.optimizers.SGD(0.05), loss=BernoulliNLL())
        # Near-zero posterior scale: z = loc, so both runs see the same z and
        # any difference would come from how losses are combined.
        head = vae.encoder.layers[-1]
        kernel, bias = head.scale_dense.get_weights()
        head.scale_dense.set_weights([0 * kernel, bias - 70.0])  # σ ≈ 1e-7
        return vae

    single = build()
    weights = single.get_weights()
    results = {"single_eval": single.evaluate(x, batch_size=128, verbose=0,
                                              return_dict=True)}
    results["single_fit"] = single.fit(x, batch_size=128, epochs=2,
                                       shuffle=False, verbose=0).history
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(weights)
    results["replicas"] = strategy.num_replicas_in_sync
    results["jit"] = bool(mirrored.jit_compile)
    results["mirrored_eval"] = mirrored.evaluate(x, batch_size=128, verbose=0,
                                                 return_dict=True)
    results["mirrored_fit"] = mirrored.fit(x, batch_size=128, epochs=2,
                                           shuffle=False, verbose=0).history
    results["max_weight_diff"] = max(
        float(np.abs(a - b).max())
        for a, b in zip(single.get_weights(), mirrored.get_weights()))
    json.dump(results, open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(script), str(tmp_path / "out.json")],
                   check=True, env=env, cwd=root, timeout=600)
    r = json.loads((tmp_path / "out.json").read_text())
    # jit_compile=True is honoured: XLA per replica (replica_step).
    assert r["replicas"] == 2 and r["jit"] is True
    for key in ("loss", "elbo", "reconstruction", "kl"):
        assert abs(r["single_eval"][key] - r["mirrored_eval"][key]) <= (
            1e-5 * abs(r["single_eval"][key]) + 1e-5), key
        for a, b in zip(r["single_fit"][key], r["mirrored_fit"][key]):
            assert abs(a - b) <= 1e-4 * abs(a) + 1e-4, (key, a, b)
    # The KL added per replica is scaled correctly: same weights after two
    # epochs of SGD.
    assert r["max_weight_diff"] < 1e-4
