"""The importance-weighted bound (IWAE) and importance-sampled log p(x).

```none
log w_k   = log p(x | z_k) + log p(z_k) - log q(z_k | x),   z_k ~ q(z | x)
IWAE_K(x) = log (1/K) sum_k w_k        (logsumexp, no overflow)
ELBO = IWAE_1 <= IWAE_K <= IWAE_{K+1} <= log p(x);  IWAE_K -> log p(x), K -> inf
```

With large K the same quantity is the importance-sampled estimate of
log p(x) used for evaluation (`VAEModel.log_likelihood`), computed over
chunks of samples by `keras_vae.objectives.chunked_logmeanexp`.

Gradients of the bound:

```none
standard  the pathwise gradient of IWAE_K (reparameterized levels), with
          VIMCO's leave-one-out score-function term for levels that are not
          reparameterizable (keras_vae.objectives.score_function)
dreg      doubly reparameterized (Tucker et al. 2018): the encoder's
          gradient Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ with log q evaluated at
          stopped parameters, w̃ = softmax(log w); the decoder's unchanged
```

References: Burda, Grosse & Salakhutdinov, "Importance Weighted
Autoencoders", 2015; Rezende et al. 2014 (importance-sampled log p(x));
Mnih & Rezende, "Variational Inference for Monte Carlo Objectives", 2016
(VIMCO); Tucker, Lawson, Gu & Maddison, "Doubly Reparameterized Gradient
Estimators for Monte Carlo Objectives", 2018 (DReG); Rainforth et al.,
"Tighter Variational Bounds are Not Necessarily Better", 2018.
"""

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.objectives import score_function as sf
from keras_vae.objectives.base import Objective

GRADIENTS = ("standard", "dreg")


def iwae(log_w):
    """IWAE_K per example from log weights of shape (K, B): shape (B,)."""
    k = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    return tf.reduce_logsumexp(log_w, axis=0) - tf.math.log(k)


