import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.losses import BernoulliNLL
from tests.models.conftest import binary_data, mlp_vae


def _compiled():
    vae = mlp_vae()
    vae.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BernoulliNLL())
    return vae


def test_nan_target_names_reconstruction_and_keeps_weights_finite():
    x = binary_data(256)
    target = x.copy()
    target[70, 3] = np.nan  # second batch of 64
    vae = _compiled()
    # Through tf.data: NumPy data holding NaN is refused before fit starts
    # (tests/models/test_missing_data.py); a pipeline's NaN reaches the step.
    data = tf.data.Dataset.from_tensor_slices((x, target)).batch(64)
    with pytest.raises(FloatingPointError,
                       match=r"reconstruction term in 1 step.*skipped") as err:
        vae.fit(data, epochs=3, verbose=0)
    assert "missing_values=float('nan')" in str(err.value)
    assert "kl term" not in str(err.value)
    assert "epoch 1" in str(err.value)
    assert all(np.isfinite(w).all() for w in vae.get_weights())
    # 4 steps ran, the NaN one did not update the optimizer either.
    assert int(vae.optimizer.iterations) == 3


def test_clean_data_is_not_flagged():
    vae = _compiled()
    hist = vae.fit(binary_data(128), batch_size=64, epochs=2, verbose=0)
    assert len(hist.history["loss"]) == 2


def test_terminate_on_nan_stops_at_the_batch():
    x = binary_data(256)
    bad = x.copy()
    bad[0, 0] = np.inf
    vae = _compiled()
    with pytest.raises(FloatingPointError, match="kl term"):
        vae.fit(bad, batch_size=64, epochs=3, shuffle=False, verbose=0,
                callbacks=[keras.callbacks.TerminateOnNaN()])
    assert int(vae.optimizer.iterations) == 0
    assert all(np.isfinite(w).all() for w in vae.get_weights())
