"""VAEModel with vector-quantised latents: the bound, the codes, the
metrics, the exported code signatures, precision and bad input.

Every number is checked against NumPy: nearest codes by argmin of squared
distances, the Bernoulli log-likelihood from the decoder's logits, the
perplexity from code counts. The model-level harness
(`tests/models/test_model_harness.py`: XLA step = eager step, `.keras`
round trip of every variable, export = in-memory calls) runs the zoo's
`vq`, `rvq`, `fsq` and `vq_spatial` models too.
"""

import json
import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from tests.builders import (
    binary_data,
    zoo_data,
    zoo_diag,
    zoo_fsq,
    zoo_rvq,
    zoo_vq,
    zoo_vq_spatial,
)

D = 12


def _compiled(build, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    vae = build()
    kwargs.setdefault("jit_compile", False)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                **kwargs)
    return vae


def _trained(build, name, steps=3, **kwargs):
    vae = _compiled(build, **kwargs)
    x = zoo_data(name, n=16 * steps)
    vae.fit(x, batch_size=16, epochs=1, verbose=0, shuffle=False)
    return vae, zoo_data(name, n=10, seed=1)


def _np_nearest(z, codebook):
    """argmin_k ||z - e_k||^2 over the last axis, in float64."""
    z = np.asarray(z, "float64")
    d = ((z[..., None, :] - np.asarray(codebook, "float64")) ** 2).sum(-1)
    return d.argmin(-1)


def _np_bernoulli_nll(x, logits):
    """-log p(x | logits) summed over every axis but the batch."""
    x, logits = np.asarray(x, "float64"), np.asarray(logits, "float64")
    nll = np.logaddexp(0.0, logits) - x * logits
    return nll.reshape(len(x), -1).sum(1)


def _two_quantizers(seed=0):
    """Two quantizers side by side; the decoder reads both."""
    x_in = keras.Input((D,), name="x")
    h = keras.layers.Dense(8, activation="tanh")(x_in)
    a = keras_vae.VectorQuantizer(4, seed=seed, name="vq_a")(
        keras.layers.Dense(2)(h))
    b = keras_vae.FiniteScalarQuantizer([3, 2], name="fsq_b")(
        keras.layers.Dense(2)(h))
    out = keras.layers.Dense(D)(keras.layers.Concatenate()([a, b]))
    return keras_vae.VAEModel(x_in, out, name="two_quantizers")


# ------------------------------------------------------------ the codes
@pytest.mark.parametrize("build, name, code_shape", [
    (zoo_vq, "vq", ()),
    (zoo_rvq, "rvq", (2,)),
    (zoo_fsq, "fsq", ()),
    (zoo_vq_spatial, "vq_spatial", (2, 2)),
], ids=["vq", "rvq", "fsq", "vq_spatial"])
def test_decode_codes_of_encode_codes_is_the_forward_pass(
        build, name, code_shape):
    vae, x = _trained(build, name)
    quantizer = vae.levels[0].quantizer
    codes = vae.encode_codes(x)
    assert codes.dtype == np.int32 and codes.shape == (len(x),) + code_shape
    features = vae.encode(x)  # z_e, the quantizer's input
    if name in ("vq", "vq_spatial"):
        np.testing.assert_array_equal(
            codes, _np_nearest(features, quantizer.codebook.numpy()))
    elif name == "rvq":  # each stage quantises what the earlier ones left
        residual = np.asarray(features, "float64")
        for q, stage in enumerate(quantizer.quantizers):
            book = stage.codebook.numpy()
            np.testing.assert_array_equal(
                codes[:, q], _np_nearest(residual, book))
            residual = residual - book[codes[:, q]]
    forward = vae(x, training=False)  # the functional model, eager
    np.testing.assert_allclose(vae.decode_codes(codes), forward,
                               rtol=1e-6, atol=1e-6)
    # The codes' vectors are the point `reconstruct` decodes.
    np.testing.assert_allclose(vae.decode(vae.posterior_mode(x)),
                               vae.decode_codes(codes), rtol=1e-6, atol=1e-6)


def test_several_quantizers_codes_metrics_and_decode():
    vae, x = _trained(_two_quantizers, "vq")
    history = vae.fit(zoo_data("vq", n=32), batch_size=16, epochs=1,
                      verbose=0).history
    for key in ("perplexity", "codebook_usage"):
        assert f"{key}_vq_a" in history and f"{key}_fsq_b" in history
        assert key not in history
    codes = vae.encode_codes(x)
    assert isinstance(codes, list) and [c.shape for c in codes] == [
        (10,), (10,)]
    np.testing.assert_allclose(vae.decode_codes(codes),
                               vae(x, training=False), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="a list of 2 code arrays"):
        vae.decode_codes(codes[0])