@keras.saving.register_keras_serializable(package="keras_vae")
class IWAE(Objective):
    """The importance-weighted bound IWAE_K as the training objective.

    ```none
    loss = -mean_b log (1/K) sum_k p(x_b | z_k) [p(z_k) / q(z_k | x_b)]^β
    ```

    β is each level's `KLRegularizer` weight (1 gives the bound; KL
    warm-up anneals it). The bound needs the density q(z | x) of every
    training draw, so `compile` refuses relaxed (Gumbel-softmax) latents;
    and it weighs log p(z) - log q(z) per sample, so it refuses free bits
    and a KL capacity.

    Levels that are not reparameterizable (`CategoricalSample`) get
    VIMCO's score-function gradient (needs K >= 2): each draw's learning
    signal is the bound minus the bound with that draw's log weight
    replaced by the mean of the others'. The reported loss is the bound.

    `gradient="dreg"` (doubly reparameterized, Tucker et al. 2018) keeps
    the decoder's gradient and replaces the encoder's by
    Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ: unbiased for the same gradient, with
    a signal-to-noise ratio that does not fall as K grows (Rainforth et
    al. 2018). It needs every level reparameterized, with the density of
    `posterior(params)` (not a flow) and a posterior reading only the
    model inputs (not another level's z); `compile` refuses the others.

    Args:
        num_samples: K (default 5).
        gradient: `"standard"` (default; pathwise, VIMCO for levels that
            are not reparameterizable) or `"dreg"`.

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.IWAE(num_samples=5))
    ```

    References: Burda, Grosse & Salakhutdinov 2015.
    """

    def __init__(self, num_samples=5, gradient="standard"):
        super().__init__(num_samples)
        self.gradient = v.check_choice("gradient", gradient, GRADIENTS)

    @property
    def gradient_taps(self):
        """DReG rescales the gradient reaching the encoder through z."""
        return self.gradient == "dreg"

    def check(self, model):
        quantized = [l.name for l in model.levels
                     if l.sampler.family == "quantized"]
        if quantized and len(quantized) == len(model.levels):
            raise ValueError(
                "objective='iwae' weighs K distinct draws of z; the latents "
                f"{quantized} are vector-quantised (deterministic: every "
                "draw is the nearest code), so the bound would equal the "
                "ELBO at K times the cost. Use objective='elbo'. "
                f"Received: objective={self!r}"
            )
        if quantized and self.gradient == "dreg":
            raise ValueError(
                "gradient='dreg' differentiates log q(z | x) through z; the "
                f"vector-quantised latents {quantized} have a deterministic "
                "one-hot posterior with no such density. Use "
                f"gradient='standard'. Received: objective={self!r}"
            )
        shaped = [l.kl.name for l in model.levels
                  if l.kl.free_bits > 0 or l.kl.capacity is not None]
        if shaped:
            raise ValueError(
                "objective='iwae' weighs log p(z) - log q(z) per sample and "
                "has no place for free bits or a KL capacity, which "
                f"KLRegularizer layers {shaped} set. Use objective='elbo'. "
                f"Received: objective={self!r}"
            )
        relaxed = [l.name for l in model.levels if l.sampler.relaxed]
        if relaxed:
            raise ValueError(
                "objective='iwae' needs the density q(z | x) of every "
                "training draw; the relaxed (Gumbel-softmax) samples of "
                f"{relaxed} have none in the discrete model. Use "
                f"objective='elbo'. Received: objective={self!r}"
            )
        discrete = [l.name for l in model.levels
                    if not l.sampler.reparameterized]
        if discrete and self.gradient == "dreg":
            raise ValueError(
                "gradient='dreg' differentiates log w through z, which the "
                f"levels {discrete} (not reparameterizable) do not allow. "
                "Use gradient='standard' (VIMCO for those levels). "
                f"Received: objective={self!r}"
            )
        if discrete and self.num_samples < 2:
            raise ValueError(
                f"VIMCO (the IWAE gradient of the levels {discrete}, not "
                "reparameterizable) needs num_samples >= 2 for its "
                "leave-one-out baselines. Received: "
                f"num_samples={self.num_samples}"
            )
        if self.gradient == "dreg":
            flows = [l.name for l in model.levels if l.sampler.sampled_kl]
            nested = [l.name for l in model.levels if l.z_deps]
            if flows or nested:
                raise ValueError(
                    "gradient='dreg' evaluates log q(z | x) at stopped "
                    "posterior parameters, which needs each level's density "
                    "to be that of its parameters (not a flow: "
                    f"{flows}) and parameters that read only the model "
                    f"inputs (not another level's z: {nested}). Use "
                    f"gradient='standard'. Received: objective={self!r}"
                )

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        metrics = self.standard_metrics(trace, sample_weight)
        if self.gradient == "dreg":
            return self._dreg_loss(trace, sample_weight), metrics
        return self._standard_loss(trace, sample_weight), metrics

    def _standard_loss(self, trace, sample_weight):
        log_w = trace.log_weights(weighted=True)
        loss = -self.batch_mean(iwae(log_w), sample_weight)
        levels = sf.score_function_levels(trace)
        if levels:  # VIMCO: zero in value
            advantage = sf.vimco_advantages(log_w)
            terms = tf.add_n([
                sf.surrogate(advantage, trace.levels[i].log_q)
                for i in levels
            ])
            loss = loss - self.batch_mean(terms, sample_weight)
        return loss

    def _dreg_loss(self, trace, sample_weight):
        """-IWAE_K with log q at stopped parameters, and each z's
        gradient scaled by w̃ (so the path through z carries w̃²)."""
        log_w = trace.log_px_z
        for index, level in enumerate(trace.levels):
            stopped = [tf.stop_gradient(p) for p in level.params]
            log_q = level.sampler.posterior(stopped).log_prob(
                trace.unfolded_z(index)
            )
            log_w = log_w + level.kl_weight * (level.log_p - log_q)
        weights = tf.stop_gradient(tf.nn.softmax(log_w, axis=0))
        for level in trace.levels:
            level.z_tap.scale_gradient(weights)
        return -self.batch_mean(iwae(log_w), sample_weight)

    def get_config(self):
        return {**super().get_config(), "gradient": self.gradient}
