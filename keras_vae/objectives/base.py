"""Objective: the base of the bounds a `VAEModel` is trained by.

An objective maps one forward trace (`keras_vae.models.trace.Trace`: per
latent level z, its posterior and prior, log q(z|x), log p(z) and the KL,
plus log p(x|z)) and the sample weights to the scalar the train step
differentiates and the metrics `fit` reports. The layers describe the
model; the objective decides how it is scored (as Pyro's ELBO classes are
handed to its trainer).

An objective object holds configuration only. What it trains or tracks
(a learned baseline, running statistics, a discriminator, a frozen
feature network) lives in the layer its `build(model)` returns, which the
model owns (`VAEModel.objective_layer`): trained, saved and reloaded with
that model, and handed back to `compute` as `state`. One objective object
compiled into two models gives each its own state.

The interface:

```none
check(model)                       refuse at compile what it cannot honour
build(model) -> Layer | None       the state (optional); a state layer with an
                                   `optimizer` attribute trains its weights with
                                   that optimizer, the model's never sees them
compute(trace, state, sample_weight, tape) -> (loss, metrics)
get_config()                       saved with the model
```

A new bound is a small subclass:

```python
@keras.saving.register_keras_serializable(package="my_project")
class RenyiBound(keras_vae.objectives.Objective):
    def __init__(self, alpha=0.5, num_samples=5):
        super().__init__(num_samples)
        self.alpha = alpha

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        log_w = (1.0 - self.alpha) * trace.log_weights()
        bound = keras_vae.objectives.iwae(log_w) / (1.0 - self.alpha)
        metrics = {**self.standard_metrics(trace, sample_weight),
                   "renyi": self.batch_mean(bound, sample_weight)}
        return -self.batch_mean(bound, sample_weight), metrics

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}

vae.compile(loss=keras_vae.losses.BernoulliNLL(), objective=RenyiBound(0.5))
```

(A subclass that reports the standard metrics only may define
`loss(trace, sample_weight)` instead of `compute`.)
"""

import tensorflow as tf

from keras_vae import _validation as v


class Objective:
    """Base class: a bound on log p(x) scored on a trace of K samples.

    Subclasses implement `compute(trace, state, sample_weight, tape)` (or,
    reporting only the standard metrics, `loss(trace, sample_weight)`);
    they may override `check(model)`, `build(model)` and `get_config()`.
    An objective whose estimator rescales the gradient reaching the
    encoder through z (DReG) sets `gradient_taps = True`, and the model
    runs its training traces with `keras_vae.models.gradient_tap.GradientTap`s.

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
        """Called by `compile` after `check`: creates the objective's state
        for `model` (a learned baseline network, a discriminator, a frozen
        feature model, step counters) and returns it as one
        `keras.layers.Layer`, or None. Each call makes new state: nothing
        model-bound is kept on the objective. The model tracks the layer
        (`VAEModel.objective_layer`): its weights save and load with the
        model and stay out of exported signatures. Its trainable weights
        train with the model's optimizer, unless the layer has an
        `optimizer` attribute (a `keras.optimizers.Optimizer` made here):
        then that optimizer applies their gradients, in the same step, and
        its state saves and loads with the layer."""
        del model
        return None

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        """`(loss, metrics)` for a trace of `num_samples` draws per example.

        Args:
            trace: the forward trace (`keras_vae.models.trace.Trace`).
            state: the layer `build` returned for this model, or None.
            sample_weight: per-example weights `(B,)`, or None.
            tape: the persistent `tf.GradientTape` recording the train
                step (None outside training), for estimators whose loss
                reads gradients of its own terms.

        Returns:
            `loss`, the scalar to minimise (a surrogate where the
            estimator needs one), and `metrics`, a dict name -> scalar
            that `fit` reports beside `loss` (the keys are the metric
            names). The non-finite guard of `fit` reads `reconstruction`
            and `kl` when present (`standard_metrics` has both).
        """
        if type(self).loss is Objective.loss:
            raise TypeError(
                f"{type(self).__name__} must define `compute(trace, state, "
                "sample_weight, tape)`; Objective is a base class."
            )
        return (self.loss(trace, sample_weight),
                self.standard_metrics(trace, sample_weight))

    def loss(self, trace, sample_weight=None):
        """Shorthand for subclasses that report the standard metrics
        only: the scalar to minimise (see `compute`)."""
        raise TypeError(f"{type(self).__name__} defines no `loss`.")

    def __call__(self, trace, state=None, sample_weight=None, tape=None):
        """`compute(...)`."""
        return self.compute(trace, state, sample_weight, tape)

    def standard_metrics(self, trace, sample_weight=None):
        """The values every bound reports, as batch means (β = 1): `elbo`,
        `reconstruction` (-E_q log p(x|z)), `kl` and, with several
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

    @staticmethod
    def kl_penalty(trace, sample_weight=None):
        """Σ_levels of each `KLRegularizer`'s penalty of its level's KL,
        a scalar: β · batch-mean KL, or its free-bits / capacity form
        (`KLRegularizer.penalty`), times the mean sample weight."""
        total = tf.add_n([level.kl_layer.penalty(level.kl, level.kl_per_dim())
                          for level in trace.levels])
        return total * Objective.mean_weight(sample_weight)

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
