"""Every latent family and objective through the one model-level harness
(`tests/model_harness.py`), and objective state owned by each model."""

import keras
import numpy as np
import pytest

from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from tests.builders import (
    MODEL_ZOO,
    QUANTIZED,
    zoo_categorical,
    zoo_data,
    zoo_diag,
)
from tests.model_harness import run_model_test

CASES = [
    # (zoo model, objective factory)
    ("diag", lambda: objectives.ELBO()),
    ("full", lambda: objectives.ELBO(num_samples=2)),
    ("iaf", lambda: objectives.ELBO()),
    ("gumbel", lambda: objectives.ELBO()),
    ("categorical", lambda: objectives.ELBO(baseline_units=8)),
    ("categorical", lambda: objectives.IWAE(num_samples=3)),  # VIMCO
    ("two_level", lambda: objectives.IWAE(num_samples=2)),
    ("spatial", lambda: objectives.ELBO()),
    ("diag", lambda: objectives.IWAE(num_samples=3)),
    ("diag", lambda: objectives.IWAE(num_samples=3, gradient="dreg")),
    ("diag", lambda: objectives.BetaTCVAE(beta=4.0, dataset_size=64)),
    ("diag", lambda: objectives.FactorVAE(discriminator_units=(8,))),
    ("vq", lambda: objectives.ELBO()),
    ("rvq", lambda: objectives.ELBO()),
    ("fsq", lambda: objectives.ELBO()),
    ("vq_spatial", lambda: objectives.ELBO()),
]


def _id(case):
    name, make = case
    return f"{name}-{type(make()).__name__}-{make().num_samples}"


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_model_harness(case, tmp_path):
    name, make = case
    run_model_test(
        MODEL_ZOO[name], make, zoo_data(name, n=16), tmp_path,
        latent_shape=(2, 2, 2) if name == "spatial" else None,
        sample=name not in QUANTIZED)


@pytest.mark.parametrize("make_objective, build", [
    (lambda: objectives.FactorVAE(discriminator_units=(8,), seed=1),
     zoo_diag),
    (lambda: objectives.ELBO(baseline_units=8), zoo_categorical),
], ids=["FactorVAE", "ELBO-learned-baseline"])
def test_one_objective_object_gives_each_model_its_own_state(
        make_objective, build, tmp_path):
    """One objective object compiled into two models: fitting one changes
    only its own state, and each saves and reloads its own."""
    objective = make_objective()
    x = zoo_data("diag", n=32)
    keras.utils.set_random_seed(0)
    a, b = build(), build()
    for model in (a, b):
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=BernoulliNLL(), objective=objective)
    assert a.objective is b.objective  # the same configuration object
    state_a, state_b = a.objective_layer, b.objective_layer
    assert state_a is not None and state_a is not state_b
    b_before = [w.numpy().copy() for w in state_b.weights]
    a_before = [w.numpy().copy() for w in state_a.trainable_weights]
    a.fit(x, batch_size=16, epochs=2, verbose=0)
    assert any(not np.array_equal(w0, w.numpy())
               for w0, w in zip(a_before, state_a.trainable_weights))
    for w0, w in zip(b_before, state_b.weights):
        np.testing.assert_array_equal(w0, w.numpy())  # b's state untouched
    b.fit(x, batch_size=16, epochs=1, verbose=0)  # its own optimizer works
    for model, name in ((a, "a"), (b, "b")):
        path = tmp_path / f"{name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        for w, w2 in zip(model.objective_layer.weights,
                         loaded.objective_layer.weights):
            np.testing.assert_array_equal(w.numpy(), w2.numpy())
    assert not all(np.array_equal(u.numpy(), w.numpy()) for u, w in zip(
        state_a.trainable_weights, state_b.trainable_weights))
