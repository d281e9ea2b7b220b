import keras
import numpy as np
import pytest

import keras_vae


def binary_data(n=512, d=32, seed=0):
    """Noisy copies of 4 binary prototypes: a VAE can learn it quickly."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(size=(4, d)) < 0.5
    idx = rng.integers(0, 4, n)
    flip = rng.uniform(size=(n, d)) < 0.05
    return np.where(flip, ~protos[idx], protos[idx]).astype("float32")


def mlp_vae(d=32, latent=2, hidden=32, seed=0, name="vae", **head_kwargs):
    x_in = keras.Input((d,), name="x")
    h = keras.layers.Dense(hidden, activation="relu")(x_in)
    q = keras_vae.GaussianEncoderHead(latent_dim=latent, **head_kwargs)(h)
    q = keras_vae.KLRegularizer()(q)
    z = keras_vae.ReparameterizedSample(seed=seed)(q)
    h = keras.layers.Dense(hidden, activation="relu")(z)
    logits = keras.layers.Dense(d)(h)
    return keras_vae.VAEModel(x_in, logits, name=name)


@pytest.fixture
def data():
    return binary_data()
