"""Property-based tests (hypothesis) of the three layers.

Over latent sizes, feature shapes of rank 2..4, layer/input dtypes
(float32, float16, bfloat16, float64 and the mixed policies) and parameter
ranges, eagerly (no `fit`):

- `GaussianEncoderHead`: `(loc, scale)` are float32, finite, of the
  documented shapes, the scale's diagonal is >= `min_scale`, a full scale is
  lower-triangular; gradients are finite even for features of +-1e4.
- `ReparameterizedSample`: z is float32 (B, L), finite, within the noise's
  range of `loc`; `draw` folds K samples into the batch; seeds reproduce.
- `KLRegularizer`: identity on `(loc, scale)`, exactly one finite,
  non-negative loss equal to the documented formula for `weight`,
  `free_bits` and `capacity`; finite gradients for extreme posteriors.

Bad arguments (invalid constructor values, a scale of the wrong shape) are
checked in tests/test_bad_input.py, not here.

Budget: every test uses `BUDGET` (or a smaller setting); set
`KERAS_VAE_HYPOTHESIS_EXAMPLES` to run more examples, and
`KERAS_VAE_HYPOTHESIS_RANDOM=1` to explore new ones instead of the fixed
(derandomised) sequence used in CI.
"""


import keras
import numpy as np
import tensorflow as tf
from hypothesis import example, given, note
from hypothesis import strategies as st

from keras_vae import GaussianEncoderHead, KLRegularizer, ReparameterizedSample
from tests.hypothesis_budget import BUDGET

# ---------------------------------------------------------------- helpers
LAYER_DTYPES = [
    "float32", "float16", "bfloat16", "float64",
    "mixed_float16", "mixed_bfloat16",
]
TENSOR_DTYPES = ["float32", "float16", "bfloat16", "float64"]
PATTERNS = ["uniform", "plus", "minus", "alternating", "sparse"]
MAGNITUDES = [1.0, 1e2, 1e4]
EPS_BOUND = 5.3  # |eps| <= 5.3 for keras_vae.random.standard_normal


def make_array(seed, shape, magnitude, pattern):
    """float64 array of `shape`, values in [-magnitude, magnitude]."""
    rng = np.random.default_rng(seed)
    if pattern == "uniform":
        a = rng.uniform(-1.0, 1.0, shape)
    elif pattern == "plus":
        a = np.ones(shape)
    elif pattern == "minus":
        a = -np.ones(shape)
    elif pattern == "alternating":
        a = np.where(np.indices(shape).sum(0) % 2 == 0, 1.0, -1.0)
    else:  # sparse: mostly zeros, a few extreme values
        a = rng.choice([-1.0, 0.0, 1.0], size=shape, p=[0.1, 0.8, 0.1])
    return a * magnitude


def log_uniform(rng, low, high, shape):
    return np.exp(rng.uniform(np.log(low), np.log(high), shape))


def compute_dtype(policy):
    return keras.mixed_precision.Policy(policy).compute_dtype


def as_np(t):
    return np.asarray(tf.cast(t, tf.float64))


def assert_finite(name, t):
    a = as_np(t)
    assert np.all(np.isfinite(a)), f"{name} is not finite: {a}"


def posterior(seed, batch, latent, covariance, magnitude, pattern,
              scale_low=1e-4, scale_high=1e4):
    """(loc, scale) as float64 NumPy: scale (B, L) or lower-tri (B, L, L)."""
    rng = np.random.default_rng(seed + 1)
    loc = make_array(seed, (batch, latent), magnitude, pattern)
    diag = log_uniform(rng, scale_low, scale_high, (batch, latent))
    if covariance == "diag":
        return loc, diag
    off = make_array(seed + 2, (batch, latent, latent), magnitude, pattern)
    tril = np.tril(off, -1)
    tril[:, np.arange(latent), np.arange(latent)] = diag
    return loc, tril


feature_shapes = st.tuples(
    st.integers(1, 4),                                   # batch
    st.lists(st.integers(1, 6), min_size=1, max_size=3), # rank 2..4 in all
).map(lambda t: (t[0], *t[1]))
seeds = st.integers(0, 2**31 - 1)


# ============================================================ head
@BUDGET
@given(
    latent_dim=st.integers(1, 6),
    covariance=st.sampled_from(["diag", "full"]),
    shape=feature_shapes,
    policy=st.sampled_from(LAYER_DTYPES),
    min_scale=st.floats(1e-6, 10.0),
    magnitude=st.sampled_from(MAGNITUDES),
    pattern=st.sampled_from(PATTERNS),
    seed=seeds,
)
@example(latent_dim=6, covariance="full", shape=(4, 6, 6, 6),
         policy="float16", min_scale=1e-6, magnitude=1e4, pattern="minus",
         seed=0)
