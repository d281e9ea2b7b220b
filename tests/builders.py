"""The one home of the tests' data and model builders.

`binary_data` and `mlp_vae` are the small problems most tests share;
`MODEL_ZOO` builds one small model per latent family for the model-level
harness (`tests/model_harness.py`). Estimator- and disentanglement-specific
helpers stay beside their tests (`tests/objectives/estimator_checks.py`,
`tests/disentanglement/toy.py`).
"""

import keras
import numpy as np

import keras_vae


def binary_data(n=512, d=32, seed=0):
    """Noisy copies of 4 binary prototypes: a VAE can learn it quickly."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(4, d)) < 0.5
    idx = rng.integers(0, 4, n)
    flip = rng.uniform(size=(n, d)) < 0.05
    return np.where(flip, ~protos[idx], protos[idx]).astype("float32")


def mlp_vae(d=32, latent=2, hidden=32, seed=0, name="vae", **head_kwargs):
    """x (d) -> Dense -> GaussianEncoderHead -> KL -> z -> Dense -> logits."""
    x_in = keras.Input((d,), name="x")
    h = keras.layers.Dense(hidden, activation="relu")(x_in)
    q = keras_vae.GaussianEncoderHead(latent_dim=latent, **head_kwargs)(h)
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    h = keras.layers.Dense(hidden, activation="relu")(z)
    logits = keras.layers.Dense(d)(h)
    return keras_vae.VAEModel(x_in, logits, name=name)


# ------------------------------------------------------- the model zoo
D = 12  # data width of the zoo's flat models


def _flat_encoder(hidden=8):
    x_in = keras.Input((D,), name="x")
    return x_in, keras.layers.Dense(hidden, activation="tanh")(x_in)


def _decoder(z, hidden=8):
    h = keras.layers.Dense(hidden, activation="tanh")(z)
    return keras.layers.Dense(D)(h)


def zoo_diag(seed=0):
    x_in, h = _flat_encoder()
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(3)(h))
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    return keras_vae.VAEModel(x_in, _decoder(z), name="diag")


def zoo_full(seed=0):
    x_in, h = _flat_encoder()
    q = keras_vae.GaussianEncoderHead(3, covariance="full")(h)
    z = keras_vae.ReparameterizedSample(seed=seed)(keras_vae.KLRegularizer()(q))
    return keras_vae.VAEModel(x_in, _decoder(z), name="full")


def zoo_iaf(seed=0):
    x_in, h = _flat_encoder()
    loc, scale = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(3)(h))
    z = keras_vae.IAFSample(num_flows=2, hidden_units=(8,), seed=seed)(
        [loc, scale, h])
    return keras_vae.VAEModel(x_in, _decoder(z), name="iaf")


def zoo_gumbel(seed=0):
    x_in, h = _flat_encoder()
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(2, 3)(h))
    z = keras_vae.GumbelSoftmaxSample(temperature=0.5, seed=seed)(logits)
    return keras_vae.VAEModel(
        x_in, _decoder(keras.layers.Flatten()(z)), name="gumbel")


def zoo_categorical(seed=0):
    x_in, h = _flat_encoder()
    logits = keras_vae.KLRegularizer()(keras_vae.GumbelSoftmaxHead(1, 4)(h))
    z = keras_vae.CategoricalSample(seed=seed)(logits)
    return keras_vae.VAEModel(
        x_in, _decoder(keras.layers.Flatten()(z)), name="categorical")


def zoo_two_level(seed=0):
    x_in, h = _flat_encoder()
    q2 = keras_vae.KLRegularizer(name="kl_z2")(
        keras_vae.GaussianEncoderHead(2, name="q_z2")(h))
    z2 = keras_vae.ReparameterizedSample(seed=seed, name="z2")(q2)
    p1 = keras_vae.GaussianEncoderHead(3, name="p_z1")(z2)
    q1 = keras_vae.GaussianEncoderHead(3, name="q_z1")(
        keras.layers.Concatenate()([h, z2]))
    q1 = keras_vae.KLRegularizer(name="kl_z1")([q1, p1])
    z1 = keras_vae.ReparameterizedSample(seed=seed + 1, name="z1")(q1)
    return keras_vae.VAEModel(x_in, _decoder(z1), name="two_level")


SPATIAL = (4, 4, 3)  # one spatial example: (h, w, channels)


def zoo_spatial(seed=0):
    """A fully convolutional model, sizes unknown: (B, h, w, 3) -> latent
    (B, h/2, w/2, 2) -> Bernoulli logits of the input's shape."""
    x_in = keras.Input((None, None, SPATIAL[-1]), name="x")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="tanh")(x_in)
    q = keras_vae.GaussianEncoderHead(2, flatten=False)(h)
    z = keras_vae.ReparameterizedSample(seed=seed)(keras_vae.KLRegularizer()(q))
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                     activation="tanh")(z)
    out = keras.layers.Conv2D(SPATIAL[-1], 1)(h)
    return keras_vae.VAEModel(x_in, out, name="spatial")


