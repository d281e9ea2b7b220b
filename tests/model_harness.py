"""One model-level harness: what every VAEModel and objective must honour.

In the spirit of keras-hub's `run_backbone_test` / `run_model_saving_test`:
a new latent family or objective gets the whole battery by one line of
`tests/models/test_model_harness.py`.

`run_model_test(build, objective, x)` checks, for a model and objective:

1. the data forms `x`, `(x, x)` and `(x, x, w = 1)` give the same loss and
   metrics for the same noise (and a weight of 2 on every row doubles the
   per-example terms);
2. an XLA-compiled train step equals an eager one (`run_eagerly=True`) from
   the same weights and noise state: the loss, the metrics and every
   weight after the step;
3. the `.keras` round trip (`safe_mode=True`): the objective's config, every
   variable (weights, optimizer slots, the objective layer's state and its
   own optimizer, the noise streams), identical outputs for a fixed seed,
   and continued training that equals the original's step for step;
4. the exported SavedModel's signatures equal the in-memory calls of the
   same name (`serving_default` = `reconstruct`, `encode`, `sample`,
   `log_likelihood` with the signature's fixed seeds; `encode_codes` and
   `decode_codes` for vector-quantised latents), and it holds no
   variable of the objective layer.

`sample=False` for a model with no prior to draw from (vector-quantised
latents: `sample` refuses, and the export has no `sample` signature).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_vae import losses
from keras_vae.models import programs
from keras_vae.models.export import LOG_LIKELIHOOD_SEED


def _variables(model):
    """Every variable by position (names differ between two builds), the
    path of the first model's kept in the key for messages."""
    return {f"{i}:{v.path.split('/')[-1]}": np.array(v.numpy())
            for i, v in enumerate(model.variables)}


def _seed_states(model):
    return [v for v in model.variables if "seed_generator_state" in v.path]


def _compile(model, objective, **kwargs):
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=losses.BernoulliNLL(), objective=objective, **kwargs)


def _fresh(build, objective, seed, **kwargs):
    keras.utils.set_random_seed(seed)
    model = build()
    _compile(model, objective, **kwargs)
    return model


def _assert_close_dicts(a, b, rtol, atol, what):
    assert set(a) == set(b), (what, sorted(a), sorted(b))
    for key in a:
        np.testing.assert_allclose(np.asarray(a[key]), np.asarray(b[key]),
                                   rtol=rtol, atol=atol,
                                   err_msg=f"{what}: {key}")


def check_data_forms(model, x):
    """x, (x, x) and (x, x, 1) give one loss; weights 2 double it."""
    states = _seed_states(model)
    start = [s.numpy() for s in states]

    def run(data):
        for s, value in zip(states, start):
            s.assign(value)
        loss, metrics = model.compute_objective(data, training=False)
        return {"loss": loss, **metrics}

    ones = np.ones(len(x), "float32")
    alone = run(tf.constant(x))
    for data in [(tf.constant(x), tf.constant(x)),
                 (tf.constant(x), tf.constant(x), tf.constant(ones))]:
        _assert_close_dicts(alone, run(data), 1e-6, 1e-6, "data forms")
    doubled = run((tf.constant(x), tf.constant(x), tf.constant(2 * ones)))
    for key in ("elbo", "reconstruction", "kl"):
        np.testing.assert_allclose(doubled[key], 2 * np.asarray(alone[key]),
                                   rtol=1e-5, atol=1e-6, err_msg=key)


def check_xla_equals_eager(build, objective, x, seed, compile_kwargs):
    xla = _fresh(build, objective, seed, jit_compile=True, **compile_kwargs)
    eager = _fresh(build, objective, seed, run_eagerly=True,
                   jit_compile=False, **compile_kwargs)
    assert xla.jit_compile
    before = _variables(xla)
    _assert_close_dicts(before, _variables(eager), 0, 0, "same start")
    got = xla.train_on_batch(x, return_dict=True)
    want = eager.train_on_batch(x, return_dict=True)
    _assert_close_dicts(got, want, 2e-4, 2e-5, "XLA vs eager step")
    after = _variables(xla)
    assert any(not np.array_equal(after[k], before[k]) for k in after
               if "kernel" in k), "the step changed no weight"
    _assert_close_dicts(after, _variables(eager), 2e-4, 2e-5,
                        "XLA vs eager weights")
    return xla


def _quantized(model):
    return [level for level in model.levels if level.quantizer is not None]