# ------------------------------------------------------------ the bound
@pytest.mark.parametrize("build, name, log_k_per_position", [
    (zoo_vq_spatial, "vq_spatial", math.log(5)),        # 2 x 2 positions
    (zoo_rvq, "rvq", 2 * math.log(4)),                  # Q log K
    (zoo_fsq, "fsq", math.log(3) + math.log(4) + math.log(2)),
], ids=["vq_spatial", "rvq", "fsq"])
def test_elbo_is_minus_reconstruction_minus_log_k_per_position(
        build, name, log_k_per_position):
    vae, x = _trained(build, name)
    positions = 4 if name == "vq_spatial" else 1
    logits = np.asarray(vae(x, training=False))
    want = -_np_bernoulli_nll(x, logits) - positions * log_k_per_position
    np.testing.assert_allclose(vae.elbo(x), want, rtol=1e-5, atol=1e-4)
    # Deterministic: K draws are one, and log p(x) gets the same bound.
    np.testing.assert_allclose(vae.elbo(x, num_samples=4), want,
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(vae.log_likelihood(x, num_samples=3), want,
                               rtol=1e-5, atol=1e-4)
    metrics = vae.evaluate(x, batch_size=len(x), verbose=0,
                           return_dict=True)
    np.testing.assert_allclose(metrics["kl"],
                               positions * log_k_per_position, rtol=1e-6)
    np.testing.assert_allclose(metrics["elbo"], want.mean(), rtol=1e-5)
    # At evaluation the loss is -ELBO: no commitment loss.
    np.testing.assert_allclose(metrics["loss"], -want.mean(), rtol=1e-5)


def test_training_loss_adds_the_commitment_loss_once():
    """loss = reconstruction + log K + β mean (z_e - e_k)^2 in training,
    the commitment term recomputed in NumPy from the pre-step codebook."""
    vae = _compiled(zoo_vq_spatial)
    x = zoo_data("vq_spatial", n=8)
    quantizer = vae.levels[0].quantizer
    vae.compute_objective(x, training=False)  # builds nothing new
    features = np.asarray(vae.encode(x), "float64")
    book = quantizer.codebook.numpy().astype("float64")
    nearest = book[_np_nearest(features, book)]
    commitment = 0.25 * np.mean((features - nearest) ** 2)
    loss, metrics = vae.compute_objective(x, training=True)
    np.testing.assert_allclose(
        loss, metrics["reconstruction"] + metrics["kl"] + commitment,
        rtol=1e-5)
    loss, metrics = vae.compute_objective(x, training=False)
    np.testing.assert_allclose(loss, -metrics["elbo"], rtol=1e-6)


def test_fit_reports_the_batch_perplexity_and_usage():
    """After one step: perplexity = exp(entropy) of the codes the step
    assigned (NumPy argmin with the pre-step weights and codebook), usage
    = the fraction of codes they hit."""
    vae = _compiled(zoo_vq_spatial)
    x = zoo_data("vq_spatial", n=16)
    quantizer = vae.levels[0].quantizer
    features = vae.encode(x)
    counts = np.bincount(
        _np_nearest(features, quantizer.codebook.numpy()).ravel(),
        minlength=5)
    p = counts[counts > 0] / counts.sum()
    got = vae.train_on_batch(x, return_dict=True)
    np.testing.assert_allclose(got["perplexity"],
                               np.exp(-(p * np.log(p)).sum()), rtol=1e-5)
    np.testing.assert_allclose(got["codebook_usage"], len(p) / 5, rtol=1e-6)


# ----------------------------------------------------------- XLA, precision
@pytest.mark.slow
def test_xla_and_eager_fit_agree():
    """Six steps with k-means initialisation and restarts every idle step:
    the same losses, metrics and codebook with and without XLA."""
    x = zoo_data("vq", n=48)
    runs = []
    for kwargs in (dict(jit_compile=True),
                   dict(jit_compile=False, run_eagerly=True)):
        vae = _compiled(zoo_vq, **kwargs)
        history = vae.fit(x, batch_size=16, epochs=2, verbose=0,
                          shuffle=False).history
        runs.append((history, [w.numpy() for w in vae.weights]))
    (h_xla, w_xla), (h_eager, w_eager) = runs
    assert set(h_xla) == set(h_eager)
    for key in h_xla:
        np.testing.assert_allclose(h_xla[key], h_eager[key], rtol=1e-4,
                                   atol=1e-5, err_msg=key)
    for a, b in zip(w_xla, w_eager):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_mixed_precision_keeps_distances_float32():
    """Features of size ~1000 (their float16 squares overflow): under
    mixed_float16 the codebook, the distances and the output stay float32,
    so the codes are NumPy's float64 argmin."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(0)
        x_in = keras.Input((D,), name="x")
        h = keras.layers.Dense(3, kernel_initializer=keras.initializers
                               .RandomUniform(40.0, 160.0, seed=0))(x_in)
        quantizer = keras_vae.VectorQuantizer(
            6, codebook_initializer=keras.initializers.RandomUniform(
                0.0, 1200.0, seed=1), restart_after_steps=None, seed=0)
        z = quantizer(h)
        out = keras.layers.Dense(D, dtype="float32")(
            keras.layers.Dense(4)(z))
        vae = keras_vae.VAEModel(x_in, out)
        vae.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=BernoulliNLL(), jit_compile=False)
        x = binary_data(32, d=D)
        vae.fit(x, batch_size=16, epochs=1, verbose=0)
        assert quantizer.codebook.dtype == "float32"
        assert quantizer.compute_dtype == "float16"
        features = vae.encode(x)
        assert np.max(np.abs(features)) > 256  # float16 squares overflow
        codes = vae.encode_codes(x)
        np.testing.assert_array_equal(
            codes, _np_nearest(np.asarray(features, "float32"),
                               quantizer.codebook.numpy()))
        assert len(np.unique(codes)) > 1  # not an overflow's constant argmin
        assert vae.posterior_mode(x).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --------------------------------------------------------------- export
SERVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_path, out_path = sys.argv[1:4]
    sig = tf.saved_model.load(path).signatures
    x = tf.constant(np.load(x_path))
    codes = sig["encode_codes"](x=x)["codes"]
    out = {
        "signatures": sorted(sig.keys()),
        "codes": codes.numpy().tolist(),
        "params": sig["decode_codes"](codes=codes)["params"].numpy().tolist(),
        "reconstruction": sig["serving_default"](x=x)["reconstruction"]
            .numpy().tolist(),
        "log_likelihood": sig["log_likelihood"](x=x)["log_likelihood"]
            .numpy().tolist(),
    }
    try:
        sig["decode_codes"](codes=codes + 5)
        out["out_of_range"] = "accepted"
    except tf.errors.InvalidArgumentError as error:
        out["out_of_range"] = error.message
    out["imported"] = sorted(m for m in sys.modules
                             if m.startswith("keras_vae"))
    json.dump(out, open(out_path, "w"))
    """
)