def zoo_vq(seed=0):
    """An EMA codebook with k-means initialisation and restarts after one
    idle step: every piece of codebook state moves in one train step."""
    x_in, h = _flat_encoder()
    z = keras_vae.VectorQuantizer(
        6, kmeans_init=True, kmeans_iters=2, restart_after_steps=1,
        seed=seed)(keras.layers.Dense(3)(h))
    return keras_vae.VAEModel(x_in, _decoder(z), name="vq")


def zoo_rvq(seed=0):
    """Two stages of 4 codes, codebooks trained by the codebook loss."""
    x_in, h = _flat_encoder()
    z = keras_vae.ResidualVectorQuantizer(2, 4, ema_decay=None, seed=seed)(
        keras.layers.Dense(3)(h))
    return keras_vae.VAEModel(x_in, _decoder(z), name="rvq")


def zoo_fsq(seed=0):
    del seed  # no randomness
    x_in, h = _flat_encoder()
    z = keras_vae.FiniteScalarQuantizer([3, 4, 2])(keras.layers.Dense(3)(h))
    return keras_vae.VAEModel(x_in, _decoder(z), name="fsq")


def zoo_vq_spatial(seed=0):
    """A fully convolutional VQ-VAE, sizes unknown: (B, h, w, 3) ->
    features (B, h/2, w/2, 2) -> 5 codes -> logits of the input's shape."""
    x_in = keras.Input((None, None, SPATIAL[-1]), name="x")
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same",
                            activation="tanh")(x_in)
    z = keras_vae.VectorQuantizer(5, seed=seed)(keras.layers.Conv2D(2, 1)(h))
    h = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same",
                                     activation="tanh")(z)
    out = keras.layers.Conv2D(SPATIAL[-1], 1)(h)
    return keras_vae.VAEModel(x_in, out, name="vq_spatial")


MODEL_ZOO = {
    "diag": zoo_diag,
    "full": zoo_full,
    "iaf": zoo_iaf,
    "gumbel": zoo_gumbel,
    "categorical": zoo_categorical,
    "two_level": zoo_two_level,
    "spatial": zoo_spatial,
    "vq": zoo_vq,
    "rvq": zoo_rvq,
    "fsq": zoo_fsq,
    "vq_spatial": zoo_vq_spatial,
}
# Zoo models with vector-quantised latents: no prior to sample from.
QUANTIZED = ("vq", "rvq", "fsq", "vq_spatial")


def zoo_data(name, n=64, seed=0):
    """Binary data of the shape the zoo model `name` reads."""
    if name in ("spatial", "vq_spatial"):
        rng = np.random.default_rng(seed)
        return (rng.uniform(size=(n,) + SPATIAL) < 0.3).astype("float32")
    return binary_data(n, d=D, seed=seed)
