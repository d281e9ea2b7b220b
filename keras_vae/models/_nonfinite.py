"""Non-finite training steps: skipped in the graph, reported by name.

`VAEModel.train_step` counts the steps whose reconstruction term, KL term or
total loss is NaN/inf (in `keras.metrics.Sum` objects that are not logged),
and on a single replica skips their weight update, so the weights stay the
last finite ones. `NonFiniteGuard`, added to every `VAEModel.fit`, reads the
counts once per epoch (no host round trip per step) and stops training with
a `FloatingPointError` that names the term. The loss metric still shows the
NaN, so `keras.callbacks.TerminateOnNaN` stops at the very batch.

How the update is skipped (`apply_unless_not_finite`): Keras' built-in
optimizers write every weight and slot through their public `assign`,
`assign_add` and `assign_sub` methods. While they apply a step, those
writes are masked (an increment becomes 0, an assignment keeps the old
value where the loss is not finite), which XLA fuses into the update
itself. Only the step counter is copied and selected back. Any other
optimizer (a subclass, weight decay, EMA, gradient accumulation) or weight
(a constraint, `overwrite_with_gradient`) writes outside those methods, so
its weights and slots are copied before the step and selected back after
it: the same guarantee at the price of a copy and a select of each
(about 15 % of an MLP's step at batch 128, benchmarks/step_parity.py).
`tf.cond` around the update would avoid both, but it made XLA on CPU run
a conv VAE's step 10-20x slower.
"""

import contextlib

import keras
import tensorflow as tf

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


# Keras optimizers whose step writes every weight and slot through the
# optimizer's assign / assign_add / assign_sub (exact types: a subclass may
# write differently).
_MASKABLE = tuple(
    getattr(keras.optimizers, name) for name in (
        "SGD", "Adam", "Adamax", "Nadam", "RMSprop", "Adagrad", "Adadelta",
        "Lion", "Ftrl", "Lamb", "Adafactor")
    if hasattr(keras.optimizers, name)
)


def _maskable(optimizer, weights):
    """Whether every write of `optimizer.apply_gradients(weights)` except the
    step counter goes through the optimizer's assign methods."""
    return (
        type(optimizer) in _MASKABLE
        and optimizer.weight_decay is None
        and not optimizer.use_ema
        and not optimizer.gradient_accumulation_steps
        and not any(w.constraint is not None
                    or getattr(w, "overwrite_with_gradient", False)
                    for w in weights)
    )


@contextlib.contextmanager
def _masked_writes(optimizer, finite):
    """Within the block, `optimizer`'s assign methods write nothing where
    `finite` is False (an instance attribute shadows each method)."""
    cls = type(optimizer)

    def keep(new, old):
        if isinstance(new, tf.IndexedSlices):
            old = tf.gather(tf.convert_to_tensor(old), new.indices)
            return tf.IndexedSlices(tf.where(finite, new.values, old),
                                    new.indices, new.dense_shape)
        return tf.where(finite, new, tf.cast(old, new.dtype))

    def zero(delta):
        if isinstance(delta, tf.IndexedSlices):
            return tf.IndexedSlices(keep(delta.values, 0.0), delta.indices,
                                    delta.dense_shape)
        return keep(delta, tf.zeros_like(delta))

    def tensor(value):  # sparse gradients' updates stay sparse
        if isinstance(value, tf.IndexedSlices):
            return value
        return tf.convert_to_tensor(value)

    masked = {
        "assign": lambda v, value: cls.assign(
            optimizer, v, keep(tensor(value), v)),
        "assign_add": lambda v, value: cls.assign_add(
            optimizer, v, zero(tensor(value))),
        "assign_sub": lambda v, value: cls.assign_sub(
            optimizer, v, zero(tensor(value))),
    }
    for name, fn in masked.items():
        object.__setattr__(optimizer, name, fn)
    try:
        yield
    finally:
        for name in masked:
            object.__delattr__(optimizer, name)


def apply_unless_not_finite(groups, finite):
    """Applies `[(optimizer, grads, weights)]` where `finite` (a scalar bool
    tensor) is True; where it is False the weights and every optimizer's
    variables (its slots and step counter) keep their values."""
    copied = []
    with contextlib.ExitStack() as stack:
        for optimizer, _, weights in groups:
            if _maskable(optimizer, weights):
                stack.enter_context(_masked_writes(optimizer, finite))
                copied.append(optimizer.iterations)
            else:
                copied += list(weights) + list(optimizer.variables)
        before = [tf.identity(v) for v in copied]
        for optimizer, grads, weights in groups:
            optimizer.apply_gradients(zip(grads, weights))
    for var, old in zip(copied, before):
        var.assign(tf.where(finite, var, old))
