"""Objectives as objects: aliases, config, compile-time checks, and a
user-written bound (Rényi-α, Li & Turner 2016) as a small subclass."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_vae
from keras_vae import objectives
from keras_vae.losses import BernoulliNLL
from tests.builders import binary_data, mlp_vae

X = binary_data(128, d=32, seed=2)


@keras.saving.register_keras_serializable(package="keras_vae_tests")
class RenyiBound(objectives.Objective):
    """L_α = 1/(1-α) log (1/K) Σ_k w_k^(1-α): α=0 is IWAE_K, α→1 the ELBO."""

    def __init__(self, alpha=0.5, num_samples=5):
        super().__init__(num_samples)
        self.alpha = float(alpha)

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        scaled = (1.0 - self.alpha) * trace.log_weights()
        bound = self.batch_mean(
            objectives.iwae(scaled) / (1.0 - self.alpha), sample_weight)
        return -bound, {**self.standard_metrics(trace, sample_weight),
                        "renyi": bound}

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


def test_aliases_and_objects():
    vae = mlp_vae()
    vae.compile(loss=BernoulliNLL(), objective="iwae", num_samples=3)
    assert isinstance(vae.objective, objectives.IWAE)
    assert vae.num_samples == 3
    vae.compile(loss=BernoulliNLL())
    assert isinstance(vae.objective, objectives.ELBO) and vae.num_samples == 1
    vae.compile(loss=BernoulliNLL(), objective=objectives.IWAE(num_samples=4))
    assert vae.num_samples == 4
    with pytest.raises(ValueError, match=r"takes 4 samples.*num_samples=2"):
        vae.compile(loss=BernoulliNLL(),
                    objective=objectives.IWAE(num_samples=4), num_samples=2)
    with pytest.raises(ValueError, match=r"argument `objective`.*'vimco'"):
        vae.compile(loss=BernoulliNLL(), objective="vimco")
    with pytest.raises(ValueError, match=r"argument `objective`.*Received: "
                                         r"objective=3"):
        vae.compile(loss=BernoulliNLL(), objective=3)
    with pytest.raises(ValueError, match=r"argument `gradient`.*'reinforce'"):
        objectives.IWAE(gradient="reinforce")


@pytest.mark.parametrize("obj", [objectives.ELBO(num_samples=2),
                                 objectives.IWAE(num_samples=3),
                                 RenyiBound(alpha=0.3, num_samples=2)])
def test_config_round_trip(obj):
    config = keras.saving.serialize_keras_object(obj)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(obj) and again.get_config() == obj.get_config()


def test_renyi_matches_its_definition_on_the_trace():
    vae = mlp_vae(latent=3)
    vae.compile(loss=BernoulliNLL())
    t = vae.trace(X[:16], X[:16], num_samples=6, seed=tf.constant([3, 4]))
    log_w = t.log_weights().numpy().astype("float64")
    for alpha in (0.0, 0.5, 0.9):
        got = RenyiBound(alpha, 6).compute(t)[0]
        per = np.log(np.mean(np.exp((1 - alpha) * log_w), 0)) / (1 - alpha)
        np.testing.assert_allclose(got, -per.mean(), rtol=1e-5)
    # α = 0 is the IWAE bound; the ELBO is below both (Jensen).
    np.testing.assert_allclose(RenyiBound(0.0, 6).compute(t)[0],
                               objectives.IWAE(6).compute(t)[0], rtol=1e-6)
    assert (float(objectives.ELBO(6).compute(t)[0])
            >= float(RenyiBound(0.5, 6).compute(t)[0]))


def test_user_objective_trains_under_xla_and_saves(tmp_path):
    vae = mlp_vae(latent=2, seed=1)
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL(),
                objective=RenyiBound(alpha=0.5, num_samples=4))
    assert vae.jit_compile
    hist = vae.fit(X, batch_size=32, epochs=3, verbose=0).history
    assert "renyi" in hist and hist["loss"][-1] < hist["loss"][0]
    # The metric named by the returned dict is the bound, which lies
    # above the ELBO of the same draws (Jensen, 0 < alpha < 1).
    assert all(r > e for r, e in zip(hist["renyi"], hist["elbo"])), hist
    vae.save(tmp_path / "renyi.keras")
    loaded = keras.saving.load_model(tmp_path / "renyi.keras")
    assert isinstance(loaded.objective, RenyiBound)
    assert loaded.objective.alpha == 0.5 and loaded.num_samples == 4
    np.testing.assert_array_equal(loaded.predict(X[:4], verbose=0),
                                  vae.predict(X[:4], verbose=0))
    loaded.fit(X, batch_size=32, epochs=1, verbose=0)


def test_compute_objective_is_what_the_step_differentiates():
    vae = mlp_vae(latent=2)
    vae.compile(loss=BernoulliNLL(), objective="iwae", num_samples=3)
    with tf.GradientTape() as tape:
        loss, metrics = vae.compute_objective(X[:16])
    grads = tape.gradient(loss, vae.trainable_weights)
    assert all(g is not None for g in grads)
    assert set(metrics) == {"elbo", "reconstruction", "kl"}
    assert float(-loss) >= float(metrics["elbo"]) - 1e-4  # IWAE_3 >= ELBO


def test_kl_regularizer_is_a_marker_inside_the_model():
    vae = mlp_vae()
    vae.compile(loss=BernoulliNLL())
    assert vae.kl_layer.adds_loss is False
    vae(X[:4], training=True)
    assert vae.losses == []
    # In a plain model the same layer adds its loss.
    x_in = keras.Input((32,))
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    plain = keras.Model(x_in, q[0])
    plain(X[:4])
    assert len(plain.losses) == 1 and float(plain.losses[0]) > 0
