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


class OptionalScaleParams:
    """Mixin of the location-scale likelihoods (`GaussianNLL`,
    `LaplaceNLL`): the decoder emits the location, and the scale too
    when `self.learned_scale` (two parameters per element)."""

    @property
    def params_per_element(self):
        return 2 if self.learned_scale else 1

    @class_or_instance_method
    def params_size(owner, event_shape, learned_scale=None):
        """Number of parameters the decoder must emit for one example.

        Args:
            event_shape: shape of one data example (without batch axis), or
                of one position's channels, e.g. `(784,)` or `(3,)`.
            learned_scale: whether the scale is learned (2 parameters per
                element) or fixed (1). Defaults to False on the class, and
                to the loss's own setting when called on an instance.
        """
        if learned_scale is None:
            learned_scale = not isinstance(owner, type) and (
                owner.learned_scale)
        return (2 if learned_scale else 1) * num_elements(event_shape)
