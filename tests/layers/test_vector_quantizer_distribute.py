"""Quantizer statistics under tf.distribute.MirroredStrategy (2 logical CPUs).

Runs in a subprocess: logical devices must be configured before TensorFlow
initialises, which the test session has already done. XLA is off there:
TensorFlow cannot compile a MirroredStrategy step over logical CPU devices
(a variable of replica 1 read from device 0), with or without this layer.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_vae import FiniteScalarQuantizer, VectorQuantizer

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype("float32")
    codebook = rng.normal(size=(6, 3)).astype("float32")
    codebook[5] = 50.0  # never used: re-seeded at step 2

    def make():
        layer = VectorQuantizer(6, ema_decay=0.9, restart_after_steps=2,
                                seed=4)
        layer.build((None, 3))
        layer.codebook.assign(codebook)
        layer.ema_sum.assign(codebook)
        fsq = FiniteScalarQuantizer([3, 4, 2])
        fsq.build((None, 3))
        return layer, fsq

    def state(layers):
        return {f"{i}/{w.name}": [np.asarray(c).tolist()
                                  for c in getattr(w.value, "values",
                                                   [w.value])]
                for i, layer in enumerate(layers) for w in layer.weights}

    single = make()
    for _ in range(2):
        for layer in single:
            layer(x, training=True)

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = make()
    shards = strategy.experimental_distribute_values_from_function(
        lambda ctx: x[8 * ctx.replica_id_in_sync_group:
                      8 * (ctx.replica_id_in_sync_group + 1)])

    @tf.function
    def step(batch):
        def replica_fn(b):
            for layer in mirrored:
                layer(b, training=True)
        strategy.run(replica_fn, args=(batch,))

    for _ in range(2):
        step(shards)

    # A Keras fit under the strategy (jit off: see the module docstring).
    with strategy.scope():
        vq = VectorQuantizer(6, seed=1, restart_after_steps=1)
        inp = keras.Input((3,))
        model = keras.Model(inp, keras.layers.Dense(3)(vq(inp)))
        model.compile(optimizer="sgd", loss="mse", jit_compile=False)
    model.fit(x, x, batch_size=16, epochs=3, verbose=0)
    json.dump({"replicas": strategy.num_replicas_in_sync,
               "x": x.tolist(),
               "single": state(single), "mirrored": state(mirrored),
               "fit": state([vq])},
              open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
def test_statistics_are_summed_over_replicas(tmp_path):
    script = tmp_path / "mirrored_vq.py"
    script.write_text(SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(script), str(tmp_path / "out.json")],
                   check=True, env=env, cwd=root, timeout=600)
    r = json.loads((tmp_path / "out.json").read_text())
    assert r["replicas"] == 2
    x = np.asarray(r["x"])
    # Every replica holds the same value of every variable.
    for name, replicas in list(r["mirrored"].items()) + list(
            r["fit"].items()):
        assert len(replicas) == 2, name
        np.testing.assert_array_equal(replicas[0], replicas[1],
                                      err_msg=name)
    mirrored = {k: np.asarray(v[0]) for k, v in r["mirrored"].items()}
    single = {k: np.asarray(v[0]) for k, v in r["single"].items()}
    # The two 8-row shards give the statistics of the whole 16-row batch.
    for name in ("ema_count", "usage_step", "last_used", "last_perplexity",
                 "idle_steps"):
        np.testing.assert_allclose(mirrored[f"0/{name}"],
                                   single[f"0/{name}"], rtol=1e-6,
                                   err_msg=name)
    for name in ("ema_sum", "codebook"):  # rows 0-4; row 5 was re-seeded
        np.testing.assert_allclose(mirrored[f"0/{name}"][:5],
                                   single[f"0/{name}"][:5], rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    # The re-seeded code is one of the batch's feature vectors (drawn on
    # replica 0 and given to both).
    row = mirrored["0/codebook"][5]
    assert np.any(np.all(np.isclose(x, row, atol=0), axis=-1)), row
    assert mirrored["0/ema_count"][5] == 1.0
    for name in ("usage_step", "last_used", "last_perplexity"):
        np.testing.assert_allclose(mirrored[f"1/{name}"],
                                   single[f"1/{name}"], rtol=1e-6,
                                   err_msg=f"fsq {name}")
