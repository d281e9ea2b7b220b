"""Shared base of every likelihood loss: -log p(x | decoder output)."""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


class LikelihoodLoss(keras.losses.Loss):
    """Negative log-likelihood of a TFP distribution built from parameters.

    A subclass says how the decoder's output (the *parameters*) becomes a
    `tfp.distributions` object over one data element, by implementing
    `_make_distribution(params)`, and how many parameters each data element
    needs (`PARAMS_PER_ELEMENT`, or the `params_per_element` property when
    it depends on the loss's arguments). The base class does the rest:

    ```none
    loss(x, params) = mean_b [ -sum_{event dims} log p(x_b | params_b) ]
    ```

    The first axis is the batch, every other axis of the data is an event
    axis (summed). Parameters are stacked along the last axis: a decoder
    for data of shape `(B, ..., C)` emits `(B, ..., k * C)` where
    `k = params_per_element`, so a Dense decoder on flat data uses
    `params_size(event_shape)` units and a convolutional decoder uses
    `params_size((C,))` filters.

    The log-likelihood is always computed in float32, whatever the
    mixed-precision policy of the decoder.

    Missing data: `log_prob(y_true, params, mask)` scores only the elements
    where `mask` is true (the observed ones): the log-density of the
    observed elements, log p(x_obs | params), whatever `y_true` holds at
    the others (NaN included). `VAEModel.compile(missing_values=...)`
    builds the mask from the data.

    Args:
        validate: if True, check on every call that `y_true` lies in the
            distribution's support and raise an error naming the loss if
            not. Off by default (no cost in the training step); data outside
            the support then gives whatever the TFP density gives (often
            `nan` or a meaningless value). The check raises in eager mode
            and in graph mode; XLA cannot raise from inside a compiled step,
            so under `jit_compile=True` validate the data before `fit` (e.g.
            by calling the loss once eagerly on a batch).
        reduction, name, dtype: as for `keras.losses.Loss`.
    """

    PARAMS_PER_ELEMENT = 1

    def __init__(self, validate=False, reduction="sum_over_batch_size",
                 name=None, dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        if not isinstance(validate, bool):
            raise ValueError(
                "Invalid value received for argument `validate`. Expected a "
                f"bool. Received: validate={validate!r}"
            )
        self.validate = validate

    # ---------------------------------------------------------------- API
    @classmethod
    def params_size(cls, event_shape):
        """Number of parameters the decoder must emit for one example.

        Args:
            event_shape: shape of one data example (without batch axis), or
                of one position's channels, e.g. `(784,)` or `(3,)`.
        """
        if isinstance(event_shape, int):
            event_shape = (event_shape,)
        size = 1
        for d in event_shape:
            size *= int(d)
        return cls.PARAMS_PER_ELEMENT * size

    @property
    def params_per_element(self):
        """Parameters per data element (`k`) for this instance's arguments."""
        return self.PARAMS_PER_ELEMENT

    def distribution(self, params):
        """The TFP distribution of one example per batch row.

        Returns a distribution whose batch shape is `params.shape[:1]` and
        whose event shape is every other axis of the data.
        """
        params = tf.cast(tf.convert_to_tensor(params), tf.float32)
        dist = self._make_distribution(params)
        rank = len(dist.batch_shape)
        if rank > 1:
            dist = tfd.Independent(
                dist, reinterpreted_batch_ndims=rank - 1
            )
        return dist

    def log_prob(self, y_true, params, mask=None):
        """Per-example log p(y_true | params), shape `(batch,)`, float32.

        With `mask` (bool, the shape of `y_true`; true = observed), the sum
        runs over the observed elements only: log p(x_obs | params). The
        other elements are never read (they may be NaN); a row with no
        observed element scores 0.
        """
        params = tf.cast(tf.convert_to_tensor(params), tf.float32)
        y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
        self._check_params_shape(y_true, params)
        if mask is not None:
            return self._masked_log_prob(y_true, params, mask)
        if self.validate:
            y_true = self._validate_support(y_true)
        return self.distribution(params).log_prob(self._prepare_y_true(y_true))

    def _masked_log_prob(self, y_true, params, mask):
        """Σ over observed elements of the elementwise log-density."""
        observed = tf.cast(mask, tf.bool)
        # A value in every loss's support where the data is missing, so the
        # unused densities (and their gradients) stay finite.
        y_true = tf.where(observed, y_true, tf.zeros_like(y_true))
        if self.validate:
            y_true = self._validate_support(y_true)
        elementwise = self._make_distribution(params).log_prob(
            self._prepare_y_true(y_true)
        )
        elementwise = tf.where(observed, elementwise,
                               tf.zeros_like(elementwise))
        axes = list(range(1, len(elementwise.shape)))
        return tf.reduce_sum(elementwise, axis=axes) if axes else elementwise

    def mean(self, params):
        """E[x | params]: what `VAEModel.sample` and `reconstruct` return."""
        return self.distribution(params).mean()

    def call(self, y_true, y_pred):
        return -self.log_prob(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config["validate"] = self.validate
        return config

    # ------------------------------------------------------- subclass API
    def _make_distribution(self, params):
        """Elementwise distribution; batch shape = data shape."""
        raise TypeError(
            f"{type(self).__name__} must define `_make_distribution`; "
            "LikelihoodLoss is a base class."
        )

    def _support_checks(self, y_true):
        """List of `(bool tensor, description)` that must all hold."""
        return []

    def _prepare_y_true(self, y_true):
        """Maps (validated) data to the values the distribution scores.

        Identity by default; e.g. clipping into an open interval, or mapping
        grey levels in [0, 1] to integer bins.
        """
        return y_true

    # ----------------------------------------------------------- helpers
    def _split_params(self, params):
        """Splits the last axis into `params_per_element` equal parts."""
        if self.params_per_element == 1:
            return [params]
        return tf.split(params, self.params_per_element, axis=-1)

    def _check_params_shape(self, y_true, params):
        y_last = y_true.shape[-1]
        p_last = params.shape[-1]
        if y_last is None or p_last is None:
            return
        expected = self.params_per_element * y_last
        if p_last != expected:
            raise ValueError(
                f"{type(self).__name__}: the decoder output (params) has last "
                f"dimension {p_last}, but data with last dimension {y_last} "
                f"needs {expected} parameters ({self.params_per_element} per "
                f"element; see `{type(self).__name__}.params_size`). Received: "
                f"y_true.shape={tuple(y_true.shape)}, "
                f"y_pred.shape={tuple(params.shape)}"
            )

    def _validate_support(self, y_true):
        checks = self._support_checks(y_true)
        deps = [
            tf.debugging.Assert(
                ok,
                [f"{type(self).__name__}(validate=True): y_true must be "
                 f"{what}; some values are not. First values:", y_true],
                summarize=8,
            )
            for ok, what in checks
        ]
        with tf.control_dependencies(deps):
            return tf.identity(y_true)

