"""The machinery shared by the schedules: a value per optimizer step,
assigned to a variable of every layer of one class in the model."""

import keras

from keras_vae import _validation as v
from keras_vae.callbacks.backup_and_restore import replayed_batches


class VariableSchedule(keras.callbacks.Callback):
    """Assigns `value(step)` to `layer.<attribute>` before every batch.

    The variable is read by the (XLA-compiled) train step, so the change
    takes effect after `compile` without retracing. `step` is the
    optimizer's step count, so a schedule continues where it was across
    `fit` calls and after `BackupAndRestore` / `StepBackupAndRestore`
    (whose no-op replays of a resumed epoch's first batches it skips);
    after `steps` it stays at `value(steps)`.
    """

    layer_class = None
    attribute = None

    def __init__(self, steps):
        super().__init__()
        self.steps = v.check_positive_int("steps", steps)

    def value(self, step):
        raise TypeError(f"{type(self).__name__} must define `value(step)`.")

    def on_train_begin(self, logs=None):
        layers = [
            layer for layer in self.model._flatten_layers()
            if isinstance(layer, self.layer_class)
            and getattr(layer, self.attribute, None) is not None
        ]
        if not layers:
            raise ValueError(
                f"Model '{self.model.name}' has no "
                f"{self.layer_class.__name__} with `{self.attribute}` for "
                f"{type(self).__name__} to drive."
            )
        self._variables = [getattr(layer, self.attribute) for layer in layers]
        # Read at the first batch: after every callback's on_train_begin,
        # so after a StepBackupAndRestore has restored the optimizer.
        self._step = None

    def on_train_batch_begin(self, batch, logs=None):
        if batch < replayed_batches(self.model):
            return  # a resumed run's no-op call of a batch done before
        if self._step is None:
            self._step = int(self.model.optimizer.iterations)
        if self._step <= self.steps:  # constant afterwards
            value = self.value(self._step)
            for variable in self._variables:
                variable.assign(value)
        self._step += 1
