"""Checks of the arrays and options the disentanglement metrics share, and
the lazy scikit-learn import.

Errors follow the package's template (`keras_vae._validation`): they name
the argument, what was expected, and what was received (a shape, a column,
the first bad entry).
"""

import importlib
import numbers

import numpy as np

from keras_vae import _validation as v

INSTALL_HINT = 'pip install "keras_vae[disentanglement]"'


def sklearn(metric, submodule):
    """Imports `sklearn.<submodule>` for `metric`, or says how to install it.

    scikit-learn is not a dependency of keras_vae; the metrics import it
    only when they are called.
    """
    try:
        return importlib.import_module(f"sklearn.{submodule}")
    except ImportError as error:
        raise ImportError(
            f"keras_vae.disentanglement.{metric} needs scikit-learn, which "
            f"is not installed: {INSTALL_HINT}"
        ) from error


def invalid_array(name, expected, received):
    """The template error for an array argument; `received` is a phrase
    (`"codes.shape=(3, 4)"`, ...)."""
    return ValueError(
        f"Invalid value received for argument `{name}`. Expected {expected}. "
        f"Received: {received}"
    )


def _shape(name, array):
    return f"{name}.shape={tuple(np.shape(array))}"


def as_matrix(name, value, what):
    """`value` as a finite float64 `(N, K)` array with N >= 1 and K >= 1.

    `what` names the columns in the message (`"num_codes"`).
    """
    expected = f"a 2-D array (N, {what}) of finite numbers"
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - any object numpy cannot read
        raise invalid_array(name, expected, type(value).__name__) from None
    if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise invalid_array(name, expected,
                            f"{name} of dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise invalid_array(name, expected, _shape(name, array))
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise invalid_array(
            name, expected + " (no NaN or inf)",
            f"{name} with {int(bad.sum())} non-finite entries, the first "
            f"{name}[{row}, {col}]={array[row, col].item()!r}")
    return array


def as_discrete(name, factors, metric):
    """Integer-valued factors as int64; each column must take >= 2 values.

    Floats are accepted when they hold whole numbers (`2.0`).
    """
    whole = np.round(factors)
    bad = factors != whole
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise invalid_array(
            name,
            f"discrete factors (integer labels; {metric} needs discrete "
            "factors, bin continuous ones first)",
            f"{name}[:, {col}] with non-integer values, the first "
            f"{name}[{row}, {col}]={factors[row, col].item()!r}")
    return whole.astype(np.int64)


def check_varies(name, factors):
    """Each factor column takes at least two values (a constant factor has
    zero entropy and nothing to predict)."""
    constant = [j for j in range(factors.shape[1])
                if np.all(factors[:, j] == factors[0, j])]
    if constant:
        raise invalid_array(
            name, "factors that each take at least two values",
            f"constant {name}[:, {constant[0]}] (all "
            f"{factors[0, constant[0]].item()!r}); constant columns: "
            f"{constant}")


def codes_and_factors(codes, factors, metric, *, discrete=True,
                      min_examples=2, min_codes=2, min_factors=1,
                      codes_name="codes", factors_name="factors"):
    """Checks a `(codes, factors)` pair; returns float64 codes and factors
    (int64 if `discrete`)."""
    codes = as_matrix(codes_name, codes, "num_codes")
    factors = as_matrix(factors_name, factors, "num_factors")
    if len(factors) != len(codes):
        raise invalid_array(
            factors_name,
            f"as many rows as `{codes_name}` (N={len(codes)})",
            _shape(factors_name, factors))
    if len(codes) < min_examples:
        raise invalid_array(
            codes_name, f"at least {min_examples} examples for {metric}",
            _shape(codes_name, codes))
    if codes.shape[1] < min_codes:
        raise invalid_array(
            codes_name,
            f"at least {min_codes} code dimensions for {metric} (it "
            "compares the best code of a factor with the runner-up)",
            _shape(codes_name, codes))
    if factors.shape[1] < min_factors:
        raise invalid_array(
            factors_name, f"at least {min_factors} factors for {metric}",
            _shape(factors_name, factors))
    if discrete:
        factors = as_discrete(factors_name, factors, metric)
    return codes, factors


def train_test(codes, factors, codes_test, factors_test, test_size, seed,
               metric, discrete=True):
    """The train and test sets: the given test arrays, or a random split of
    `(codes, factors)` with `round(test_size * N)` test examples."""
    if (codes_test is None) != (factors_test is None):
        missing = "codes_test" if codes_test is None else "factors_test"
        raise v.invalid(missing, "an array together with "
                        "`codes_test` and `factors_test` (pass both or "
                        "neither)", None)
    if codes_test is None:
        test_size = v.check_float("test_size", test_size, minimum=0.0,
                                  strict=True)
        if test_size >= 1.0:
            raise v.invalid("test_size", "a float in (0, 1)", test_size)
        seed = v.check_seed("seed", seed)
        codes, factors = codes_and_factors(codes, factors, metric,
                                           discrete=discrete)
        check_varies("factors", factors)
        n = len(codes)
        num_test = int(round(test_size * n))
        if num_test < 1 or n - num_test < 2:
            raise invalid_array(
                "codes",
                f"enough examples for a test split of test_size={test_size}"
                " (at least 1 test and 2 training examples)",
                _shape("codes", codes))
        order = np.random.default_rng(seed).permutation(n)
        test, train = order[:num_test], order[num_test:]
        return codes[train], factors[train], codes[test], factors[test]
    codes, factors = codes_and_factors(codes, factors, metric,
                                       discrete=discrete)
    check_varies("factors", factors)
    codes_test, factors_test = codes_and_factors(
        codes_test, factors_test, metric, discrete=discrete, min_examples=1,
        codes_name="codes_test", factors_name="factors_test")
    for name, train, test in (("codes_test", codes, codes_test),
                              ("factors_test", factors, factors_test)):
        if test.shape[1] != train.shape[1]:
            other = name.replace("_test", "")
            raise invalid_array(
                name, f"as many columns as `{other}` ({train.shape[1]})",
                _shape(name, test))
    return codes, factors, codes_test, factors_test


def check_int(name, value, minimum):
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral)
            or value < minimum):
        raise v.invalid(name, f"an integer >= {minimum}", value)
    return int(value)
