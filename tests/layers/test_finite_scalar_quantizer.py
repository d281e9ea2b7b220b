"""FiniteScalarQuantizer: outputs on the per-dimension grid, codes in range,
the code <-> grid bijection by enumeration, straight-through gradient,
usage metrics, XLA, mixed precision and bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import FiniteScalarQuantizer
from tests.helpers import run_layer_test

LEVELS = [3, 4, 5, 2]  # odd and even levels; 120 codes
RNG = np.random.default_rng(0)


def _grid(n):
    """The paper's grid of a feature with n levels, increasing."""
    half = n // 2
    return (np.arange(n) - half) / half


def _sweep_inputs(layer, n_levels, dim):
    """For each level of feature `dim`, an input value producing it (the
    middle of its interval on a fine sweep), found without the formula."""
    t = np.linspace(-8, 8, 20001).astype("float32")
    z = np.zeros((t.size, len(LEVELS)), "float32")
    z[:, dim] = t
    out = layer(z).numpy()[:, dim]
    values = np.unique(out)
    np.testing.assert_allclose(values, _grid(n_levels), atol=1e-7)
    # Monotone in the input: each level is one interval of the sweep.
    assert np.all(np.diff(out) >= 0)
    return np.array([np.median(t[out == v]) for v in values], "float32")


def test_shared_layer_checks():
    # usage_step, last_used, last_perplexity; no codebook, no loss.
    run_layer_test(
        FiniteScalarQuantizer, {"levels": LEVELS, "epsilon": 2e-3},
        RNG.normal(size=(6, 3, 4)).astype("float32"),
        expected_output_shape=(6, 3, 4), training_arg=True,
        expected_num_trainable_weights=0,
        expected_num_non_trainable_weights=3,
        expected_num_seed_generators=0, expected_num_losses=0,
    )


def test_every_output_is_on_its_grid_and_codes_are_in_range():
    layer = FiniteScalarQuantizer(LEVELS)
    z = (RNG.normal(size=(500, 4)) * 3.0).astype("float32")
    out = layer(z, training=True).numpy()
    for d, n in enumerate(LEVELS):
        grid = _grid(n)
        assert np.all(np.isin(out[:, d], grid.astype("float32"))), d
    codes = layer.codes(z).numpy()
    assert codes.dtype == np.int32 and codes.shape == (500,)
    assert codes.min() >= 0 and codes.max() < np.prod(LEVELS)
    assert layer.num_codes == 120
    np.testing.assert_allclose(layer.log_num_codes, np.log(120))
    # lookup(codes(z)) is exactly the forward pass.
    np.testing.assert_array_equal(layer.lookup(codes).numpy(), out)


def test_code_grid_map_is_a_bijection():
    layer = FiniteScalarQuantizer(LEVELS)
    k = np.prod(LEVELS)
    grid = layer.lookup(tf.range(k)).numpy()
    assert grid.shape == (k, 4)
    assert len({tuple(row) for row in grid}) == k  # injective, so bijective
    # Every code, reached from an input: the mixed-radix index of the level
    # positions (first feature fastest).
    per_dim = [_sweep_inputs(layer, n, d) for d, n in enumerate(LEVELS)]
    index = np.stack(np.meshgrid(*[np.arange(n) for n in LEVELS],
                                 indexing="ij"), -1).reshape(-1, 4)
    z = np.stack([per_dim[d][index[:, d]] for d in range(4)], -1)
    want = (index * np.cumprod([1] + LEVELS[:-1])).sum(-1)
    codes = layer.codes(z).numpy()
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_array_equal(np.sort(codes), np.arange(k))
    np.testing.assert_array_equal(layer.lookup(codes).numpy(), layer(z))
    # Every code used once: uniform usage.
    layer(z, training=True)
    metrics = layer.usage_metrics()
    np.testing.assert_allclose(float(metrics["perplexity"]), k, rtol=1e-5)
    assert float(metrics["codebook_usage"]) == 1.0


def test_straight_through_gradient_is_the_bounds_derivative():
    levels = np.array(LEVELS, "float64")
    eps = 1e-3
    half_l = (levels - 1) * (1 - eps) / 2
    shift = np.tan(np.where(levels % 2 == 0, 0.5, 0.0) / half_l)
    z = RNG.normal(size=(7, 4)).astype("float32")
    zt = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(zt)
        y = tf.reduce_sum(FiniteScalarQuantizer(LEVELS)(zt, training=True))
    want = (1 - np.tanh(z + shift) ** 2) * half_l / (levels // 2)
    # float32 tanh near saturation: relative error ~1e-5 there.
    np.testing.assert_allclose(tape.gradient(y, zt).numpy(), want,
                               rtol=1e-4)


def test_xla_eager_and_mixed_precision_agree():
    z = (RNG.normal(size=(32, 4)) * 2).astype("float16").astype("float32")
    eager = FiniteScalarQuantizer(LEVELS)
    ref_out = eager(z, training=True).numpy()
    xla = FiniteScalarQuantizer(LEVELS)
    xla.build((None, 4))
    step = tf.function(lambda x: (xla(x, training=True), xla.codes(x)),
                       jit_compile=True)
    out, codes = step(tf.constant(z))
    np.testing.assert_array_equal(out.numpy(), ref_out)
    np.testing.assert_array_equal(codes.numpy(), eager.codes(z).numpy())
    for a, b in zip(xla.weights, eager.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), err_msg=a.path)
    keras.mixed_precision.set_global_policy("mixed_float16")
    mixed = FiniteScalarQuantizer(LEVELS)
    out16 = mixed(tf.constant(z, tf.float16), training=True)
    assert out16.dtype == tf.float32
    np.testing.assert_array_equal(out16.numpy(), ref_out)


@pytest.mark.parametrize(
    "levels", [[], [1, 3], [2.5, 3], "abc", [True, 3], 5, [2**16, 2**16]],
    ids=["empty", "one", "float", "str", "bool", "int", "too_many"],
)
def test_bad_levels(levels):
    with pytest.raises(ValueError, match="argument `levels`.*Received"):
        FiniteScalarQuantizer(levels)


def test_bad_input():
    for eps in (0.0, 1.0):
        with pytest.raises(ValueError, match="argument `epsilon`"):
            FiniteScalarQuantizer([3, 3], epsilon=eps)
    layer = FiniteScalarQuantizer(LEVELS)
    for call in (layer, layer.codes):
        with pytest.raises(ValueError, match=r"dimension 4.*\(2, 3\)"):
            call(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"`codes`.*\[0, 120\)"):
        layer.lookup(tf.constant([0, 120]))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 120\)"):
        tf.function(layer.lookup)(tf.constant([-1]))
