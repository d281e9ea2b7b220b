"""XLA under tf.distribute (keras_vae.models.replica_step): each replica's
step compiled, the all-reduce and the update outside it.

In-process tests run the step function on the default (one-replica)
strategy. The strategy tests run in subprocesses (logical devices must be
configured before TensorFlow initialises): 2 logical CPUs under
MirroredStrategy must give the single-device run's losses and weights on
the same global batches, with XLA on, for ELBO and IWAE, a flat and a
spatial latent, and mixed precision; 2 worker processes likewise.

The models draw their noise with `ExampleNoiseSample` (noise a fixed
function of the example), so that a replica and the single device draw
the same noise for the same example: the package's own samplers give
each replica its own stream.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae.losses import BernoulliNLL
from keras_vae.models import replica_step
from tests.builders import binary_data
from tests.models.replica_xla_vae import ExampleNoiseSample, ReplicaXLAVAE

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class RunningMean(keras.layers.Layer):
    """Identity that tracks the running mean of its input in a variable
    with `aggregation="mean"`: its update is a `merge_call` under a
    strategy, which XLA cannot compile."""

    def build(self, input_shape):
        self.mean = self.add_weight(shape=(), initializer="zeros",
                                    trainable=False, aggregation="mean")

    def call(self, x, training=None):
        if training:
            self.mean.assign(0.9 * self.mean + 0.1 * keras.ops.mean(x))
        return x


def flat_vae(d=32, sampler=ExampleNoiseSample, running_mean=False):
    x_in = keras.Input((d,), name="x")
    h = keras.layers.Dense(32, activation="relu")(x_in)
    if running_mean:
        h = RunningMean()(h)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = sampler(seed=1)(q)
    h = keras.layers.Dense(32, activation="relu")(z)
    return ReplicaXLAVAE(x_in, keras.layers.Dense(d)(h), name="flat")


def spatial_vae(sampler=ExampleNoiseSample):
    """Conv features (4, 4, 8) -> a (4, 4, 2) latent -> 8x8 logits."""
    x_in = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same",
                            activation="relu")(x_in)
    q = keras_vae.GaussianEncoderHead(2, flatten=False)(h)
    z = sampler(seed=1)(keras_vae.KLRegularizer()(q))
    h = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same",
                                     activation="relu")(z)
    return ReplicaXLAVAE(x_in, keras.layers.Conv2D(1, 3, padding="same")(h),
                         name="spatial")


def images(n=256):
    return binary_data(n, d=64).reshape(n, 8, 8, 1)


# ------------------------------------------------------------ in process
def test_one_replica_uses_keras_functions():
    keras.utils.set_random_seed(0)
    vae = flat_vae()
    vae.compile(optimizer="sgd", loss=BernoulliNLL())
    assert not replica_step.multi_replica(vae.distribute_strategy)
    vae.make_train_function()
    assert not hasattr(vae.train_function, "uses_xla")  # Keras' own


def _fit_with(vae, function, x, steps):
    it = iter(tf.data.Dataset.from_tensor_slices(x).batch(64))
    logs = [function(it) for _ in range(steps)]
    # The end of the data: Keras' epoch loop takes either.
    with pytest.raises((StopIteration, tf.errors.OutOfRangeError)):
        while True:
            function(it)
    return logs


@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_step_function_equals_keras_step(steps_per_execution):
    """On one replica the split step (compiled part + update) gives the
    weights and logs of Keras' jitted train step, and ends the data as
    Keras' function does (StopIteration)."""
    x = binary_data(256)
    runs = []
    for split in (False, True):
        keras.utils.set_random_seed(0)
        vae = flat_vae()
        vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                    steps_per_execution=steps_per_execution)
        initial = vae.get_weights()
        if split:
            function = replica_step.make_train_function(vae)
            assert function.uses_xla()
        else:
            vae.make_train_function()
            function = vae.train_function
        logs = _fit_with(vae, function, x, 4 // steps_per_execution)
        runs.append(([float(l["loss"]) for l in logs], vae.get_weights()))
        assert int(vae.optimizer.iterations.numpy()) == 4
        # Training moved the weights: the comparison below can fail.
        assert max(np.abs(a - b).max()
                   for a, b in zip(initial, vae.get_weights())) > 1e-3
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-6)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_on_batch_path():
    """`train_on_batch` passes a generator of one batch, not an iterator."""
    keras.utils.set_random_seed(0)
    vae = flat_vae()
    vae.compile(optimizer="sgd", loss=BernoulliNLL())
    function = replica_step.make_train_function(vae)
    x = tf.constant(binary_data(64))
    before = vae.optimizer.iterations.numpy() if vae.optimizer.built else 0
    logs = function(iter([(x,)]))
    assert set(logs) >= {"loss", "elbo", "reconstruction", "kl"}
    assert int(vae.optimizer.iterations.numpy()) == before + 1