@example(latent_dim=1, covariance="diag", shape=(1, 1), policy="float64",
         min_scale=10.0, magnitude=1e4, pattern="plus", seed=0)
def test_head_outputs_are_finite_with_documented_shapes(
    latent_dim, covariance, shape, policy, min_scale, magnitude, pattern,
    seed,
):
    head = GaussianEncoderHead(
        latent_dim, covariance=covariance, min_scale=min_scale, dtype=policy
    )
    feats = tf.constant(
        make_array(seed, shape, magnitude, pattern),
        dtype=compute_dtype(policy),
    )
    with tf.GradientTape() as tape:
        loc, scale = head(feats)
        total = tf.reduce_sum(loc) + tf.reduce_sum(scale)
    grads = tape.gradient(total, head.trainable_weights)

    batch = shape[0]
    want_scale = (
        (batch, latent_dim) if covariance == "diag"
        else (batch, latent_dim, latent_dim)
    )
    assert tuple(loc.shape) == (batch, latent_dim)
    assert tuple(scale.shape) == want_scale
    assert loc.dtype == tf.float32 and scale.dtype == tf.float32
    assert_finite("loc", loc)
    assert_finite("scale", scale)
    s = scale.numpy()
    diag = s if covariance == "diag" else np.diagonal(s, 0, 1, 2)
    assert np.all(diag >= np.float32(min_scale)), (diag, min_scale)
    if covariance == "full":
        np.testing.assert_array_equal(s, np.tril(s))
    assert len(grads) == 4 and all(g is not None for g in grads)
    for g in grads:
        assert_finite("gradient", g)

    # The symbolic call agrees with the eager shapes and dtypes.
    sym_loc, sym_scale = head(keras.Input(shape[1:], dtype=feats.dtype))
    assert tuple(sym_loc.shape) == (None, latent_dim)
    assert tuple(sym_scale.shape) == (None,) + want_scale[1:]
    assert sym_loc.dtype == "float32" and sym_scale.dtype == "float32"


@BUDGET
@given(
    latent_dim=st.integers(1, 6),
    covariance=st.sampled_from(["diag", "full"]),
    shape=feature_shapes,
)
def test_head_scale_stays_positive_with_tiny_min_scale(
    latent_dim, covariance, shape
):
    # min_scale must be > 0 (0 is refused, see test_bad_input.py); the
    # smallest normal float32 still keeps the scale positive.
    head = GaussianEncoderHead(
        latent_dim, covariance=covariance, min_scale=1e-30,
        kernel_initializer="ones",
    )
    feats = tf.constant(np.full(shape, -1e4, "float32"))
    loc, scale = head(feats)
    s = scale.numpy()
    diag = s if covariance == "diag" else np.diagonal(s, 0, 1, 2)
    assert np.all(diag > 0), f"scale diagonal not positive: {diag}"
    kl = KLRegularizer()
    kl((loc, scale))
    assert_finite("KL", kl.losses[0])


# ============================================================ sample
@BUDGET
@given(
    batch=st.integers(1, 5),
    latent=st.integers(1, 6),
    covariance=st.sampled_from(["diag", "full"]),
    dtype=st.sampled_from(TENSOR_DTYPES),
    magnitude=st.sampled_from(MAGNITUDES),
    pattern=st.sampled_from(PATTERNS),
    seed=seeds,
    layer_seed=st.integers(0, 2**20),
    num_samples=st.integers(1, 4),
    inference=st.sampled_from(["mean", "sample"]),
)
def test_sample_is_finite_float32_and_within_noise_range(
    batch, latent, covariance, dtype, magnitude, pattern, seed, layer_seed,
    num_samples, inference,
):
    loc_np, scale_np = posterior(seed, batch, latent, covariance, magnitude,
                                 pattern)
    loc = tf.Variable(tf.constant(loc_np, dtype))
    scale = tf.Variable(tf.constant(scale_np, dtype))
    layer = ReparameterizedSample(seed=layer_seed, inference=inference)
    with tf.GradientTape(persistent=True) as tape:
        z = layer((loc, scale), training=True)
        total = tf.reduce_sum(z)
    assert tuple(z.shape) == (batch, latent) and z.dtype == tf.float32
    assert_finite("z", z)
    g_loc, g_scale = tape.gradient(total, [loc, scale])
    assert_finite("dz/dloc", g_loc)
    assert_finite("dz/dscale", g_scale)
    np.testing.assert_array_equal(as_np(g_loc), np.ones((batch, latent)))

    # z - loc = scale * eps (or scale @ eps) with |eps| <= 5.3.
    loc32 = as_np(tf.cast(loc, tf.float32))
    s32 = np.abs(as_np(tf.cast(scale, tf.float32)))
    spread = s32 if covariance == "diag" else s32.sum(-1)
    slack = 1e-5 * (np.abs(loc32) + EPS_BOUND * spread) + 1e-30
    assert np.all(np.abs(z.numpy() - loc32) <= EPS_BOUND * spread + slack)

    # Inference: the mean is loc (cast to float32); "sample" draws.
    z_eval = layer((loc, scale), training=False)
    assert tuple(z_eval.shape) == (batch, latent)
    assert z_eval.dtype == tf.float32
    assert_finite("z (inference)", z_eval)
    if inference == "mean":
        np.testing.assert_array_equal(z_eval.numpy(), loc32)

    # K draws folded into the batch axis, sample-major; seeds reproduce.
    draws = ReparameterizedSample(seed=layer_seed).draw(loc, scale,
                                                        num_samples)
    again = ReparameterizedSample(seed=layer_seed).draw(loc, scale,
                                                        num_samples)
    assert tuple(draws.shape) == (num_samples * batch, latent)
    assert draws.dtype == tf.float32
    assert_finite("draws", draws)
    np.testing.assert_array_equal(draws.numpy(), again.numpy())