@pytest.mark.slow
def test_exported_code_signatures_in_a_process_without_keras_vae(tmp_path):
    vae, x = _trained(zoo_vq_spatial, "vq_spatial")
    path = vae.export_serving(tmp_path / "served", log_likelihood_samples=4)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "server.py").write_text(SERVER)
    subprocess.run(
        [sys.executable, str(tmp_path / "server.py"), str(path),
         str(tmp_path / "x.npy"), str(tmp_path / "out.json")],
        check=True, cwd=str(tmp_path), timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["imported"] == []
    assert got["signatures"] == sorted([
        "serving_default", "encode", "decode", "log_likelihood",
        "encode_codes", "decode_codes"])  # no `sample`: no prior
    codes = vae.encode_codes(x)
    np.testing.assert_array_equal(got["codes"], codes)
    np.testing.assert_allclose(got["params"], vae.decode_codes(codes),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["reconstruction"], vae.reconstruct(x),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["log_likelihood"], vae.elbo(x),
                               rtol=1e-5, atol=1e-4)
    assert "integer codes in [0, 5)" in got["out_of_range"]


# ------------------------------------------------------------ bad input
@pytest.fixture(scope="module")
def spatial_vae():
    return _compiled(zoo_vq_spatial)


@pytest.mark.parametrize("codes, message", [
    (np.full((2, 2, 2), 5), r"codes in \[0, 5\).*max 5"),
    (np.full((2, 2, 2), -1), r"codes in \[0, 5\).*min -1"),
    (np.zeros((2, 2, 2, 1), "int32"), r"shape \(batch, \?, \?\).*\(2, 2, 2, 1\)"),
    (np.zeros((2, 4), "int32"), r"shape \(batch, \?, \?\).*\(2, 4\)"),
    (np.zeros((2, 2, 2), "float32"), "integer codes.*float32"),
], ids=["too-large", "negative", "extra-axis", "flat", "float"])
def test_decode_codes_refuses_bad_codes(spatial_vae, codes, message):
    with pytest.raises(ValueError, match="argument `codes`.*" + message):
        spatial_vae.decode_codes(codes)


def test_rvq_codes_need_the_stage_axis():
    vae = _compiled(zoo_rvq)
    with pytest.raises(ValueError, match=r"shape \(batch, 2\).*\(3,\)"):
        vae.decode_codes(np.zeros(3, "int32"))


def test_sample_says_a_uniform_draw_of_codes_is_not_useful(spatial_vae):
    with pytest.raises(ValueError, match="uniform draw of codes is not a "
                       "useful sample.*decode_codes"):
        spatial_vae.sample(2, latent_shape=(2, 2, 2))


def test_models_without_codes_refuse_the_code_methods():
    vae = _compiled(zoo_diag)
    with pytest.raises(ValueError, match="no vector-quantised latent"):
        vae.encode_codes(zoo_data("diag", n=2))
    with pytest.raises(ValueError, match=r"are not. Use decode\(z\)"):
        vae.decode_codes(np.zeros(2, "int32"))


@pytest.mark.parametrize("objective, message", [
    (objectives.IWAE(num_samples=3), "equal the ELBO"),
    (objectives.IWAE(num_samples=3, gradient="dreg"), "equal the ELBO"),
    (objectives.BetaTCVAE(beta=2.0, dataset_size=16), "diagonal Gaussian"),
    (objectives.FactorVAE(), "vector-quantised"),
], ids=["IWAE", "DReG", "BetaTCVAE", "FactorVAE"])
def test_objectives_that_need_random_draws_refuse(objective, message):
    with pytest.raises(ValueError, match=message):
        _compiled(zoo_vq, objective=objective)


def test_dreg_refuses_a_quantized_level_beside_a_gaussian_one():
    x_in = keras.Input((D,), name="x")
    h = keras.layers.Dense(8, activation="tanh")(x_in)
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(h))
    z = keras_vae.ReparameterizedSample(seed=0, name="z")(q)
    c = keras_vae.VectorQuantizer(4, name="codes")(keras.layers.Dense(2)(h))
    out = keras.layers.Dense(D)(keras.layers.Concatenate()([z, c]))
    vae = keras_vae.VAEModel(x_in, out)
    with pytest.raises(ValueError, match=r"gradient='dreg'.*\['codes'\]"):
        vae.compile(loss=BernoulliNLL(),
                    objective=objectives.IWAE(3, gradient="dreg"))
    vae.compile(loss=BernoulliNLL(), objective=objectives.IWAE(3),
                jit_compile=False)  # standard IWAE: the Gaussian draws differ
    loss, metrics = vae.compute_objective(binary_data(8, d=D))
    assert np.isfinite(loss) and "perplexity" in metrics
    np.testing.assert_allclose(metrics["kl_codes"], math.log(4), rtol=1e-6)