def check_round_trip(model, x, tmp_path, latent_shape, sample=True):
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.objective.get_config() == model.objective.get_config()
    assert type(loaded.objective) is type(model.objective)
    assert type(loaded.likelihood) is type(model.likelihood)
    assert loaded.likelihood.get_config() == model.likelihood.get_config()
    _assert_close_dicts(_variables(model), _variables(loaded), 0, 0,
                        "saved variables")
    if model.objective_layer is not None:
        own = getattr(model.objective_layer, "optimizer", None)
        if own is not None:
            mine = loaded.objective_layer.optimizer
            assert mine is not own
            for a, b in zip(own.variables, mine.variables):
                np.testing.assert_array_equal(a.numpy(), b.numpy())
    seed = tf.constant([5, 7])
    for a, b in [(model, loaded)]:
        np.testing.assert_array_equal(
            a.trace(x, x, num_samples=3, seed=seed).log_weights(),
            b.trace(x, x, num_samples=3, seed=seed).log_weights())
        np.testing.assert_array_equal(a.reconstruct(x), b.reconstruct(x))
        if sample:
            np.testing.assert_array_equal(
                a.sample(4, seed=3, latent_shape=latent_shape),
                b.sample(4, seed=3, latent_shape=latent_shape))
        if _quantized(a):
            np.testing.assert_array_equal(a.encode_codes(x),
                                          b.encode_codes(x))
    # Training continues where it stopped: the same step on both.
    for m in (model, loaded):
        m.train_on_batch(x)
    _assert_close_dicts(_variables(model), _variables(loaded), 1e-6, 1e-7,
                        "continued training")
    return loaded


def check_export(model, x, tmp_path, latent_shape, samples=8, sample=True):
    path = model.export_serving(str(tmp_path / "served"),
                                log_likelihood_samples=samples)
    served = tf.saved_model.load(path)
    sig = served.signatures
    x_t = tf.constant(x)
    np.testing.assert_allclose(
        sig["serving_default"](x=x_t)["reconstruction"],
        model.reconstruct(x), rtol=1e-5, atol=1e-6)
    encoded = model.encode(x)
    encoded = encoded if isinstance(encoded, list) else [encoded]
    got = sig["encode"](x=x_t)
    want = np.concatenate([np.reshape(p, (len(x), -1))
                           for level in encoded
                           for p in (level if isinstance(level, tuple)
                                     else (level,))], axis=1)
    levels = model.levels
    names = []
    for level, params in zip(levels, encoded):
        keys = (["features"] if level.quantizer is not None
                else ["logits"] if not isinstance(params, tuple)
                else ["loc", "scale"])
        suffix = "" if len(levels) == 1 else f"_{level.name}"
        names += [k + suffix for k in keys]
    served_enc = np.concatenate(
        [np.reshape(got[n].numpy(), (len(x), -1)) for n in names], axis=1)
    np.testing.assert_allclose(served_enc, want, rtol=1e-5, atol=1e-6)
    extra = {}
    if latent_shape is not None:
        extra["latent_shape"] = tf.constant(latent_shape, tf.int32)
    if sample:
        np.testing.assert_allclose(
            sig["sample"](num_samples=tf.constant(4), seed=tf.constant(3),
                          **extra)["samples"],
            model.sample(4, seed=3, latent_shape=latent_shape),
            rtol=1e-5, atol=1e-6)
    else:
        assert "sample" not in sig, sorted(sig)
    if _quantized(model):  # one quantized latent in the zoo
        codes = model.encode_codes(x)
        served_codes = sig["encode_codes"](x=x_t)["codes"]
        np.testing.assert_array_equal(served_codes, codes)
        np.testing.assert_allclose(
            sig["decode_codes"](codes=served_codes)["params"],
            model.decode_codes(codes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        sig["log_likelihood"](x=x_t)["log_likelihood"],
        programs.log_likelihood(model, x_t, x_t, samples,
                                programs.SAMPLES_PER_CHUNK,
                                LOG_LIKELIHOOD_SEED),
        rtol=1e-5, atol=1e-4)
    # The objective's state (baselines, a discriminator) is not served.
    if model.objective_layer is not None:
        state = {v.path for v in model.objective_layer.variables}
        served_names = {v.name.split(":")[0] for v in served.variables}
        assert not state & served_names, sorted(state & served_names)


def run_model_test(build, objective, x, tmp_path, *, seed=0,
                   latent_shape=None, compile_kwargs=None, export=True,
                   sample=True):
    """The battery above for `build()` (a fresh uncompiled VAEModel) trained
    by `objective` (a factory: called for each model, or a string).
    `sample=False`: the model has no prior to draw from (see the module
    doc)."""
    compile_kwargs = compile_kwargs or {}
    make = objective if callable(objective) else (lambda: objective)
    model = check_xla_equals_eager(build, make(), x, seed, compile_kwargs)
    check_data_forms(model, x)
    check_round_trip(model, x, tmp_path, latent_shape, sample)
    if export:
        check_export(model, x, tmp_path, latent_shape, sample=sample)
    return model
