"""Missing entries in the data: which are observed, and what the encoder sees.

`VAEModel.compile(missing_values=float("nan"))` (or any number) marks the
entries of the data equal to it as missing. Every forward trace then

```none
mask       = x != missing_values           (x == x for NaN)      true = observed
encoder in = where(mask, x, FILL_VALUE)    FILL_VALUE = 0
likelihood = log p(x_obs | z) = Σ_observed log p(x_d | z)         (missing entries marginalised)
```

so training (ELBO, or IWAE: MIWAE, Mattei & Frellsen 2019), `elbo`,
`log_likelihood` (log p(x_obs)), `impute` and the exported signatures all
treat the data the same way.
"""

import math

import numpy as np
import tensorflow as tf

FILL_VALUE = 0.0


def check_missing_values(value):
    """None, or a float (NaN included), as `compile` takes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            "Invalid value received for argument `missing_values`. Expected "
            "None or a number (float('nan') for NaN-marked entries). "
            f"Received: missing_values={value!r}"
        )
    return float(value)


def observed(t, missing_values):
    """Bool mask of the observed entries of `t` (true = observed)."""
    t = tf.convert_to_tensor(t)
    if not t.dtype.is_floating:
        if math.isnan(missing_values):
            return tf.ones_like(t, dtype=tf.bool)
        return tf.not_equal(t, tf.cast(missing_values, t.dtype))
    if math.isnan(missing_values):
        return tf.logical_not(tf.math.is_nan(t))
    return tf.not_equal(t, tf.cast(missing_values, t.dtype))


def fill(t, missing_values, mask=None):
    """`t` with its missing entries set to `FILL_VALUE`."""
    t = tf.convert_to_tensor(t)
    if mask is None:
        mask = observed(t, missing_values)
    return tf.where(mask, t, tf.cast(FILL_VALUE, t.dtype))


def refuse_nan(arrays, what):
    """Raises if a NumPy float array holds NaN (a model compiled without
    `missing_values`): the error says how to mark missing entries."""
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and (
            np.isnan(a).any()
        ):
            raise ValueError(
                f"The data given to {what} contains NaN. If NaN marks "
                "missing entries, compile the model with "
                "`missing_values=float('nan')`: the likelihood then scores "
                "only the observed entries and `impute` fills the others. "
                "Otherwise remove or replace the NaN values."
            )
