"""Property-based tests (hypothesis) of the IAF and Gumbel-softmax latents.

Over batch and latent sizes, extreme posterior parameters (|loc|, |logit| up
to 1e4, scales down to 1e-4) and seeds, eagerly:

- `IAFSample`: z and log q(z | x) are float32, finite, of shapes
  (K·B, L) and (K·B,); their gradients to loc, scale and the context are
  finite; the mode is finite.
- `GumbelSoftmaxSample`: relaxed draws are finite, in [0, 1], and sum to 1
  over the classes; hard draws are one-hot; gradients to the logits are
  finite; the KL to the uniform categorical is finite and in [0, N log C].
"""

import numpy as np
import tensorflow as tf
from hypothesis import given
from hypothesis import strategies as st

from keras_vae import GumbelSoftmaxSample, IAFSample, KLRegularizer
from tests.hypothesis_budget import BUDGET

MAGNITUDES = [1.0, 1e2, 1e4]


def _finite(name, t):
    a = np.asarray(t, np.float64)
    assert np.all(np.isfinite(a)), f"{name} is not finite: {a}"


@BUDGET
@given(
    batch=st.integers(1, 4),
    latent=st.integers(1, 5),
    magnitude=st.sampled_from(MAGNITUDES),
    min_scale=st.sampled_from([1e-4, 1e-2, 1.0]),
    with_context=st.booleans(),
    num_samples=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_iaf_draws_and_log_q_are_finite(batch, latent, magnitude, min_scale,
                                        with_context, num_samples, seed):
    rng = np.random.default_rng(seed)
    loc = tf.Variable(rng.uniform(-magnitude, magnitude, (batch, latent))
                      .astype("float32"))
    scale = tf.Variable((min_scale + rng.uniform(0, magnitude,
                                                 (batch, latent)))
                        .astype("float32"))
    context = [tf.Variable(rng.uniform(-magnitude, magnitude, (batch, 3))
                           .astype("float32"))] if with_context else []
    layer = IAFSample(num_flows=2, hidden_units=(8,), seed=seed)
    layer([loc, scale] + context)  # builds
    with tf.GradientTape() as tape:
        z, log_q = layer.draw_latent([loc, scale], context, num_samples)
        total = tf.reduce_sum(z) + tf.reduce_sum(log_q)
    assert tuple(z.shape) == (num_samples * batch, latent)
    assert tuple(log_q.shape) == (num_samples * batch,)
    assert z.dtype == tf.float32 and log_q.dtype == tf.float32
    _finite("z", z)
    _finite("log q", log_q)
    for name, g in zip(["loc", "scale", "context"],
                       tape.gradient(total, [loc, scale] + context)):
        _finite(f"d/d{name}", g)
    _finite("mode", layer.mode([loc, scale], context))


@BUDGET
@given(
    batch=st.integers(1, 4),
    variables=st.integers(1, 4),
    classes=st.integers(2, 6),
    magnitude=st.sampled_from(MAGNITUDES),
    temperature=st.sampled_from([0.05, 0.5, 2.0]),
    num_samples=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_gumbel_draws_kl_and_gradients_are_finite(batch, variables, classes,
                                                  magnitude, temperature,
                                                  num_samples, seed):
    rng = np.random.default_rng(seed)
    logits = tf.Variable(rng.uniform(-magnitude, magnitude,
                                     (batch, variables, classes))
                         .astype("float32"))
    layer = GumbelSoftmaxSample(temperature=temperature, seed=seed)
    with tf.GradientTape() as tape:
        z, _ = layer.draw_latent([logits], (), num_samples, training=True)
        total = tf.reduce_sum(z * tf.range(classes, dtype=tf.float32))
    assert tuple(z.shape) == (num_samples * batch, variables, classes)
    _finite("relaxed z", z)
    assert np.all(z.numpy() >= 0) and np.all(z.numpy() <= 1)
    np.testing.assert_allclose(z.numpy().sum(-1), 1.0, rtol=1e-5)
    _finite("dz/dlogits", tape.gradient(total, logits))
    hard, _ = layer.draw_latent([logits], (), num_samples, training=False)
    np.testing.assert_array_equal(hard.numpy().sum(-1), 1.0)
    assert set(np.unique(hard.numpy())) <= {0.0, 1.0}

    kl_layer = KLRegularizer()
    kl_layer(logits)  # builds: the uniform categorical prior
    kl = kl_layer.kl_divergence([logits])
    _finite("KL", kl)
    bound = variables * np.log(classes)
    assert np.all(kl.numpy() >= -1e-4) and np.all(kl.numpy() <= bound + 1e-3)
    with tf.GradientTape() as tape:
        kl = tf.reduce_sum(kl_layer.kl_divergence([logits]))
    _finite("dKL/dlogits", tape.gradient(kl, logits))
