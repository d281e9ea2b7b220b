"""Missing entries in the data: which are observed, and what the encoder sees.

`VAEModel.compile(missing_values=float("nan"))` (or any number) marks the
entries of the data equal to it as missing. Every forward trace then

```none
mask       = x != missing_values           (x == x for NaN)      true = observed
encoder in = where(mask, x, FILL_VALUE)    FILL_VALUE = 0
           = where(mask, x, NaN)           an input read only by `MissingIndicator` layers
likelihood = log p(x_obs | z) = Σ_observed log p(x_d | z)         (missing entries marginalised)
```

so training (ELBO, or IWAE: MIWAE, Mattei & Frellsen 2019), `elbo`,
`log_likelihood` (log p(x_obs)), `impute` and the exported signatures all
treat the data the same way. An encoder that starts with
`keras_vae.MissingIndicator` sees the mask as well (`stage_inputs`):
the inputs it reads reach it with NaN at every missing entry.
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


def mark_missing(t, missing_values, mask=None):
    """`t` with its missing entries set to NaN (float inputs; others as
    given): what a `MissingIndicator` reads, whatever the marker."""
    t = tf.convert_to_tensor(t)
    if not t.dtype.is_floating:
        return t
    if mask is None:
        mask = observed(t, missing_values)
    return tf.where(mask, t, tf.cast(math.nan, t.dtype))


def indicator_inputs(model):
    """Indices of the model inputs read only by `MissingIndicator` layers.

    Raises when an input feeds a `MissingIndicator` and another layer too:
    the other layer would see NaN (or the fill, without knowing it). Looks
    at the top-level layers of the functional model.
    """
    from keras_vae.layers.missing_indicator import MissingIndicator
    from keras_vae.models import _keras_graph as kg

    found = []
    for j, t in enumerate(model.inputs):
        readers = [layer for layer in model.layers
                   for node in kg.calls(layer)
                   if any(u is t for u in kg.node_inputs(node))]
        marked = [r for r in readers if isinstance(r, MissingIndicator)]
        if marked and len(marked) != len(readers):
            others = [r.name for r in readers
                      if not isinstance(r, MissingIndicator)]
            raise ValueError(
                f"Model input {j} ('{t.name}') feeds the MissingIndicator "
                f"'{marked[0].name}' and also {others}. A MissingIndicator "
                "must be the only reader of its input (the others would "
                "see NaN at the missing entries): read its output instead."
            )
        if marked:
            found.append(j)
    return tuple(found)


def stage_inputs(model, xs, missing_values, indicators=None):
    """The model inputs as the stages read them: missing entries NaN for
    the inputs of `indicators` (default `indicator_inputs(model)`), set to
    `FILL_VALUE` for the others."""
    if indicators is None:
        indicators = indicator_inputs(model)
    return [mark_missing(t, missing_values) if j in indicators
            else fill(t, missing_values) for j, t in enumerate(xs)]


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