# --------------------------------------------------------- subprocesses
def _run(script, tmp_path, *args, timeout=240):
    path = tmp_path / "script.py"
    path.write_text(script)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, str(path), str(out), *args], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


MIRRORED = textwrap.dedent(
    """
    import json, sys, warnings
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    from keras_vae.losses import BernoulliNLL
    from tests.models import test_replica_step as t

    out, model, precision = sys.argv[1], sys.argv[2], sys.argv[3]
    objectives = sys.argv[4].split(",")
    # The reference: one device (XLA), or the same strategy without XLA
    # (Keras' uncompiled distributed step: the same per-replica noise, so
    # the package's own sampler can be used).
    reference = sys.argv[5]
    sampler = (t.ExampleNoiseSample if reference == "single"
               else t.keras_vae.ReparameterizedSample)
    keras.mixed_precision.set_global_policy(precision)
    x = t.images() if model == "spatial" else t.binary_data(256)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def build(objective, jit_compile=True):
        keras.utils.set_random_seed(0)
        vae = (t.spatial_vae(sampler) if model == "spatial"
               else t.flat_vae(sampler=sampler,
                               running_mean=model == "running_mean"))
        # Momentum SGD: stateful, but linear in the gradients (Adam's first
        # steps are lr * sign(g), and the rounding of a near-zero gradient
        # component over 128 rows or two halves of 64 can flip its sign).
        optimizer = keras.optimizers.SGD(0.05, momentum=0.9)
        if precision == "mixed_float16":
            # A loss scale that does not overflow either run's float16
            # gradients (see test_mixed_precision).
            optimizer = keras.mixed_precision.LossScaleOptimizer(
                optimizer, initial_scale=2.0 ** 8)
        vae.compile(optimizer=optimizer, loss=BernoulliNLL(),
                    objective=objective,
                    num_samples=3 if objective == "iwae" else None,
                    jit_compile=jit_compile)
        return vae

    results = {}
    for objective in objectives:
        if reference == "single":
            single = build(objective)
        else:
            with strategy.scope():
                single = build(objective, jit_compile=False)
        weights = single.get_weights()
        with strategy.scope():
            mirrored = build(objective)
        mirrored.set_weights(weights)
        r = {}
        for name, vae in (("single", single), ("mirrored", mirrored)):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r[name] = vae.fit(x, batch_size=128, epochs=2, shuffle=False,
                                  verbose=0).history
            r[name + "_eval"] = vae.evaluate(x, batch_size=128, verbose=0,
                                             return_dict=True)
            r[name + "_warnings"] = [str(w.message) for w in caught
                                     if "XLA" in str(w.message)]
        r["replicas"] = strategy.num_replicas_in_sync
        r["jit"] = bool(mirrored.jit_compile)
        r["xla_train"] = mirrored.train_function.uses_xla()
        r["xla_test"] = mirrored.test_function.uses_xla()
        r["optimizer"] = type(mirrored.optimizer).__name__
        r["moved"] = max(float(np.abs(a - b).max())
                         for a, b in zip(weights, single.get_weights()))
        r["weight_diff"] = max(
            float(np.abs(a - b).max() / (np.abs(a).max() + 1e-3))
            for a, b in zip(single.get_weights(), mirrored.get_weights()))
        results[objective] = r
    json.dump(results, open(out, "w"))
    """
)


def _check(results, rtol, wtol):
    for objective, r in results.items():
        assert r["replicas"] == 2 and r["jit"], objective
        assert r["xla_train"] and r["xla_test"], objective
        assert not r["mirrored_warnings"], r["mirrored_warnings"]
        assert r["moved"] > 1e-3  # training changed the weights
        for key in ("loss", "elbo", "reconstruction", "kl"):
            np.testing.assert_allclose(r["mirrored"][key], r["single"][key],
                                       rtol=rtol, err_msg=objective + key)
            np.testing.assert_allclose(r["mirrored_eval"][key],
                                       r["single_eval"][key], rtol=rtol,
                                       err_msg=objective + key)
        assert r["weight_diff"] < wtol, (objective, r["weight_diff"])


@pytest.mark.slow
def test_mirrored_xla_flat_latent_equals_single_device(tmp_path):
    results = _run(MIRRORED, tmp_path, "flat", "float32", "elbo,iwae",
                   "single")
    _check(results, rtol=1e-5, wtol=1e-5)


@pytest.mark.slow
def test_mirrored_xla_equals_uncompiled_strategy_with_package_noise(tmp_path):
    """With the package's sampler (each replica its own noise stream) the
    compiled replica step gives Keras' uncompiled distributed step: the
    noise is the same with and without XLA (keras_vae/random.py)."""
    results = _run(MIRRORED, tmp_path, "flat", "float32", "iwae", "graph")
    _check(results, rtol=1e-5, wtol=1e-5)


@pytest.mark.slow
def test_mirrored_xla_spatial_latent_equals_single_device(tmp_path):
    results = _run(MIRRORED, tmp_path, "spatial", "float32", "elbo,iwae",
                   "single")
    _check(results, rtol=1e-5, wtol=1e-5)


