import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae.layers.gumbel_softmax_sample import GumbelSoftmaxSample
from keras_vae.objectives import has_analytic_kl, kl_divergence
from keras_vae.posteriors import categorical_posterior
from keras_vae.priors.uniform_categorical import UniformCategorical
from tests.helpers import run_layer_test

tfd = tfp.distributions
RNG = np.random.default_rng(1)
B, N, C = 4, 3, 5
LOGITS = (2.0 * RNG.normal(size=(B, N, C))).astype("float32")


def _prior():
    prior = UniformCategorical()
    prior.build((None, N, C))
    return prior


def _closed_form_kl(logits):
    log_pi = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.sum(np.exp(log_pi) * log_pi, (1, 2)) + N * np.log(C)


def test_log_prob_and_shapes():
    p = _prior().distribution(N)
    assert p.batch_shape == () and p.event_shape == (N, C)
    assert p.dtype == tf.float32
    z = np.eye(C, dtype="float32")[RNG.integers(0, C, size=(7, N))]
    np.testing.assert_allclose(p.log_prob(z), np.full(7, -N * np.log(C)),
                               rtol=1e-6)


def test_analytic_kl_is_the_closed_form():
    q = categorical_posterior(LOGITS)
    p = _prior().distribution(N)
    assert has_analytic_kl(q, p)
    want = _closed_form_kl(LOGITS)
    np.testing.assert_allclose(kl_divergence(q, p), want, rtol=1e-5,
                               atol=1e-6)
    # Zero at the uniform posterior, N log C at a one-hot one.
    zero = kl_divergence(categorical_posterior(np.zeros((1, N, C))), p)
    np.testing.assert_allclose(zero, [0.0], atol=1e-6)
    one_hot = np.where(np.eye(C)[[0] * N], 0.0, -1e4)[None].astype("float32")
    np.testing.assert_allclose(
        kl_divergence(categorical_posterior(one_hot), p), [N * np.log(C)],
        rtol=1e-5)


def test_monte_carlo_kl_with_hard_draws_agrees():
    k = 50_000
    z, _ = GumbelSoftmaxSample(seed=2).draw_latent(
        [LOGITS], num_samples=k, training=False
    )
    q = categorical_posterior(np.tile(LOGITS, (k, 1, 1)))
    ratio = (q.log_prob(z) - _prior().distribution(N).log_prob(z)).numpy()
    ratio = ratio.reshape(k, B)  # sample-major
    se = ratio.std(0) / np.sqrt(k)
    # Within 5 standard errors (and the standard errors are ~0.005 nats).
    assert np.all(se < 0.01), se
    assert np.all(np.abs(ratio.mean(0) - _closed_form_kl(LOGITS)) < 5 * se)


def test_shared_layer_checks_and_build_survives_serialization():
    # A prior is an identity layer in a graph; it goes through the helper.
    run_layer_test(UniformCategorical, {}, LOGITS,
                   expected_output_shape=(B, N, C),
                   expected_num_trainable_weights=0,
                   expected_num_non_trainable_weights=0,
                   expected_num_seed_generators=0, expected_num_losses=0)
    revived = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(_prior())
    )
    assert type(revived) is UniformCategorical and revived.built
    assert (revived.num_variables, revived.num_classes) == (N, C)


def test_clear_errors():
    with pytest.raises(ValueError, match=r"input_shape=\(None, 6\)"):
        UniformCategorical().build((None, 6))
    with pytest.raises(ValueError, match=r"C >= 2"):
        UniformCategorical().build((None, 3, 1))
    with pytest.raises(ValueError, match=r"build\(\(None, N, C\)\)"):
        UniformCategorical().distribution(N)
    with pytest.raises(ValueError, match=r"Received: latent_dim=7"):
        _prior().distribution(7)
