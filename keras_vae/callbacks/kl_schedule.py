"""Schedules of the KL term: warm-up of β, annealing of the capacity C."""

from keras_vae import _validation as v
from keras_vae.callbacks._schedule import VariableSchedule
from keras_vae.layers.kl_regularizer import KLRegularizer


class _LinearSchedule(VariableSchedule):
    """`start + (end - start) * min(step / steps, 1)` into a variable of
    every `KLRegularizer`."""

    layer_class = KLRegularizer

    def __init__(self, steps, start, end):
        super().__init__(steps)
        self.start = v.check_float("start", start, minimum=0.0)
        self.end = v.check_float("end", end, minimum=0.0)

    def value(self, step):
        frac = min(float(step) / self.steps, 1.0)
        return self.start + (self.end - self.start) * frac


class KLWarmUp(_LinearSchedule):
    """Anneals the KL weight β linearly from `start` to `end` over `steps`.

    ```none
    β(t) = start + (end - start) * min(t / steps, 1),   t = optimizer step
    ```

    KL warm-up (Bowman et al. 2016; Sønderby et al. 2016) lets the decoder
    learn before the KL pulls the posterior to the prior, which avoids
    inactive latent units early in training. Drives `kl_weight` of every
    `KLRegularizer` in the model.

    Args:
        steps: positive int, optimizer steps of the ramp.
        start: β at step 0 (default 0).
        end: β after `steps` (default 1, the ELBO).

    Example:

    ```python
    vae.fit(ds, epochs=20, callbacks=[keras_vae.callbacks.KLWarmUp(5000)])
    ```
    """

    attribute = "kl_weight"

    def __init__(self, steps, start=0.0, end=1.0):
        super().__init__(steps, start, end)


class CapacityAnnealing(_LinearSchedule):
    """Raises the KL capacity C linearly from `start` to `end` nats.

    ```none
    penalty = γ | KL - C(t) |,   C(t) = start + (end - start) * min(t / steps, 1)
    ```

    Needs `KLRegularizer(capacity=..., weight=γ)` (Burgess et al. 2018,
    "Understanding disentangling in β-VAE").

    Args:
        steps: positive int, optimizer steps of the ramp.
        end: capacity in nats after `steps`.
        start: capacity at step 0 (default 0).
    """

    attribute = "kl_capacity"

    def __init__(self, steps, end, start=0.0):
        super().__init__(steps, start, end)
