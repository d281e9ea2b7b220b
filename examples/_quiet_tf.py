"""Imports TensorFlow without its C++ start-up lines, for the examples.

TF 2.21 prints absl log lines at import and at the first device probe
("oneDNN custom operations are on", "Could not find cuda drivers",
"failed call to cuInit") even with `TF_CPP_MIN_LOG_LEVEL=2`, because they
come before absl's logging is initialised. The examples print what a person
needs and nothing else, so they import TensorFlow through this, which
points the process's stderr (file descriptor 2) at /dev/null for the
import and the device probe only; Python errors raised there still show
(the traceback is printed after stderr is restored). Set
`KERAS_VAE_TF_LOGS=1` to see the lines.
"""

import os
import sys


def import_tensorflow_quietly():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if os.environ.get("KERAS_VAE_TF_LOGS"):
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()  # the CUDA probe logs here
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
