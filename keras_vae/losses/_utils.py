"""Private helpers shared by losses whose parameter count depends on args."""

import functools
import types

import tensorflow as tf


class class_or_instance_method:
    """Like `classmethod`, but binds to the instance when called on one.

    Used for `params_size` of losses whose parameters per element depend on
    constructor arguments: `GaussianNLL.params_size((784,),
    learned_scale=True)` asks the class, while `loss.params_size((784,))`
    answers for that instance's own configuration.
    """

    def __init__(self, func):
        self.__func__ = func
        functools.update_wrapper(self, func)

    def __get__(self, instance, owner=None):
        return types.MethodType(
            self.__func__, owner if instance is None else instance
        )


def num_elements(event_shape):
    """Number of data elements in `event_shape` (an int or a shape)."""
    if isinstance(event_shape, int):
        event_shape = (event_shape,)
    size = 1
    for d in event_shape:
        size *= int(d)
    return size


def split_components(params, k):
    """Reshapes the last axis `(..., C * k)` into `(..., C, k)`.

    The `k` parameters of one data element are contiguous on the last axis
    (channel-major layout).
    """
    c = params.shape[-1] // k
    dims = [
        d if d is not None else tf.shape(params)[i]
        for i, d in enumerate(params.shape[:-1])
    ]
    return tf.reshape(params, dims + [c, k])
