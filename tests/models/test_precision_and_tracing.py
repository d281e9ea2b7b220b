import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.losses import BernoulliNLL
from keras_vae.models.vae_model import VAEModel
from tests.builders import binary_data, mlp_vae


def _fit(policy, x, epochs=2):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        vae = mlp_vae(seed=1)
        vae.compile(optimizer=keras.optimizers.Adam(3e-3), loss=BernoulliNLL())
        hist = vae.fit(x, batch_size=64, epochs=epochs, shuffle=False,
                       verbose=0).history
        ll = vae.log_likelihood(x[:32], num_samples=50)
        return vae, hist, ll
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_matches_float32(policy):
    x = binary_data(256)
    _, ref, _ = _fit("float32", x)
    vae, hist, ll = _fit(policy, x)
    # The decoder's matmuls run in 16 bits, the KL and log-probs in float32:
    # the epoch losses agree within 3% (bfloat16 keeps 8 mantissa bits).
    # (The loss-scale optimizer of float16 may skip its first steps.)
    np.testing.assert_allclose(hist["loss"], ref["loss"], rtol=0.03)
    assert ll.dtype == np.float32 and np.all(np.isfinite(ll))
    loc, scale = vae.encoder(x[:4])
    assert loc.dtype == scale.dtype == "float32"
    assert vae.kl_layer.kl_weight.dtype == "float32"


def test_fit_does_not_retrace_across_epochs(monkeypatch):
    traces = {"train": 0, "test": 0}
    original_train, original_test = VAEModel.train_step, VAEModel.test_step

    def counting_train(self, data):
        traces["train"] += 1  # Python runs only while tracing
        return original_train(self, data)

    def counting_test(self, data):
        traces["test"] += 1
        return original_test(self, data)

    monkeypatch.setattr(VAEModel, "train_step", counting_train)
    monkeypatch.setattr(VAEModel, "test_step", counting_test)
    per_epoch = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: per_epoch.append(dict(traces)))
    x = binary_data(512)
    vae = mlp_vae()
    vae.compile(loss=BernoulliNLL())
    ds = tf.data.Dataset.from_tensor_slices(x).shuffle(512).batch(64).prefetch(2)
    vae.fit(ds, epochs=4, validation_data=ds.take(2), verbose=0,
            callbacks=[record])
    # Each step is traced once: VAEModel.fit builds the optimizer first (a
    # tf.function that creates variables, as Keras' first train step does
    # when it builds the optimizer, is traced twice), then never again.
    assert per_epoch[0] == {"train": 1, "test": 1}
    assert all(counts == per_epoch[0] for counts in per_epoch)
    vae.fit(ds, epochs=2, verbose=0)
    assert traces["train"] == per_epoch[0]["train"]
