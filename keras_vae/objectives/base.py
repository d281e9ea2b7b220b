"""Objective: the base of the bounds a `VAEModel` is trained by.

An objective maps one forward trace (`keras_vae.models.trace.Trace`: per
latent level z, log q(z|x), log p(z), the KL and its penalty, plus
log p(x|z)) and the sample weights to the scalar the train step
differentiates and the metrics `fit` reports. The layers describe the
model; the objective decides how it is scored (as Pyro's ELBO classes are
handed to its trainer). A new bound is a small subclass:

```python
@keras.saving.register_keras_serializable(package="my_project")
class RenyiBound(keras_vae.objectives.Objective):
    def __init__(self, alpha=0.5, num_samples=5):
        super().__init__(num_samples)
        self.alpha = alpha

    def loss(self, trace, sample_weight=None):
        log_w = (1.0 - self.alpha) * trace.log_weights()
        bound = keras_vae.objectives.iwae(log_w) / (1.0 - self.alpha)
        return -self.batch_mean(bound, sample_weight)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}

vae.compile(loss=keras_vae.losses.BernoulliNLL(), objective=RenyiBound(0.5))
```
"""

import keras
import tensorflow as tf

from keras_vae import _validation as v


class Objective:
    """Base class: a bound on log p(x) scored on a trace of K samples.

    Subclasses implement `loss(trace, sample_weight)`; they may override
    `check(model)` (refuse at `compile` what they cannot honour),
    `build(model)` (create weights of their own: a learned baseline, a
    discriminator), `metrics(trace, sample_weight)` and `get_config()`.
    An objective whose estimator rescales the gradient reaching the
    encoder through z (DReG) sets `gradient_taps = True`, and the model
    runs its traces with `keras_vae.models.gradient_tap.GradientTap`s.
    An objective whose own weights train by their own optimizer (a
    discriminator) returns it from `optimizer()`: the train step applies
    the gradients of `build`'s layer with it, in the same step, and the
    model's optimizer never sees those weights.

    Args:
        num_samples: K, the draws of z per example in each step.
    """

    gradient_taps = False

    def __init__(self, num_samples=1):
        self.num_samples = v.check_positive_int("num_samples", num_samples)

    # --------------------------------------------------------------- API
    def check(self, model):
        """Raises `ValueError` at `compile` if `model` cannot be trained by
        this objective (names the layers and the reason)."""
        del model

    def build(self, model):
        """Called by `compile` after `check`: creates what the objective
        trains besides the model (a learned baseline network, ...) and
        returns it as one `keras.layers.Layer`, or None. The model tracks
        that layer: its weights train with the model's optimizer, save and
        load with the model, and stay out of exported signatures."""
        del model
        return None

    def optimizer(self):
        """The optimizer of the weights of `build`'s layer, or None (the
        model's optimizer trains them with the rest)."""
        return None

    def loss(self, trace, sample_weight=None):
        """The scalar to minimise (a surrogate where the estimator needs
        one), from a trace of `num_samples` draws per example."""
        raise TypeError(
            f"{type(self).__name__} must define `loss(trace, "
            "sample_weight)`; Objective is a base class."
        )

    def metrics(self, trace, sample_weight=None):
        """The values `fit` reports besides `loss`, as batch means (β = 1):
        `elbo`, `reconstruction` (-E_q log p(x|z)), `kl` and, with several
        latents, `kl_<level>`."""
        values = {
            "elbo": self.batch_mean(trace.elbo, sample_weight),
            "reconstruction": self.batch_mean(
                trace.reconstruction, sample_weight
            ),
            "kl": self.batch_mean(trace.kl, sample_weight),
        }
        if len(trace.levels) > 1:
            for level in trace.levels:
                values[f"kl_{level.name}"] = self.batch_mean(
                    level.kl, sample_weight
                )
        return values

    def metric_names(self, level_names):
        """The keys of `metrics(...)` for a model whose latent levels are
        `level_names` (`VAEModel.compile` makes a tracker for each)."""
        names = ["elbo", "reconstruction", "kl"]
        if len(level_names) > 1:
            names += [f"kl_{name}" for name in level_names]
        return names

    def __call__(self, trace, sample_weight=None):
        """`(loss, metrics)` for a trace."""
        return self.loss(trace, sample_weight), self.metrics(
            trace, sample_weight
        )

    # ---------------------------------------------------------- helpers
    @staticmethod
    def batch_mean(values, sample_weight=None):
        """Keras' "sum_over_batch_size" of per-example values (B,):
        sum_b w_b v_b / B (w = 1 without weights)."""
        values = tf.cast(values, tf.float32)
        batch = tf.cast(tf.shape(values)[0], tf.float32)
        if sample_weight is not None:
            values = values * tf.reshape(
                tf.cast(sample_weight, tf.float32), [-1]
            )
        return tf.reduce_sum(values) / batch

    @staticmethod
    def mean_weight(sample_weight):
        """The mean sample weight (1 without weights), for batch-level
        terms such as the KL penalty."""
        if sample_weight is None:
            return 1.0
        return tf.reduce_mean(tf.cast(sample_weight, tf.float32))

    # ------------------------------------------------------ serialisation
    def get_config(self):
        return {"num_samples": self.num_samples}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def get(identifier, num_samples=None):
    """An `Objective` from a name (`"elbo"`, `"iwae"`), a config or an object.

    `num_samples` (K) goes to an objective named by a string; with an
    object it must be None or agree with the object's.
    """
    from keras_vae.objectives.elbo import ELBO
    from keras_vae.objectives.iwae import IWAE

    by_name = {"elbo": ELBO, "iwae": IWAE}
    if isinstance(identifier, dict):
        identifier = keras.saving.deserialize_keras_object(identifier)
    if isinstance(identifier, str):
        v.check_choice("objective", identifier, tuple(by_name))
        if num_samples is None:  # the objective's own default K
            return by_name[identifier]()
        return by_name[identifier](num_samples=num_samples)
    if not isinstance(identifier, Objective):
        raise v.invalid(
            "objective",
            "'elbo', 'iwae' or a keras_vae.objectives.Objective",
            identifier,
        )
    if num_samples is not None and num_samples != identifier.num_samples:
        raise ValueError(
            f"The objective {identifier!r} takes {identifier.num_samples} "
            f"samples; compile also received num_samples={num_samples}. "
            "Give K once, to the objective."
        )
    return identifier