@pytest.mark.slow
def test_mixed_precision(tmp_path):
    """mixed_float16 with a LossScaleOptimizer: the update (its `merge_call`
    inside a `Cond`, keras#20763) stays out of XLA. float16 sums over 64
    or 128 rows round differently: loose tolerances. The loss scale is
    explicit: with Keras' default 2^15 the 128-row float16 gradient of one
    device overflows where the replicas' 64-row halves do not, so the
    optimizer skips a step in one run only (a property of loss scaling
    under data parallelism, with or without XLA)."""
    results = _run(MIRRORED, tmp_path, "flat", "mixed_float16", "elbo,iwae",
                   "single")
    for r in results.values():
        assert r["optimizer"] == "LossScaleOptimizer"
    _check(results, rtol=1e-3, wtol=1e-2)


@pytest.mark.slow
def test_uncompilable_replica_part_falls_back_with_a_warning(tmp_path):
    """A layer whose update needs a merge_call (a variable with
    aggregation="mean") cannot be compiled per replica: the step warns,
    runs uncompiled, and trains as Keras' uncompiled step does."""
    results = _run(MIRRORED, tmp_path, "running_mean", "float32", "elbo",
                   "graph")
    r = results["elbo"]
    assert not r["xla_train"] and r["mirrored_warnings"]
    assert "could not be compiled" in r["mirrored_warnings"][0]
    assert "merge_call" in r["mirrored_warnings"][0]
    r["xla_train"] = r["xla_test"] = True
    r["mirrored_warnings"] = []
    _check(results, rtol=1e-5, wtol=1e-5)


WORKER = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras, numpy as np
    from keras_vae.losses import BernoulliNLL
    from tests.models import test_replica_step as t

    out, objective = sys.argv[1], sys.argv[2]
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    ds = tf.data.Dataset.from_tensor_slices(t.binary_data(256)).batch(128)
    with strategy.scope():
        vae = t.build_two_worker_vae(objective)
    hist = vae.fit(ds.with_options(options), epochs=2, verbose=0).history
    np.savez(out, *vae.get_weights())
    json.dump({"loss": hist["loss"], "kl": hist["kl"],
               "replicas": strategy.num_replicas_in_sync,
               "jit": bool(vae.jit_compile),
               "xla": vae.train_function.uses_xla()},
              open(out + ".json", "w"))
    """
)


def build_two_worker_vae(objective):
    keras.utils.set_random_seed(0)
    vae = flat_vae()
    vae.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                loss=BernoulliNLL(), objective=objective,
                num_samples=3 if objective == "iwae" else None)
    return vae


def free_ports(n):
    """n free TCP ports on 127.0.0.1 (bound together, so distinct)."""
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_workers(script, tmp_path, args_of, timeout=150):
    """Starts one process per worker (TF_CONFIG on 127.0.0.1) and waits at
    most `timeout` seconds for all; returns their outputs."""
    path = tmp_path / "worker.py"
    path.write_text(script)
    workers = [f"127.0.0.1:{p}" for p in free_ports(len(args_of))]
    procs = []
    for index, args in enumerate(args_of):
        env = dict(
            os.environ, TF_CPP_MIN_LOG_LEVEL="2",
            PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                  "task": {"type": "worker", "index": index}}),
        )
        procs.append(subprocess.Popen(
            [sys.executable, str(path), *args], env=env, cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outputs.append(out)
            assert p.returncode == 0, out[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["elbo", "iwae"])
def test_two_workers_xla_equal_single_device(tmp_path, objective):
    """MultiWorkerMirroredStrategy, 2 processes on 127.0.0.1, XLA on: the
    workers end with identical weights, equal to one device trained on the
    same global batches."""
    outs = [str(tmp_path / f"w{i}.npz") for i in range(2)]
    run_workers(WORKER, tmp_path, [[o, objective] for o in outs])
    w0, w1 = np.load(outs[0]), np.load(outs[1])
    r0 = json.loads(open(outs[0] + ".json").read())
    r1 = json.loads(open(outs[1] + ".json").read())
    assert r0["replicas"] == 2 and r0["jit"] and r0["xla"]
    assert r0["loss"] == r1["loss"]
    for key in w0.files:
        np.testing.assert_array_equal(w0[key], w1[key])
    single = build_two_worker_vae(objective)
    initial = single.get_weights()
    hist = single.fit(binary_data(256), batch_size=128, epochs=2,
                      shuffle=False, verbose=0).history
    np.testing.assert_allclose(r0["loss"], hist["loss"], rtol=1e-5)
    np.testing.assert_allclose(r0["kl"], hist["kl"], rtol=1e-5)
    for got, want, start in zip([w0[k] for k in w0.files],
                                single.get_weights(), initial):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert max(np.abs(a - b).max() for a, b in
               zip(initial, single.get_weights())) > 1e-3
