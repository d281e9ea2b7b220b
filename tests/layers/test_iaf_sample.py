import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_probability.python.bijectors import masked_autoregressive

from keras_vae.layers._made import made_masks
from keras_vae.layers.iaf_sample import GATE_BIAS, MAX_GATE_LOGIT, IAFSample
from keras_vae.random import standard_normal
from tests.helpers import run_layer_test

RNG = np.random.default_rng(0)
B, L, H = 5, 3, 4
LOC = RNG.normal(size=(B, L)).astype("float32")
SCALE = RNG.uniform(0.5, 1.5, size=(B, L)).astype("float32")
CTX = RNG.normal(size=(B, H)).astype("float32")
SEED = tf.constant([3, 4])


def _tril(n=B, dim=L):
    tril = np.tril(RNG.normal(size=(n, dim, dim)) * 0.3).astype("float32")
    tril[:, range(dim), range(dim)] = RNG.uniform(0.5, 1.5, size=(n, dim))
    return tril


def _layer(context=True, scale=SCALE, randomise=0.5, **kwargs):
    """A built IAFSample whose weights are random (not the initial ones)."""
    kwargs = {"num_flows": 2, "hidden_units": (8,), "seed": 1, **kwargs}
    layer = IAFSample(**kwargs)
    shapes = [LOC.shape, scale.shape] + ([CTX.shape] if context else [])
    layer.build(shapes)
    if randomise:
        rng = np.random.default_rng(42)
        for w in layer.trainable_weights:
            w.assign(rng.normal(size=w.shape, scale=randomise).astype("float32"))
    return layer


def _log_normal(z, loc, scale):
    """log N(z; loc, Σ) in float64 by hand; z (K, B, L)."""
    z, loc, scale = (np.asarray(a, "float64") for a in (z, loc, scale))
    if scale.ndim == loc.ndim + 1:  # Cholesky factor: solve scale u = z - loc
        u = np.linalg.solve(scale, (z - loc)[..., None])[..., 0]
        log_det = np.log(np.abs(np.diagonal(scale, axis1=-2, axis2=-1)))
    else:
        u = (z - loc) / scale
        log_det = np.log(scale)
    return (-0.5 * u**2 - log_det - 0.5 * np.log(2 * np.pi)).sum(-1)


@pytest.mark.parametrize(
    "context, inference", [(True, "mean"), (False, "sample")]
)
def test_shared_layer_checks(context, inference):
    data = (LOC, SCALE, CTX) if context else (LOC, SCALE)
    run_layer_test(
        IAFSample,
        {"num_flows": 2, "hidden_units": [8, 8], "seed": 7,
         "inference": inference},
        data,
        expected_output_shape=(B, L),
        training_arg=True,
        # Per MADE step: 2 hidden kernels + 2 biases, shift and log-scale
        # output kernels + biases (8); with a context its kernel into the
        # first hidden layer and into both outputs (3 more).
        expected_num_trainable_weights=2 * (11 if context else 8),
        expected_num_non_trainable_weights=0,
        expected_num_seed_generators=1, expected_num_losses=0,
    )


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_log_q_is_the_change_of_variables_formula(covariance):
    scale = SCALE if covariance == "diag" else _tril()
    layer = _layer(scale=scale)
    k = 3
    z, log_q = layer.draw_latent((LOC, scale), (CTX,), num_samples=k,
                                 seed=SEED)
    assert z.shape == (k * B, L) and log_q.shape == (k * B,)
    assert z.dtype == tf.float32 and log_q.dtype == tf.float32

    # z_0 by hand from the same noise; the flow's Jacobian by autodiff.
    eps = standard_normal((k, B, L), seed=SEED).numpy()
    if covariance == "diag":
        z0 = LOC + SCALE * eps
    else:
        z0 = LOC + np.einsum("bij,kbj->kbi", scale, eps)
    log_q0 = _log_normal(z0, LOC, scale).reshape(-1)
    z0 = tf.constant(z0.reshape(-1, L))
    flow = layer.flow_bijector([np.tile(CTX, (k, 1))])
    with tf.GradientTape() as tape:
        tape.watch(z0)
        z_t = flow.forward(z0)
    jac = tape.batch_jacobian(z_t, z0).numpy().astype("float64")
    _, log_abs_det = np.linalg.slogdet(jac)

    np.testing.assert_allclose(z, z_t, atol=1e-6)
    np.testing.assert_allclose(log_q, log_q0 - log_abs_det, atol=1e-4,
                               rtol=1e-5)
    # The flow really moved things: not the identity, log det not constant.
    assert np.abs(z.numpy() - z0.numpy()).max() > 0.1
    assert np.ptp(log_abs_det) > 0.1
    # And it is a bijection: MAF's forward (a while_loop) inverts it.
    np.testing.assert_allclose(flow.inverse(z_t), z0, atol=1e-4)


