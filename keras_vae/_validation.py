"""Argument checks shared by every public class.

All errors follow one template (the Keras one), so users can grep for it:

    Invalid value received for argument `latent_dim`. Expected a positive
    integer. Received: latent_dim=0
"""

import math
import numbers


def invalid(name, expected, value):
    """Returns the `ValueError` for argument `name` holding `value`."""
    return ValueError(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {name}={value!r}"
    )


def check_positive_int(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value <= 0
    ):
        raise invalid(name, "a positive integer", value)
    return int(value)


def check_float(name, value, *, minimum=None, strict=False, allow_none=False):
    """Checks that `value` is a real number `>= minimum` (`>` if `strict`)."""
    if value is None and allow_none:
        return None
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise invalid(name, f"a float{bound}", value)
    value = float(value)
    if not math.isfinite(value):  # NaN or +-inf
        raise invalid(name, f"a finite float{bound}", value)
    if minimum is not None and (value < minimum or (strict and value == minimum)):
        raise invalid(name, f"a float{bound}", value)
    return value


def check_choice(name, value, choices):
    if value not in choices:
        raise invalid(name, f"one of {sorted(choices, key=str)}", value)
    return value


def check_bool(name, value):
    if not isinstance(value, bool):
        raise invalid(name, "a bool", value)
    return value


def check_seed(name, value):
    """An int or None, as `keras.random.SeedGenerator` takes."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, numbers.Integral)
    ):
        raise invalid(name, "an int or None", value)
    return value