# ============================================================ KL
@BUDGET
@given(
    batch=st.integers(1, 5),
    latent=st.integers(1, 6),
    covariance=st.sampled_from(["diag", "full"]),
    dtype=st.sampled_from(TENSOR_DTYPES),
    magnitude=st.sampled_from(MAGNITUDES),
    pattern=st.sampled_from(PATTERNS),
    seed=seeds,
    weight=st.one_of(st.just(0.0), st.floats(1e-3, 100.0)),
    regime=st.sampled_from(["plain", "free_bits", "capacity"]),
    free_bits=st.floats(0.0, 5.0),
    capacity=st.floats(0.0, 100.0),
)
@example(batch=1, latent=1, covariance="diag", dtype="float32", magnitude=1.0,
         pattern="sparse", seed=0, weight=0.0, regime="plain", free_bits=0.0,
         capacity=0.0)
def test_kl_regularizer_is_identity_with_one_finite_documented_penalty(
    batch, latent, covariance, dtype, magnitude, pattern, seed, weight,
    regime, free_bits, capacity,
):
    kwargs = {"weight": weight}
    if regime == "free_bits":
        kwargs["free_bits"] = free_bits
    elif regime == "capacity":
        kwargs["capacity"] = capacity
    note(f"KLRegularizer({kwargs})")
    loc_np, scale_np = posterior(seed, batch, latent, covariance, magnitude,
                                 pattern)
    loc = tf.Variable(tf.constant(loc_np, dtype))
    scale = tf.Variable(tf.constant(scale_np, dtype))
    layer = KLRegularizer(**kwargs)
    with tf.GradientTape() as tape:
        out_loc, out_scale = layer((loc, scale))
        assert len(layer.losses) == 1
        penalty = layer.losses[0]
    np.testing.assert_array_equal(as_np(out_loc), as_np(loc))
    np.testing.assert_array_equal(as_np(out_scale), as_np(scale))
    assert tuple(penalty.shape) == () and penalty.dtype == tf.float32
    assert_finite("penalty", penalty)
    value = float(penalty)
    assert value >= 0.0

    kl = layer.kl_divergence([loc, scale])
    assert tuple(kl.shape) == (batch,) and kl.dtype == tf.float32
    assert_finite("KL", kl)
    kl = kl.numpy().astype("float64")
    assert np.all(kl >= -1e-4 * (1.0 + np.abs(kl))), kl
    mean_kl = kl.mean()
    if regime == "plain":
        want = weight * mean_kl
    elif regime == "capacity":
        want = weight * abs(mean_kl - capacity)
    elif covariance == "diag":
        m = as_np(tf.cast(loc, tf.float32))
        s = as_np(tf.cast(scale, tf.float32))
        per_dim = 0.5 * (s**2 + m**2 - 1.0 - 2.0 * np.log(s))
        want = weight * np.sum(np.maximum(per_dim.mean(0), free_bits))
        assert value >= weight * free_bits * latent * (1 - 1e-6) - 1e-6
    else:
        want = weight * max(mean_kl, free_bits * latent)
        assert value >= weight * free_bits * latent * (1 - 1e-6) - 1e-6
    np.testing.assert_allclose(
        value, want, rtol=1e-4, atol=1e-4 * weight * (1.0 + capacity)
    )

    grads = tape.gradient(penalty, [loc, scale])
    assert all(g is not None for g in grads)
    if dtype in ("float32", "float64"):
        # A float16/bfloat16 input gets its gradient in its own dtype, where
        # e.g. weight / scale = 32 / 1e-4 overflows: not the layer's doing
        # (the head always hands it float32).
        for g in grads:
            assert_finite("gradient of the penalty", g)