def test_made_masks_are_tfps():
    for event_size, hidden in [(3, (8,)), (5, (4, 7)), (1, (2,))]:
        ours = made_masks(event_size, hidden)
        tfps = masked_autoregressive._make_dense_autoregressive_masks(
            params=1, event_size=event_size, hidden_units=list(hidden)
        )
        assert len(ours) == len(tfps)
        for a, b in zip(ours, tfps):
            np.testing.assert_array_equal(a, b.astype("float32"))


def test_made_output_d_sees_only_earlier_inputs():
    layer = _layer()
    made = layer.mades[0]
    x = tf.constant(RNG.normal(size=(64, L)).astype("float32"))
    ctx = tf.constant(RNG.normal(size=(64, H)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, ctx])
        m, s = made(x, ctx)
    for out in (m, s):
        dx = np.abs(tape.batch_jacobian(out, x).numpy()).max(0)  # (L, L)
        dc = np.abs(tape.batch_jacobian(out, ctx).numpy()).max(0)  # (L, H)
        # Output d must not depend on inputs d, d + 1, ... (exactly zero).
        np.testing.assert_array_equal(np.triu(dx), 0.0)
        # ... and does depend on every earlier input and on the context.
        assert np.all(dx[np.tril_indices(L, -1)] > 1e-4), dx
        assert np.all(dc.max(-1) > 1e-4), dc


def test_flow_jacobian_is_triangular_per_step_and_dense_when_chained():
    def jacobian(layer):
        z0 = tf.constant(RNG.normal(size=(32, L)).astype("float32"))
        with tf.GradientTape() as tape:
            tape.watch(z0)
            z_t = layer.flow_bijector([CTX[:1].repeat(32, 0)]).forward(z0)
        return np.abs(tape.batch_jacobian(z_t, z0).numpy()).max(0)

    one = jacobian(_layer(num_flows=1))
    np.testing.assert_array_equal(np.triu(one, 1), 0.0)  # lower-triangular
    assert np.all(one[np.tril_indices(L, -1)] > 1e-4)
    # A contraction per coordinate: the diagonal is the gate, in (0, 1).
    assert np.all((np.diag(one) > 0) & (np.diag(one) < 1))

    # The order is reversed between steps: step 2 is upper-triangular in the
    # original order, so the chain's Jacobian has both off-diagonal parts.
    two = jacobian(_layer(num_flows=2))
    assert np.all(two[np.triu_indices(L, 1)] > 1e-4)
    assert np.all(two[np.tril_indices(L, -1)] > 1e-4)


def test_initial_flow_is_a_mild_contraction():
    layer = _layer(randomise=0)
    z, log_q = layer.draw_latent((LOC, SCALE), (CTX,), num_samples=2,
                                 seed=SEED)
    eps = standard_normal((2, B, L), seed=SEED).numpy()
    z0 = (LOC + SCALE * eps).reshape(-1, L)
    log_q0 = _log_normal(LOC + SCALE * eps, LOC, SCALE).reshape(-1)
    sigma = 1 / (1 + np.exp(-MAX_GATE_LOGIT * np.tanh(GATE_BIAS / MAX_GATE_LOGIT)))
    # Output weights start at std 0.01: z_T ≈ sigma^2 z_0 for two steps.
    np.testing.assert_allclose(z, sigma**2 * z0, atol=0.05)
    np.testing.assert_allclose(log_q, log_q0 - 2 * L * np.log(sigma),
                               atol=0.1)
    np.testing.assert_allclose(layer.mode((LOC, SCALE), (CTX,)),
                               sigma**2 * LOC, atol=0.05)


def test_same_draws_with_and_without_xla_and_fixed_seed():
    layer = _layer()
    params, ctx = (tf.constant(LOC), tf.constant(SCALE)), (tf.constant(CTX),)

    def draw():
        return layer.draw_latent(params, ctx, num_samples=4, seed=SEED)

    eager = draw()
    xla = tf.function(draw, jit_compile=True)()
    for a, b in zip(eager, xla):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    for a, b in zip(eager, draw()):  # a fixed seed: the same draws
        np.testing.assert_array_equal(a, b)

    # The layer's own noise stream: same under XLA, advances between calls.
    twin = _layer()
    inputs = [params[0], params[1], ctx[0]]
    first = layer(inputs, training=True)
    np.testing.assert_allclose(
        tf.function(lambda: twin(inputs, training=True), jit_compile=True)(),
        first, atol=1e-5, rtol=1e-5,
    )
    assert np.abs(layer(inputs, training=True) - first).max() > 1e-3


def test_inference_modes():
    layer = _layer()
    inputs = [LOC, SCALE, CTX]
    mean = layer(inputs, training=False)
    np.testing.assert_allclose(mean, layer.mode((LOC, SCALE), (CTX,)))
    np.testing.assert_allclose(
        mean, layer.flow_bijector([CTX]).forward(LOC), atol=1e-6
    )
    sampler = _layer(inference="sample")
    draws = [sampler(inputs, training=False) for _ in range(2)]
    assert np.abs(draws[0] - draws[1]).max() > 1e-3


