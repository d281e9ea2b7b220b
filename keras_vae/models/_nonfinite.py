"""Non-finite training steps: skipped in the graph, reported by name.

`VAEModel.train_step` counts the steps whose reconstruction term, KL term or
total loss is NaN/inf (in `keras.metrics.Sum` objects that are not logged),
and on a single replica skips their weight update, so the weights stay the
last finite ones. `NonFiniteGuard`, added to every `VAEModel.fit`, reads the
counts once per epoch (no host round trip per step) and stops training with
a `FloatingPointError` that names the term. The loss metric still shows the
NaN, so `keras.callbacks.TerminateOnNaN` stops at the very batch.
"""

import keras

TERMS = ("reconstruction", "kl", "loss")

_ADVICE = {
    "reconstruction": (
        "check that the data lie in the likelihood's support (construct the "
        "loss with validate=True to find out) and that the decoder's output "
        "width matches params_size; if NaN marks missing entries in the "
        "data, compile(missing_values=float('nan'))"
    ),
    "kl": (
        "the posterior scale may have collapsed or exploded: lower the "
        "learning rate, raise GaussianEncoderHead(min_scale=...) or clip "
        "gradients (optimizer clipnorm=...)"
    ),
    "loss": (
        "an extra layer loss (a regulariser added with add_loss) is not "
        "finite"
    ),
}


def make_counters():
    return {t: keras.metrics.Sum(name=f"nonfinite_{t}_steps") for t in TERMS}


class NonFiniteGuard(keras.callbacks.Callback):
    """Raises `FloatingPointError` after an epoch with non-finite steps."""

    def on_train_begin(self, logs=None):
        self._seen = self._counts()

    def _counts(self):
        return {t: int(m.result()) for t, m in self.model._nonfinite.items()}

    def on_epoch_end(self, epoch, logs=None):
        self._check(f"epoch {epoch + 1}")

    def on_train_end(self, logs=None):
        self._check("the last epoch")

    def _check(self, when):
        counts = self._counts()
        new = {t: counts[t] - self._seen[t] for t in TERMS}
        self._seen = counts
        if not any(new.values()):
            return
        # Name the terms; the total alone is only interesting when neither
        # term explains it.
        terms = [t for t in ("reconstruction", "kl") if new[t]] or ["loss"]
        what = ", ".join(f"the {t} term in {new[t]} step(s)" for t in terms)
        skipped = (
            "Their weight updates were skipped: the weights are the last "
            "finite ones."
            if self.model._replicas() == 1
            else "Under a multi-replica strategy the updates were applied."
        )
        self.model.stop_training = True
        raise FloatingPointError(
            f"VAEModel '{self.model.name}': non-finite values in training "
            f"during {when}: {what}. {skipped} Hint: "
            + "; ".join(_ADVICE[t] for t in terms) + "."
        )