# ---------------------------------------------------------- distribution
MIRRORED = textwrap.dedent(
    """
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras, numpy as np
    import keras_vae
    from keras_vae.losses import BernoulliNLL
    from tests.builders import binary_data

    x = binary_data(256, d=12)

    def build():
        keras.utils.set_random_seed(0)
        x_in = keras.Input((12,))
        h = keras.layers.Dense(8, activation="tanh")(x_in)
        z = keras_vae.VectorQuantizer(6, restart_after_steps=None, seed=0)(
            keras.layers.Dense(3)(h))
        out = keras.layers.Dense(12)(
            keras.layers.Dense(8, activation="tanh")(z))
        vae = keras_vae.VAEModel(x_in, out)
        vae.compile(optimizer=keras.optimizers.SGD(0.05),
                    loss=BernoulliNLL())
        return vae

    single = build()
    weights = single.get_weights()
    out = {"single": single.fit(x, batch_size=64, epochs=2, shuffle=False,
                                verbose=0).history}
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(weights)
    out["mirrored"] = mirrored.fit(x, batch_size=64, epochs=2,
                                   shuffle=False, verbose=0).history
    out["weight_diffs"] = {
        w.path: float(np.abs(a - b).max()) for w, a, b in zip(
            single.weights, single.get_weights(), mirrored.get_weights())}
    json.dump(out, open(sys.argv[1], "w"))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device(tmp_path):
    """Two replicas of half a batch each: the commitment loss, the EMA
    statistics (summed over replicas) and the metrics equal one device's
    on the whole batch; every weight (codebook, ema_count, ema_sum
    included) ends equal after two epochs."""
    (tmp_path / "mirrored.py").write_text(MIRRORED)
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, str(tmp_path / "mirrored.py"),
                    str(tmp_path / "out.json")],
                   check=True, env=env, cwd=root, timeout=600)
    got = json.loads((tmp_path / "out.json").read_text())
    assert set(got["single"]) == set(got["mirrored"])
    assert {"perplexity", "codebook_usage"} <= set(got["single"])
    for key, values in got["single"].items():
        np.testing.assert_allclose(got["mirrored"][key], values, rtol=1e-5,
                                   atol=1e-5, err_msg=key)
    diffs = got["weight_diffs"]
    assert any("ema_sum" in path for path in diffs), sorted(diffs)
    assert max(diffs.values()) < 1e-5, diffs
