"""export_serving: a SavedModel that TensorFlow alone can load and serve."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from keras_vae.random import derive_seed
from tests.builders import binary_data, mlp_vae

SIGNATURES = ["serving_default", "encode", "decode", "sample", "log_likelihood"]

# Runs in a fresh interpreter that never imports keras_vae.
SERVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_path, out_path = sys.argv[1:4]
    model = tf.saved_model.load(path)
    sig = model.signatures
    x = np.load(x_path)
    out = {
        "signatures": sorted(sig.keys()),
        "reconstruction": sig["serving_default"](x=x)["reconstruction"],
        "loc": sig["encode"](x=x)["loc"],
        "scale": sig["encode"](x=x)["scale"],
        "params": sig["decode"](z=sig["encode"](x=x)["loc"])["params"],
        "samples": sig["sample"](num_samples=tf.constant(5),
                                 seed=tf.constant(7))["samples"],
        "log_likelihood": sig["log_likelihood"](x=x)["log_likelihood"],
        "log_likelihood_again": sig["log_likelihood"](x=x)["log_likelihood"],
        "imported": sorted(m for m in sys.modules if m.startswith("keras_vae")),
    }
    json.dump({k: np.asarray(v).tolist() if not isinstance(v, list) else v
               for k, v in out.items()}, open(out_path, "w"))
    """
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    tmp = tmp_path_factory.mktemp("export")
    data = binary_data(256)
    vae = mlp_vae(seed=3)
    vae.compile(optimizer=keras.optimizers.Adam(3e-3), loss=BernoulliNLL())
    vae.fit(data, batch_size=64, epochs=2, verbose=0)
    state = vae.sampler.seed_generator.state.numpy()
    path = vae.export_serving(tmp / "saved_model", log_likelihood_samples=50)
    return vae, data[:16], path, state, tmp


def test_signatures_match_the_model_in_a_process_without_keras_vae(exported):
    vae, x, path, state, tmp = exported
    np.save(tmp / "x.npy", x)
    script = tmp / "server.py"
    script.write_text(SERVER)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run(
        [sys.executable, str(script), str(path), str(tmp / "x.npy"),
         str(tmp / "out.json")],
        check=True, env=env, cwd=str(tmp), timeout=300,
    )
    got = json.loads((tmp / "out.json").read_text())
    assert got["imported"] == []
    assert got["signatures"] == sorted(SIGNATURES)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(got["reconstruction"], vae.reconstruct(x), **tol)
    loc, scale = vae.encode(x)
    np.testing.assert_allclose(got["loc"], loc, **tol)
    np.testing.assert_allclose(got["scale"], scale, **tol)
    np.testing.assert_allclose(got["params"], vae.decode(loc), **tol)
    np.testing.assert_allclose(got["samples"], vae.sample(5, seed=7), **tol)
    # Served scores are deterministic: the same request, the same scores.
    assert got["log_likelihood"] == got["log_likelihood_again"]
    # K = 50 in chunks of 16 samples with fixed seeds vs the model's own
    # estimate with K = 2000: within the Monte Carlo error of K = 50.
    reference = vae.log_likelihood(x, num_samples=2000, seed=0)
    served = np.array(got["log_likelihood"])
    assert abs(np.mean(served - reference)) < 0.25
    # Per example: exactly the model's own trace with the signature's seeds
    # (chunks of 16 samples), re-run in this process.
    from keras_vae.models.export import LOG_LIKELIHOOD_SEED
    from keras_vae.models.programs import SAMPLES_PER_CHUNK

    def chunk(k, index):
        seed = derive_seed(LOG_LIKELIHOOD_SEED, index)
        return vae.trace(x, x, num_samples=k, seed=seed).log_weights()

    same = objectives.chunked_logmeanexp(chunk, 50, SAMPLES_PER_CHUNK)
    np.testing.assert_allclose(served, same, rtol=1e-5)


def test_saved_model_cli_lists_every_signature(exported):
    _, _, path, _, _ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.skip("saved_model_cli is not installed next to this Python")
    out = subprocess.run(
        [cli, "show", "--dir", str(path), "--all"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    for name in SIGNATURES:
        assert f"signature_def['{name}']" in out
    assert "inputs['x']" in out and "outputs['log_likelihood']" in out


def test_export_replaces_an_existing_model_atomically(exported):
    vae, _, path, _, tmp = exported
    (tmp / "saved_model" / "marker").write_text("old")
    vae.export_serving(path, log_likelihood_samples=5)
    assert not (tmp / "saved_model" / "marker").exists()
    leftovers = [p for p in os.listdir(tmp) if p.startswith(".")]
    assert leftovers == []


def test_conditional_model_exports_the_condition(tmp_path):
    x_in, y_in = keras.Input((8,), name="x"), keras.Input((2,), name="label")
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample()(q)
    out = keras.layers.Dense(8)(keras.layers.Concatenate()([z, y_in]))
    vae = keras_vae.VAEModel([x_in, y_in], out)
    vae.compile(loss=BernoulliNLL())
    import tensorflow as tf

    path = vae.export_serving(tmp_path / "cvae", log_likelihood_samples=4)
    sig = tf.saved_model.load(path).signatures
    x = np.ones((3, 8), "float32")
    y = np.eye(2, dtype="float32")[[0, 1, 1]]
    assert sig["serving_default"](x=x, input_1=y)["reconstruction"].shape == (3, 8)
    assert sig["decode"](z=np.zeros((3, 2), "float32"), input_1=y)["params"].shape == (3, 8)
    samples = sig["sample"](num_samples=tf.constant(4), seed=tf.constant(1),
                            input_1=y[:1])["samples"]
    assert samples.shape == (4, 8)
    ll = sig["log_likelihood"](x=x, input_1=y, targets=x)["log_likelihood"]
    assert ll.shape == (3,) and np.all(np.isfinite(ll))


IMPUTE_SERVER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf

    path, x_path, out_path = sys.argv[1:4]
    sig = tf.saved_model.load(path).signatures
    x = np.load(x_path)
    out = sig["impute"](x=x, seed=tf.constant(7))["imputed"].numpy()
    json.dump({"imputed": out.tolist(),
               "imported": [m for m in sys.modules
                            if m.startswith("keras_vae")]},
              open(out_path, "w"))
    """
)


def test_impute_signature_matches_the_model_without_keras_vae(tmp_path):
    x_in = keras.Input((6,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample(seed=0)(q)
    vae = keras_vae.VAEModel(x_in, keras.layers.Dense(6)(z))
    vae.compile(loss=keras_vae.losses.GaussianNLL(scale=0.5),
                missing_values=float("nan"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 6)).astype("float32")
    x[rng.random(x.shape) < 0.3] = np.nan
    path = vae.export_serving(tmp_path / "sm", log_likelihood_samples=40)
    np.save(tmp_path / "x.npy", x)
    subprocess.run(
        [sys.executable, "-c", IMPUTE_SERVER, str(path),
         str(tmp_path / "x.npy"), str(tmp_path / "out.json")],
        check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    served = json.load(open(tmp_path / "out.json"))
    assert served["imported"] == []
    local = vae.impute(x, num_samples=40, seed=7, batch_size=len(x))
    np.testing.assert_allclose(served["imputed"], local, rtol=1e-5,
                               atol=1e-5)
    assert not np.isnan(local).any()
    np.testing.assert_array_equal(local[~np.isnan(x)], x[~np.isnan(x)])
    # (A model compiled without `missing_values` has no `impute`
    # signature: the exact signature list of
    # test_signatures_match_the_model_in_a_process_without_keras_vae.)
