"""The evidence lower bound with K Monte Carlo samples.

```none
ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || p(z))  <=  log p(x)
        ~ (1/K) sum_k log p(x | z_k) - KL,     z_k ~ q(z | x)
log p(x) - ELBO(x) = KL(q(z | x) || p(z | x))  >= 0
loss    = -(1/K) sum_k log p(x | z_k) + sum_levels penalty(KL)   (β, free bits, capacity)
```

Latents that are not reparameterizable (`CategoricalSample`) get
score-function gradients with control variates
(`keras_vae.objectives.score_function`, `.baselines`).

References: Kingma & Welling, "Auto-Encoding Variational Bayes", 2013;
Mnih & Gregor, "Neural Variational Inference and Learning in Belief
Networks", 2014 (NVIL).
"""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.objectives import score_function as sf
from keras_vae.objectives.base import Objective
from keras_vae.objectives.baselines import ScoreFunctionBaseline

BASELINES = ("learned", "running", "none")


def elbo(log_px_z, kl):
    """Per-example ELBO estimate.

    Args:
        log_px_z: log p(x | z_k), shape (K, B).
        kl: KL(q(z|x) || p(z)) per example, shape (B,) (analytic, or a
            sampled estimate over the same z_k).

    Returns:
        Tensor of shape (B,).
    """
    return tf.reduce_mean(log_px_z, axis=0) - kl


@keras.saving.register_keras_serializable(package="keras_vae")
class ELBO(Objective):
    """The (β-weighted) ELBO, the default objective of `VAEModel`.

    The loss is the batch mean of -(1/K) Σ_k log p(x | z_k) plus each
    latent level's `KLRegularizer` penalty: β · KL, with free bits or a KL
    capacity when the layer sets them. Reparameterised latents get
    pathwise gradients; a relaxed (Gumbel-softmax) latent its relaxation's.

    A level that is not reparameterizable (`CategoricalSample`: hard
    one-hot draws) gets the score-function gradient of the terms that
    depend on its draw, E_q[(f(z) - baseline) ∇ log q(z | x)], with the
    control variates of NVIL (Mnih & Gregor 2014): a running average of
    the learning signal f and a learned input-dependent baseline b(x) (an
    MLP on the model inputs, trained on the squared error of f - c - b(x)
    by the model's optimizer). Its analytic KL keeps its exact gradient. The
    surrogate adds nothing to the loss's value. The baseline's weights
    belong to the model (`VAEModel.objective_layer`): they save and load
    with it and are left out of exported signatures.

    Args:
        num_samples: K, draws of z per example (default 1).
        baseline: control variates of score-function levels: `"learned"`
            (default; NVIL: running average and b(x)), `"running"` (the
            running average only) or `"none"` (plain REINFORCE: no
            baseline, no normalisation).
        baseline_units: hidden units of b(x) (default 100, as NVIL).
        baseline_decay: α of the running averages, in [0, 1) (default
            0.8).
        normalize_signal: with a baseline, divide the level's encoder
            gradient (its score-function term and its KL penalty's
            gradient alike) by s = max(1, running standard deviation of
            the centred signal), as NVIL (default False: a step size
            Adam already adapts; the direction stays unbiased either
            way). Dividing the score-function term alone would multiply
            the level's β by s for the encoder and stall it short of the
            optimum (`keras_vae.objectives.baselines`).

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.ELBO(num_samples=4))
    ```

    References: Kingma & Welling 2013; Higgins et al. 2017 (β);
    Kingma et al. 2016 (free bits); Williams 1992 (REINFORCE); Mnih &
    Gregor 2014 (NVIL).
    """

    def __init__(self, num_samples=1, baseline="learned", baseline_units=100,
                 baseline_decay=0.8, normalize_signal=False):
        super().__init__(num_samples)
        self.baseline = v.check_choice("baseline", baseline, BASELINES)
        self.baseline_units = v.check_positive_int(
            "baseline_units", baseline_units
        )
        self.baseline_decay = v.check_float(
            "baseline_decay", baseline_decay, minimum=0.0
        )
        if self.baseline_decay >= 1.0:
            raise v.invalid("baseline_decay", "a float in [0, 1)",
                            baseline_decay)
        self.normalize_signal = v.check_bool(
            "normalize_signal", normalize_signal
        )

    def build(self, model):
        """The `ScoreFunctionBaseline` of the model's score-function levels
        (None when every level is reparameterized, or `baseline="none"`)."""
        count = sum(not l.sampler.reparameterized for l in model.levels)
        if count == 0 or self.baseline == "none":
            return None
        layer = ScoreFunctionBaseline(
            count, learned=self.baseline == "learned",
            units=self.baseline_units, decay=self.baseline_decay,
            normalize=self.normalize_signal, name="score_function_baseline",
        )
        layer.build([tuple(t.shape) for t in model.inputs])
        return layer

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        loss = (self.batch_mean(trace.reconstruction, sample_weight)
                + self.kl_penalty(trace, sample_weight))
        levels = sf.score_function_levels(trace)
        if levels:
            loss = loss + self._score_function_loss(
                trace, levels, state, sample_weight
            )
        return loss, self.standard_metrics(trace, sample_weight)

    def _score_function_loss(self, trace, levels, controls, sample_weight):
        """The surrogate terms (zero in value) for the levels given."""
        terms = tf.zeros_like(trace.log_px_z[0])
        extra = tf.constant(0.0)
        k = float(trace.num_samples)
        for column, index in enumerate(levels):
            signal = sf.learning_signal(trace, index)
            if controls is None:
                advantage = signal
            else:
                scale = controls.scale(column)  # before v's update
                advantage, baseline_loss = controls.advantage(
                    signal, column, trace.inputs, trace.training
                )
                extra = extra + baseline_loss
                if self.normalize_signal:
                    # The level's KL gradient divided by s as its score
                    # term is: the encoder's direction stays unbiased.
                    extra = extra + sf.rescaled_penalty(
                        trace.levels[index], scale
                    ) * self.mean_weight(sample_weight)
            terms = terms + sf.surrogate(
                advantage, trace.levels[index].log_q
            ) / k
        # Zero in value: the reported loss stays the (β-)ELBO.
        return -self.batch_mean(terms, sample_weight) + (
            extra - tf.stop_gradient(extra)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "baseline": self.baseline,
            "baseline_units": self.baseline_units,
            "baseline_decay": self.baseline_decay,
            "normalize_signal": self.normalize_signal,
        }
