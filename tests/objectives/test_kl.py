import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from keras_vae import objectives

tfd = tfp.distributions


def test_analytic_kl_matches_tfp():
    q = tfd.MultivariateNormalDiag([[0.5, -1.0]], [[0.3, 2.0]])
    p = tfd.MultivariateNormalDiag([0.0, 0.0], [1.0, 1.0])
    assert objectives.has_analytic_kl(q, p)
    np.testing.assert_allclose(objectives.kl_divergence(q, p),
                               tfd.kl_divergence(q, p), rtol=1e-6)
    per_dim = objectives.kl_per_dimension(q, p).numpy()
    np.testing.assert_allclose(per_dim.sum(-1), tfd.kl_divergence(q, p), rtol=1e-6)
    assert per_dim.shape == (1, 2)


def test_sampled_fallback_with_given_samples_is_the_log_ratio_mean():
    q = tfd.MultivariateNormalDiag([[0.0, 0.0]], [[1.0, 1.0]])
    p = tfd.MixtureSameFamily(
        tfd.Categorical(probs=[0.5, 0.5]),
        tfd.MultivariateNormalDiag([[-1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0]] * 2),
    )
    assert not objectives.has_analytic_kl(q, p)
    z = q.sample(50_000, seed=tf.constant([1, 2]))
    got = objectives.kl_divergence(q, p, z).numpy()
    want = np.mean(q.log_prob(z) - p.log_prob(z), axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert objectives.kl_per_dimension(q, p) is None


def test_full_covariance_has_no_per_dimension_kl():
    q = tfd.MultivariateNormalTriL([[0.0, 0.0]], [[[1.0, 0.0], [0.5, 1.0]]])
    p = tfd.MultivariateNormalDiag([0.0, 0.0], [1.0, 1.0])
    assert objectives.kl_per_dimension(q, p) is None
    assert objectives.has_analytic_kl(q, p)
