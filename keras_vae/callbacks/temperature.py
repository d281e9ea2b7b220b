"""Annealing of the Gumbel-softmax temperature."""

import math

from keras_vae import _validation as v
from keras_vae.callbacks._schedule import VariableSchedule
from keras_vae.layers.gumbel_softmax_sample import GumbelSoftmaxSample


class TemperatureAnnealing(VariableSchedule):
    """Lowers the Gumbel-softmax temperature τ exponentially to a floor.

    ```none
    τ(t) = max(end, start * exp(-rate * t)),   rate = log(start / end) / steps
    ```

    so τ reaches `end` after `steps` optimizer steps (Jang et al. 2016
    anneal τ = max(0.5, exp(-r t)) from 1). A high τ early gives low-variance
    gradients; a low τ late makes the relaxed samples close to the discrete
    ones the model is evaluated with. Drives `temperature_variable` of every
    `GumbelSoftmaxSample` in the model.

    Args:
        steps: positive int, optimizer steps to reach `end`.
        start: τ at step 0 (default 1.0).
        end: the floor (default 0.5); 0 < end <= start.

    Example:

    ```python
    vae.fit(ds, epochs=50,
            callbacks=[keras_vae.callbacks.TemperatureAnnealing(10_000)])
    ```
    """

    layer_class = GumbelSoftmaxSample
    attribute = "temperature_variable"

    def __init__(self, steps, start=1.0, end=0.5):
        super().__init__(steps)
        self.start = v.check_float("start", start, minimum=0.0, strict=True)
        self.end = v.check_float("end", end, minimum=0.0, strict=True)
        if self.end > self.start:
            raise ValueError(
                "TemperatureAnnealing lowers the temperature: `end` must be "
                f"<= `start`. Received: start={start}, end={end}"
            )

    def value(self, step):
        rate = math.log(self.start / self.end) / self.steps
        return max(self.end, self.start * math.exp(-rate * step))
