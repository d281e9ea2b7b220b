import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA's LLVM backend at optimisation level 0 in the tests (before TensorFlow
# is imported; subprocesses the tests start inherit it): the tests' models
# are tiny, so compiling, not running, is what costs, and level 0 compiles
# the same HLO programs (the same ops, the same numbers up to float
# rounding) about a fifth faster for the whole suite on 2 cores. Users,
# examples and benchmarks run at XLA's default. Set XLA_FLAGS yourself to
# test at another level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "")
        + " --xla_backend_optimization_level=0"
    ).strip()

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with float32 policy and fresh global names/seeds."""
    keras.mixed_precision.set_global_policy("float32")
    # free_memory=False skips a gc.collect() that costs ~0.3 s per test.
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")