def test_mixed_precision_output_is_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    loc = keras.Input((L,))
    scale = keras.Input((L,))
    ctx = keras.Input((H,))
    z = IAFSample(seed=0)([loc, scale, ctx])
    assert z.dtype == "float32"
    model = keras.Model([loc, scale, ctx], z)
    layer = model.layers[-1]
    assert all(w.dtype == "float32" for w in layer.weights)
    out = model([LOC, SCALE, CTX], training=True)
    assert out.dtype == tf.float32 and np.all(np.isfinite(out))


def test_density_integrates_to_one_and_matches_the_samples():
    # 2-D so that q can be integrated on a grid through the inverse flow.
    loc = np.array([[0.3, -0.2]], "float32")
    scale = np.array([[0.8, 0.6]], "float32")
    ctx = np.array([[0.5, -1.0, 0.2, 0.7]], "float32")
    layer = IAFSample(num_flows=2, hidden_units=(8,), seed=5)
    layer.build([loc.shape, scale.shape, ctx.shape])
    rng = np.random.default_rng(7)
    for w in layer.trainable_weights:
        w.assign(rng.normal(size=w.shape, scale=0.4).astype("float32"))

    # log q at the draws equals log q0(f^-1(z)) + log|det df^-1/dz|.
    n = 20_000
    z, log_q = layer.draw_latent((loc, scale), (ctx,), num_samples=n,
                                 seed=SEED)
    flow = layer.flow_bijector([np.tile(ctx, (n, 1))])
    z0 = flow.inverse(z)
    via_inverse = (_log_normal(z0.numpy()[None], loc, scale)[0]
                   + flow.inverse_log_det_jacobian(z, event_ndims=1).numpy())
    np.testing.assert_allclose(log_q, via_inverse, atol=1e-3)

    # On a grid: q integrates to one, and its mean is the samples' mean.
    z = z.numpy()
    lo, hi = z.min(0) - 1.0, z.max(0) + 1.0
    g = 200
    axes = [np.linspace(lo[d], hi[d], g, dtype="float32") for d in range(2)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    flow = layer.flow_bijector([np.tile(ctx, (g * g, 1))])
    grid0 = flow.inverse(grid).numpy()
    log_q_grid = (_log_normal(grid0[None], loc, scale)[0]
                  + flow.inverse_log_det_jacobian(grid, event_ndims=1).numpy())
    weights = np.exp(log_q_grid) * np.prod((hi - lo) / (g - 1))
    np.testing.assert_allclose(weights.sum(), 1.0, atol=0.01)
    grid_mean = (weights[:, None] * grid).sum(0) / weights.sum()
    # Standard error of the sample mean is std / sqrt(n) < 0.01.
    np.testing.assert_allclose(z.mean(0), grid_mean, atol=0.02)
    # The sampled entropy -E[log q] is the base entropy plus E[log det].
    base_entropy = np.sum(np.log(scale)) + np.log(2 * np.pi * np.e)
    np.testing.assert_allclose(
        -log_q.numpy().mean(),
        base_entropy + flow_log_det_mean(layer, loc, scale, ctx, n),
        atol=0.05,
    )


def flow_log_det_mean(layer, loc, scale, ctx, n):
    """E[log|det dz_T/dz_0|] over z_0 ~ N(loc, scale) (fresh draws)."""
    eps = standard_normal((n, 2), seed=tf.constant([9, 9])).numpy()
    z0 = loc + scale * eps
    flow = layer.flow_bijector([np.tile(ctx, (n, 1))])
    return flow.forward_log_det_jacobian(z0, event_ndims=1).numpy().mean()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_flows": 0}, r"argument `num_flows`.*Received: num_flows=0"),
        ({"num_flows": 1.5}, r"argument `num_flows`"),
        ({"hidden_units": ()}, r"argument `hidden_units`.*Received: hidden_units=\(\)"),
        ({"hidden_units": (8, -1)}, r"argument `hidden_units`.*\(8, -1\)"),
        ({"hidden_units": 8}, r"argument `hidden_units`.*Received: hidden_units=8"),
        ({"inference": "x"}, r"argument `inference`.*Received: inference='x'"),
        ({"seed": "x"}, r"argument `seed`"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IAFSample(**kwargs)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"scale.shape=\(None, 4\)"):
        IAFSample()([keras.Input((3,)), keras.Input((4,))])
    with pytest.raises(ValueError, match=r"context of shape \(batch, H\)"):
        IAFSample()([keras.Input((3,)), keras.Input((3,)),
                     keras.Input((2, 2))])
    layer = _layer(context=True)
    with pytest.raises(ValueError, match="built with a context"):
        layer([LOC, SCALE], training=True)
