"""Shared by the one-hot latent layers (`GumbelSoftmaxSample`,
`CategoricalSample`): the logits' shape rules and the Gumbel-max draw.

```none
u ~ U(0, 1)^(N x C),   g = -log(-log u)
one_hot(argmax(logits + g)) ~ prod_n OneHotCategorical(softmax(logits_n))   (exact)
```
"""

import tensorflow as tf

from keras_vae.random import uniform


def first_shape(input_shape):
    """The logits' shape from `build`'s argument: a shape or `[shape]`."""
    if (
        isinstance(input_shape, (list, tuple))
        and len(input_shape) > 0
        and isinstance(input_shape[0], (list, tuple, tf.TensorShape))
    ):
        return tuple(input_shape[0])
    return tuple(input_shape)


def check_logits_shape(shape, who):
    """Raises unless `shape` is `(batch, N, C)` with a known C >= 2."""
    if len(shape) != 3 or shape[-1] is None or shape[-1] < 2:
        raise ValueError(
            f"{who} expects logits of shape (batch, N, C) with a known "
            f"number of classes C >= 2. Received: shape={tuple(shape)}"
        )


def logits_input(layer, inputs):
    """The logits a one-hot layer's `call` received (one tensor, shape
    checked), or a clear error naming the layer."""
    params, context = layer.split_inputs(inputs)
    who = type(layer).__name__
    if context:
        raise ValueError(
            f"{who} takes one tensor, the logits. Received "
            f"{len(params) + len(context)} tensors."
        )
    check_logits_shape(tuple(params[0].shape), who)  # also once built
    return params[0]


def fold_shape(logits):
    """(-1, N, C), static where known, for z of K * B rows."""
    dynamic = tf.shape(logits)
    return [-1] + [
        d if d is not None else dynamic[i + 1]
        for i, d in enumerate(logits.shape[1:])
    ]


def one_hot_argmax(x):
    """One-hot of the argmax over the last axis, float32."""
    depth = x.shape[-1] if x.shape[-1] is not None else tf.shape(x)[-1]
    return tf.one_hot(tf.argmax(x, axis=-1), depth, dtype=tf.float32)


def gumbel_perturbed(logits, num_samples, seed_generator, seed=None):
    """logits + Gumbel noise, shape `(num_samples, B, N, C)`, float32.

    With `seed` (an int tensor of shape (2,)) a fixed function of it;
    otherwise drawn from `seed_generator`'s stream.
    """
    logits = tf.cast(logits, tf.float32)
    shape = tf.concat([[num_samples], tf.shape(logits)], axis=0)
    u = uniform(shape, seed_generator, seed=seed)
    return logits - tf.math.log(-tf.math.log(u))
