"""An HTTP server for an exported keras_vae SavedModel, in TF Serving's REST shape.

`vae.export_serving(path)` writes a SavedModel with the signatures
`serving_default`, `encode`, `decode`, `sample`, `log_likelihood` (and
`impute` for a model compiled with `missing_values`). This script serves it
with TensorFlow, NumPy and the standard library only: it blocks
`import keras_vae` when run as a script, so the served model cannot quietly
depend on the package. TF Serving's binary is not needed; the requests and
responses have its REST API's shape, so a client written for one works with
the other:

```none
GET  /v1/models/<name>                      status: {"model_version_status": [...]}
GET  /v1/models/<name>/metadata             signatures, their inputs and outputs
POST /v1/models/<name>:predict              (also /v1/models/<name>/versions/1:predict)
     row form:      {"signature_name": "log_likelihood", "instances": [row, row, ...]}
                    -> {"predictions": [out, out, ...]}     (one output)
                    -> {"predictions": [{name: out}, ...]}  (several outputs)
     columnar form: {"signature_name": "sample", "inputs": {"num_samples": 4, "seed": 7}}
                    -> {"outputs": value}  or  {"outputs": {name: value, ...}}
errors: 4xx (5xx for the server's own failures) with {"error": "<message>"}
```

A row of the row form is the input's value for one example (`[0, 1, ...]`
for the one input `x`), or an object `{"x": ..., "input_1": ...}` for a
signature with several inputs. `signature_name` defaults to
`serving_default`. Scalar inputs (`sample`'s `num_samples` and `seed`) need
the columnar form.

Every request is checked against the signature's input specs before the
model runs; what fails gets a 4xx and a message that names the input and
what was received, and the server keeps answering:

| check | status |
| --- | --- |
| malformed JSON, not an object, unknown keys, both or neither of `instances` / `inputs` | 400 |
| unknown signature; missing or unknown input names | 400 |
| wrong rank or shape; ragged nested lists; rows of several inputs that differ in number | 400 |
| wrong kind of value (strings, booleans, null, objects, non-integers for an int32 input, out of int32 / float32 range) | 400 |
| NaN or +-inf (NaN policy below) | 400 |
| more than `--max-batch` rows (also `sample`'s `num_samples`), or none | 400 |
| body larger than `--max-body-bytes` | 413 |
| no `Content-Length` (chunked bodies are not read) | 411 |
| unknown path / model name / version | 404; wrong method 405 |
| every model slot busy for `--queue-timeout` s | 503 |

NaN: a model compiled without `missing_values` treats a NaN as a number,
and its outputs come back NaN, so NaN is refused unless the SavedModel has
an `impute` signature (the mark of a model compiled with `missing_values`).
Then (`--allow-nan auto`, the default) NaN is accepted in the float inputs
of `serving_default`, `encode`, `log_likelihood` and `impute`, the
signatures whose inputs the model fills, and never in `decode` or `sample`,
whose latents and conditions it does not. `auto` assumes NaN is the marker
(`compile(missing_values=float("nan"))`, the package's usual choice); pass
`--allow-nan no` for a model that marks missing entries with a number, or
`yes` to accept NaN in those signatures whatever the model. +-inf is
always refused.

Concurrency: `ThreadingHTTPServer` answers each connection in a thread
(keep-alive, HTTP/1.1); at most `--max-connections` connections are open
(a new one waits up to `CONNECTION_WAIT_S` for a slot, then gets 503), at
most `--max-inflight` model calls run at once (TF's concrete functions are
thread-safe; the bound keeps the memory of concurrent batches flat; the
others wait up to `--queue-timeout` s), an idle connection is closed after
`--idle-timeout` s, and no request body over `--max-body-bytes` is read.
Each signature is called once on zeros at start (`--no-warmup` to skip),
so the first request does not pay for the function's first run. glibc's
malloc arenas are capped at `--malloc-arenas` (2): with one arena per
concurrently allocating thread the RSS kept growing for a while under 16
clients, about 35 MiB higher than with 2 (`limit_malloc_arenas`).

Run from the repository root (port 0 = a free port; the "ready" JSON line
on stdout gives the one chosen):

    python examples/serve_http.py outputs/mnist_vae/saved_model --port 8501
    curl localhost:8501/v1/models/vae
    curl -d '{"signature_name": "sample", "inputs": {"num_samples": 2, "seed": 1}}' \\
        localhost:8501/v1/models/vae:predict

`benchmarks/serving_load.py` measures it under concurrent clients.
"""

import argparse
import json
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

DEFAULT_NAME = "vae"
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BODY_BYTES = 16 * 2**20
DEFAULT_MAX_INFLIGHT = max(1, os.cpu_count() or 1)
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_QUEUE_TIMEOUT_S = 30.0
DEFAULT_IDLE_TIMEOUT_S = 30.0
CONNECTION_WAIT_S = 2.0   # a new connection waits this long for a free slot
# A body over --max-body-bytes is read and dropped (in chunks, never held)
# up to this size, so the client, still sending, gets the 413 rather than a
# reset connection; a larger one is not read and the connection is closed.
DRAIN_LIMIT_BYTES = 64 * 2**20
DRAIN_CHUNK_BYTES = 2**16
DEFAULT_MALLOC_ARENAS = 2
_M_ARENA_MAX = -8         # glibc's mallopt parameter number (malloc.h)
_MALLOC_ARENAS = None     # the cap limit_malloc_arenas set, if any
MODEL_VERSION = "1"       # the one version served (TF Serving's numbering)
# Signatures whose inputs the model fills where they are missing.
FILLED_SIGNATURES = ("serving_default", "encode", "log_likelihood", "impute")
MAX_SHOWN = 60            # characters of a received value quoted in errors

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+))?"
    r"(?::(?P<verb>[A-Za-z]+)|/(?P<resource>metadata))?/?$"
)
_TF_DTYPE_NAMES = {  # TF Serving's metadata names
    "float16": "DT_HALF", "float32": "DT_FLOAT", "float64": "DT_DOUBLE",
    "int32": "DT_INT32", "int64": "DT_INT64", "bool": "DT_BOOL",
}
_JSON_TYPES = {int: "integers", float: "floats", bool: "booleans",
               str: "strings", type(None): "null", dict: "objects",
               list: "lists"}


class RequestError(Exception):
    """A request the server refuses: HTTP `status` and a message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def _shown(value, depth=0):
    """A short JSON-like text of a received value (the first few items)."""
    if isinstance(value, list) and depth < 3:
        items = [_shown(v, depth + 1) for v in value[:3]]
        text = "[" + ", ".join(items + ["..."] * (len(value) > 3)) + "]"
    elif isinstance(value, dict) and depth < 3:
        items = [f"{json.dumps(str(k))}: {_shown(v, depth + 1)}"
                 for k, v in list(value.items())[:3]]
        text = "{" + ", ".join(items + ["..."] * (len(value) > 3)) + "}"
    elif isinstance(value, (list, dict)):
        text = "[...]" if isinstance(value, list) else "{...}"
    else:
        try:
            text = json.dumps(value)
        except (TypeError, ValueError):
            text = repr(value)
    if depth == 0 and len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "..."
    return text


def _shape_text(shape, batch="batch"):
    dims = [batch if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


# ------------------------------------------------------------ signatures
class InputSpec:
    """One named input of a signature: its dtype and shape (None = any)."""

    def __init__(self, name, dtype, shape):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.shape = shape  # tuple, or None for an unknown rank

    @property
    def batched(self):
        return bool(self.shape) and self.shape[0] is None

    def describe(self):
        kind = self.dtype.name
        article = "an" if kind[0] in "aeiou" else "a"
        if self.shape is None:
            return f"{article} {kind} array"
        if not self.shape:
            return f"{article} {kind} scalar"
        return f"{article} {kind} array of shape {_shape_text(self.shape)}"

    def metadata(self):
        dims = [{"size": "-1" if d is None else str(d)}
                for d in (self.shape or ())]
        shape = ({"unknown_rank": True} if self.shape is None
                 else {"dim": dims})
        return {"dtype": _TF_DTYPE_NAMES.get(self.dtype.name, self.dtype.name),
                "tensor_shape": shape, "name": self.name}


class Signature:
    """A SavedModel signature: its concrete function and input specs."""

    def __init__(self, name, fn):
        import tensorflow as tf

        self.name = name
        self.fn = fn
        args, kwargs = fn.structured_input_signature
        if args:
            raise ValueError(f"signature {name!r} has positional inputs")
        self.inputs = {}  # by name: the order TF gives is not stable
        for key, spec in sorted(kwargs.items()):
            shape = (None if spec.shape.rank is None
                     else tuple(spec.shape.as_list()))
            self.inputs[key] = InputSpec(key, spec.dtype.as_numpy_dtype, shape)
        outputs = fn.structured_outputs
        self.outputs = {
            key: InputSpec(key, s.dtype.as_numpy_dtype,
                           None if s.shape.rank is None
                           else tuple(s.shape.as_list()))
            for key, s in outputs.items()
        } if isinstance(outputs, dict) else {}
        self.scalar_inputs = [k for k, s in self.inputs.items()
                              if s.shape == ()]
        self._tf = tf

    def call(self, arrays):
        tf = self._tf
        tensors = {k: tf.constant(a, dtype=self.inputs[k].dtype)
                   for k, a in arrays.items()}
        out = self.fn(**tensors)
        return {k: v.numpy() for k, v in out.items()}

    def warmup_arrays(self):
        """Zeros of one row for every input, or None if a size is unknown."""
        arrays = {}
        for key, spec in self.inputs.items():
            if spec.shape is None or any(d is None for d in spec.shape[1:]):
                return None
            if spec.shape == ():
                arrays[key] = np.array(1 if key == "num_samples" else 0,
                                       spec.dtype)
            else:
                arrays[key] = np.zeros((1,) + spec.shape[1:], spec.dtype)
        return arrays


# --------------------------------------------------------------- server
class ModelServer:
    """Validates and runs predict requests on a SavedModel (no HTTP here).

    Args:
        model_dir: the SavedModel directory (`vae.export_serving(path)`).
        name: the model name of the URLs (`/v1/models/<name>`).
        max_batch: most rows per request (also `sample`'s `num_samples`).
        max_inflight: most model calls running at once.
        queue_timeout: seconds a request waits for a model slot before 503.
        allow_nan: "auto" (NaN accepted where the model fills missing
            entries, when it has an `impute` signature), "yes" or "no".
        warmup: call each signature once on zeros at start.
    """

    def __init__(self, model_dir, name=DEFAULT_NAME,
                 max_batch=DEFAULT_MAX_BATCH,
                 max_inflight=DEFAULT_MAX_INFLIGHT,
                 queue_timeout=DEFAULT_QUEUE_TIMEOUT_S, allow_nan="auto",
                 warmup=True):
        import tensorflow as tf

        for arg, value in (("max_batch", max_batch),
                           ("max_inflight", max_inflight)):
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < 1:
                raise ValueError(
                    f"Invalid value received for argument `{arg}`. Expected "
                    f"an int >= 1. Received: {arg}={value!r}")
        if allow_nan not in ("auto", "yes", "no"):
            raise ValueError(
                "Invalid value received for argument `allow_nan`. Expected "
                f"'auto', 'yes' or 'no'. Received: allow_nan={allow_nan!r}")
        self.name = name
        self.max_batch = max_batch
        self.queue_timeout = queue_timeout
        start = time.perf_counter()
        self.model = tf.saved_model.load(os.fspath(model_dir))
        self.signatures = {key: Signature(key, fn)
                           for key, fn in self.model.signatures.items()}
        self.load_seconds = time.perf_counter() - start
        self.nan_allowed = (allow_nan == "yes" or (
            allow_nan == "auto" and "impute" in self.signatures))
        self._slots = threading.BoundedSemaphore(max_inflight)
        self.max_inflight = max_inflight
        self.warmed, self.warmup_errors = [], {}
        if warmup:
            for key, sig in self.signatures.items():
                arrays = sig.warmup_arrays()
                if arrays is None:
                    continue
                try:
                    sig.call(arrays)
                    self.warmed.append(key)
                except Exception as err:  # served anyway; requests will say
                    self.warmup_errors[key] = f"{type(err).__name__}: {err}"

    # ---------------------------------------------------------- status
    def status(self):
        return {"model_version_status": [{
            "version": MODEL_VERSION, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self):
        defs = {
            key: {"inputs": {k: s.metadata() for k, s in sig.inputs.items()},
                  "outputs": {k: s.metadata()
                              for k, s in sig.outputs.items()},
                  "method_name": "tensorflow/serving/predict"}
            for key, sig in self.signatures.items()}
        return {"model_spec": {"name": self.name, "signature_name": "",
                               "version": MODEL_VERSION},
                "metadata": {"signature_def": {"signature_def": defs}}}

    # --------------------------------------------------------- predict
    def predict(self, body):
        """`body` (bytes) -> the answer's JSON text; raises RequestError."""
        request = self._parse(body)
        sig = self._signature(request)
        row_form = "instances" in request
        if row_form:
            raw = self._columns_from_instances(sig, request["instances"])
        else:
            raw = self._named_inputs(sig, request["inputs"])
        arrays = {key: self._to_array(sig, sig.inputs[key], value, row_form)
                  for key, value in raw.items()}
        self._check_batches(sig, arrays)
        if not self._slots.acquire(timeout=self.queue_timeout):
            raise RequestError(
                503, f"The server is busy: all {self.max_inflight} model "
                f"slots stayed taken for {self.queue_timeout:g} s. Retry "
                "later.")
        try:
            outputs = sig.call(arrays)
        except Exception as err:  # the model's own failure
            raise self._model_error(sig, err) from err
        finally:
            self._slots.release()
        return self._response(outputs, row_form)

    def _parse(self, body):
        try:
            request = json.loads(body)
        except RecursionError:
            raise RequestError(
                400, "The request body nests lists or objects too deeply to "
                "read.") from None
        except (UnicodeDecodeError, ValueError) as err:
            raise RequestError(
                400, f"The request body is not valid JSON: {err}. Expected "
                'an object such as {"signature_name": "serving_default", '
                '"instances": [...]}.') from None
        if not isinstance(request, dict):
            raise RequestError(
                400, "The request body must be a JSON object with "
                '"instances" or "inputs". Received: '
                f"{type(request).__name__} {_shown(request)}")
        unknown = sorted(set(request) - {"signature_name", "instances",
                                          "inputs"})
        if unknown:
            raise RequestError(
                400, f"Unknown keys in the request: {unknown}. Expected "
                '"signature_name" and one of "instances" (row form) or '
                '"inputs" (columnar form).')
        has = [k for k in ("instances", "inputs") if k in request]
        if len(has) != 1:
            raise RequestError(
                400, 'The request must have exactly one of "instances" '
                f'(row form) and "inputs" (columnar form). Received: '
                f"{has or 'neither'}")
        return request

    def _signature(self, request):
        key = request.get("signature_name", "serving_default")
        if not isinstance(key, str) or key not in self.signatures:
            raise RequestError(
                400, f"Unknown signature_name: {_shown(key)}. This model "
                f"has: {sorted(self.signatures)}")
        return self.signatures[key]

    def _columns_from_instances(self, sig, instances):
        if not isinstance(instances, list):
            raise RequestError(
                400, '"instances" must be a list with one entry per row. '
                f"Received: {type(instances).__name__} {_shown(instances)}")
        if not 1 <= len(instances) <= self.max_batch:
            raise RequestError(
                400, f"Expected 1 to {self.max_batch} rows (--max-batch) in "
                f'"instances". Received: {len(instances)} rows')
        if sig.scalar_inputs:
            raise RequestError(
                400, f"Signature `{sig.name}` has scalar inputs "
                f"{sig.scalar_inputs}, which the row form cannot carry: send "
                '{"inputs": {...}} (columnar form) instead.')
        names = list(sig.inputs)
        if all(isinstance(row, dict) for row in instances):
            for i, row in enumerate(instances):
                self._check_names(sig, row, f"instance {i}")
            return {k: [row[k] for row in instances] for k in names}
        if len(names) == 1:
            if any(isinstance(row, dict) for row in instances):
                raise RequestError(
                    400, '"instances" mixes objects and values; send every '
                    f"row as a value of `{names[0]}` or every row as "
                    f'{{"{names[0]}": ...}}.')
            return {names[0]: instances}
        raise RequestError(
            400, f"Signature `{sig.name}` has several inputs {names}: each "
            'row of "instances" must be an object {"name": value, ...}. '
            f"Received: {_shown(instances[0])}")

    def _named_inputs(self, sig, inputs):
        if isinstance(inputs, dict):
            self._check_names(sig, inputs, '"inputs"')
            return dict(inputs)
        if len(sig.inputs) == 1:
            return {next(iter(sig.inputs)): inputs}
        raise RequestError(
            400, f"Signature `{sig.name}` has several inputs "
            f"{list(sig.inputs)}: \"inputs\" must be an object mapping each "
            f"name to its value. Received: {_shown(inputs)}")

    @staticmethod
    def _check_names(sig, given, where):
        missing = [k for k in sig.inputs if k not in given]
        unknown = [k for k in given if k not in sig.inputs]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing inputs {missing}")
            if unknown:
                parts.append(f"unknown inputs {unknown}")
            raise RequestError(
                400, f"{where} for signature `{sig.name}`: "
                + " and ".join(parts)
                + f". Its inputs are {list(sig.inputs)}.")

    def _to_array(self, sig, spec, value, row_form):
        where = f"input `{spec.name}` of signature `{sig.name}`"
        expected = spec.describe()
        if spec.batched:
            expected += f" with 1 to {self.max_batch} rows"

        def bad(what):
            return RequestError(
                400, f"Invalid value received for {where}. Expected "
                f"{expected}. Received: {what}")

        try:
            obj = np.array(value, dtype=object)
        except (ValueError, TypeError) as err:
            raise bad(f"a value NumPy cannot read as an array ({err})") \
                from None
        kinds = set(map(type, obj.flat)) if obj.size else set()
        if spec.dtype.kind == "f":
            allowed = {int, float}
        elif spec.dtype.kind in "iu":
            allowed = {int}
        elif spec.dtype.kind == "b":
            allowed = {bool}
        else:
            raise RequestError(
                400, f"{where} has dtype {spec.dtype.name}, which this "
                "server does not take from JSON.")
        if list in kinds:
            raise bad("nested lists of different lengths or depths (a "
                      f"ragged array): {_shown(value)}")
        wrong = kinds - allowed
        if wrong:
            names = ", ".join(sorted(_JSON_TYPES.get(t, t.__name__)
                                     for t in wrong))
            raise bad(f"{names} in {_shown(value)}")
        shape = obj.shape
        if spec.shape is not None and (len(shape) != len(spec.shape) or any(
                d is not None and d != n for d, n in zip(spec.shape, shape))):
            if row_form:
                raise bad(f"rows of shape {_shape_text(shape[1:])} "
                          f"(rows {_shape_text(spec.shape[1:])} expected)")
            hint = ""
            if len(shape) == len(spec.shape) - 1:
                hint = " (one row without its batch axis? wrap it in a list)"
            raise bad(f"an array of shape {_shape_text(shape)} (rank "
                      f"{len(shape)}){hint}")
        if spec.batched and not 1 <= shape[0] <= self.max_batch:
            raise RequestError(
                400, f"Invalid value received for {where}. Expected 1 to "
                f"{self.max_batch} rows (--max-batch). Received: "
                f"{shape[0]} rows")
        if spec.dtype.kind == "b":
            return obj.astype(bool)
        if spec.dtype.kind in "iu":
            try:
                wide = obj.astype(np.int64)
            except OverflowError:
                raise bad("an integer beyond int64") from None
            info = np.iinfo(spec.dtype)
            out_of_range = (wide < info.min) | (wide > info.max)
            if np.any(out_of_range):
                raise bad(f"{wide[out_of_range].flat[0]}, outside "
                          f"{spec.dtype.name}'s range [{info.min}, "
                          f"{info.max}]")
            array = wide.astype(spec.dtype)
            if spec.name == "num_samples" and spec.shape == () and not (
                    1 <= int(array) <= self.max_batch):
                raise bad(f"num_samples={int(array)}; the rows of the "
                          f"output must be 1 to {self.max_batch} "
                          "(--max-batch)")
            return array
        try:
            wide = obj.astype(np.float64)
        except OverflowError:
            raise bad("an integer too large for a float") from None
        nan = np.isnan(wide)
        if np.any(nan) and not (self.nan_allowed
                                and sig.name in FILLED_SIGNATURES):
            why = ("this model was exported without missing values (it has "
                   "no `impute` signature)" if not self.nan_allowed else
                   f"signature `{sig.name}` does not fill missing entries")
            raise bad(f"NaN at index {_first_index(nan)} ({int(nan.sum())} "
                      f"NaN in all); {why}. Send numbers, or serve a model "
                      "compiled with missing_values=float('nan').")
        limit = float(np.finfo(spec.dtype).max)
        inf = np.isinf(wide) | (np.abs(np.where(nan, 0.0, wide)) > limit)
        if np.any(inf):
            first = float(wide[inf].flat[0])
            raise bad(f"{first!r} at index {_first_index(inf)}: "
                      f"infinite or outside {spec.dtype.name}'s range "
                      f"(+-{limit:.4g})")
        return wide.astype(spec.dtype)

    @staticmethod
    def _check_batches(sig, arrays):
        if sig.scalar_inputs:
            return  # `sample`: conditions give one row, num_samples the rest
        rows = {k: a.shape[0] for k, a in arrays.items()
                if sig.inputs[k].batched}
        if len(set(rows.values())) > 1:
            raise RequestError(
                400, f"The inputs of signature `{sig.name}` must have the "
                f"same number of rows. Received: {rows}")

    @staticmethod
    def _model_error(sig, err):
        import tensorflow as tf

        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if isinstance(err, tf.errors.InvalidArgumentError):
            return RequestError(
                400, f"Signature `{sig.name}` refused the inputs: {first}")
        if isinstance(err, tf.errors.ResourceExhaustedError):
            return RequestError(
                503, f"Signature `{sig.name}` ran out of memory: {first}")
        return RequestError(
            500, f"Signature `{sig.name}` failed: "
            f"{type(err).__name__}: {first}")

    @staticmethod
    @staticmethod
    def _response(outputs, row_form):
        """The answer's JSON text (see `json_array`)."""
        if not row_form:
            if len(outputs) == 1:
                return RawJSON('{"outputs":' + json_array(
                    next(iter(outputs.values()))) + "}")
            return RawJSON('{"outputs":{' + ",".join(
                f"{json.dumps(k)}:{json_array(v)}"
                for k, v in outputs.items()) + "}}")
        if len(outputs) == 1:
            return RawJSON('{"predictions":' + json_array(
                next(iter(outputs.values()))) + "}")
        rows = len(next(iter(outputs.values())))
        keys = {k: json.dumps(k) for k in outputs}
        return RawJSON('{"predictions":[' + ",".join(
            "{" + ",".join(f"{keys[k]}:{json_array(v[i])}"
                           for k, v in outputs.items()) + "}"
            for i in range(rows)) + "]}")


class RawJSON(str):
    """JSON text made by hand, sent as it is."""


# Digits that give back the same float (float32 needs 9, float64 17).
_FLOAT_FORMATS = {2: "%.5g", 4: "%.9g", 8: "%.17g"}


def json_array(a):
    """JSON text of a NumPy array: finite floats printed with the digits
    their dtype needs to read back exactly (`%.9g` for float32: about 3x
    faster and 40% shorter than `json.dumps(a.tolist())`); other arrays,
    or floats with NaN / inf (printed as NaN, Infinity), by `json.dumps`."""
    a = np.asarray(a)
    fmt = _FLOAT_FORMATS.get(a.itemsize) if a.dtype.kind == "f" else None
    if fmt is None or a.size == 0 or not np.all(np.isfinite(a)):
        return json.dumps(a.tolist(), separators=(",", ":"))
    if a.ndim == 0:
        return fmt % float(a)
    rows = a.reshape(-1, a.shape[-1]).tolist()
    line = ",".join([fmt] * a.shape[-1])
    text = [f"[{line % tuple(row)}]" for row in rows]
    for n in reversed(a.shape[:-1]):  # nest the innermost rows by axis
        text = ["[" + ",".join(text[i:i + n]) + "]"
                for i in range(0, len(text), n)]
    return text[0]


def _first_index(mask):
    index = np.argwhere(mask)[0]
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


# ----------------------------------------------------------------- HTTP
class Handler(BaseHTTPRequestHandler):
    """Routes TF Serving's REST paths to a `ModelServer` (`server.model`)."""

    protocol_version = "HTTP/1.1"   # keep-alive
    disable_nagle_algorithm = True  # else a small answer waits ~40 ms
    server_version = "keras_vae-serve-http/1"

    def setup(self):
        self.timeout = self.server.idle_timeout  # socket timeout
        super().setup()

    def log_message(self, format, *args):  # noqa: A002 (the base's name)
        if self.server.log_requests:
            super().log_message(format, *args)

    def _send(self, status, payload, close=False):
        if not isinstance(payload, RawJSON):
            payload = json.dumps(payload, separators=(",", ":"))
        body = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, message, close=False):
        self._send(status, {"error": message}, close=close)

    def send_error(self, code, message=None, explain=None):
        """The base class's errors (bad request line, unsupported method,
        header too long) as JSON too (HEAD: no body, as the base does)."""
        if getattr(self, "command", None) == "HEAD":
            return super().send_error(code, message, explain)
        try:
            self._error(code, message or self.responses.get(
                code, ("Error",))[0], close=True)
        except OSError:
            self.close_connection = True

    def _wrong_method(self):
        self._error(405, f"Method {self.command} is not served: GET "
                    f"/v1/models/{self.server.model.name}[/metadata] or "
                    f"POST /v1/models/{self.server.model.name}:predict.",
                    close=True)

    do_PUT = do_DELETE = do_PATCH = _wrong_method  # noqa: N815

    def _route(self):
        path = self.path.split("?", 1)[0]
        match = _PATH.match(path)
        if not match:
            raise RequestError(
                404, f"Unknown path {path!r}. Expected /v1/models/"
                f"{self.server.model.name}[:predict|/metadata].")
        name, version = match["name"], match["version"]
        if name != self.server.model.name or version not in (
                None, MODEL_VERSION):
            spec = (f"Specific({name}, {version})" if version
                    else f"Latest({name})")
            raise RequestError(
                404, f"Servable not found for request: {spec}. This server "
                f"serves `{self.server.model.name}` version "
                f"{MODEL_VERSION}.")
        return match["verb"], match["resource"]

    def do_GET(self):  # noqa: N802 (BaseHTTPRequestHandler's name)
        try:
            verb, resource = self._route()
            if verb:
                raise RequestError(405, f"Use POST for :{verb}.")
            model = self.server.model
            self._send(200, model.metadata() if resource else model.status())
        except RequestError as err:
            self._error(err.status, err.message)

    def do_POST(self):  # noqa: N802
        # The body first: one left unread would be taken for the next
        # request on the connection, and closing a socket with unread data
        # resets it (the client could lose the answer).
        try:
            body = self._read_body()
        except RequestError as err:
            self._error(err.status, err.message, close=True)
            return
        try:
            verb, resource = self._route()
            if verb != "predict":
                raise RequestError(
                    405 if verb is None or resource else 400,
                    f"Use POST /v1/models/{self.server.model.name}:predict"
                    + (f" (:{verb} is not served)." if verb else "."))
            self._send(200, self.server.model.predict(body))
        except RequestError as err:
            self._error(err.status, err.message)
        except Exception as err:  # never let a request take the server down
            traceback.print_exc()
            self._error(500, f"Internal error: {type(err).__name__}: {err}",
                        close=True)

    def _body_length(self):
        """The request's Content-Length; RequestError if absent, bad or
        over the limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(411, "Chunked bodies are not read: send a "
                               "Content-Length.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "The request needs a Content-Length.")
        try:
            length = int(length)
        except ValueError:
            raise RequestError(400, f"Bad Content-Length: {length!r}") \
                from None
        if length < 0:
            raise RequestError(400, f"Bad Content-Length: {length}")
        limit = self.server.max_body_bytes
        if length > limit:
            raise RequestError(
                413, f"The request body is {length} bytes; this server "
                f"reads at most {limit} (--max-body-bytes). Send fewer rows "
                "per request.")
        return length

    def _read_body(self):
        try:
            length = self._body_length()
        except RequestError as err:
            if err.status == 413:
                self._drain(int(self.headers["Content-Length"]))
            raise
        return self.rfile.read(length)

    def _drain(self, length):
        """Reads and drops a too-large body (see DRAIN_LIMIT_BYTES)."""
        if length > DRAIN_LIMIT_BYTES:
            return
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, DRAIN_CHUNK_BYTES))
                if not chunk:
                    break
                length -= len(chunk)
        except OSError:
            pass

    def handle_expect_100(self):
        """`Expect: 100-continue` (curl's large bodies): a body that would
        be refused is refused before it is sent."""
        if self.command == "POST":
            try:
                self._body_length()
            except RequestError as err:
                self._error(err.status, err.message, close=True)
                return False
        return super().handle_expect_100()


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on the open connections."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, model, max_body_bytes=DEFAULT_MAX_BODY_BYTES,
                 max_connections=DEFAULT_MAX_CONNECTIONS,
                 idle_timeout=DEFAULT_IDLE_TIMEOUT_S, log_requests=False):
        self.model = model
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.log_requests = log_requests
        self._connections = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        super().__init__(address, Handler)

    def process_request(self, request, client_address):
        if not self._connections.acquire(timeout=CONNECTION_WAIT_S):
            body = json.dumps({"error": (
                f"Too many connections (at most {self.max_connections}, "
                "--max-connections). Retry later.")}).encode()
            try:
                request.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\n"
                    b"Content-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()


# ----------------------------------------------------------------- main
def positive_int(text):
    if int(text) <= 0:
        raise argparse.ArgumentTypeError(f"expected an int > 0, got {text}")
    return int(text)


def positive_float(text):
    value = float(text)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("model_dir", help="the SavedModel directory (vae.export_serving)")
    add("--name", default=DEFAULT_NAME,
        help="model name in the URLs (default: %(default)s)")
    add("--host", default="127.0.0.1", help="default: %(default)s")
    add("--port", type=int, default=8501,
        help="default: %(default)s (TF Serving's REST port); 0 = a free port")
    add("--max-batch", type=positive_int, default=DEFAULT_MAX_BATCH,
        help="most rows per request (default: %(default)s)")
    add("--max-body-bytes", type=positive_int, default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body read (default: %(default)s)")
    add("--max-inflight", type=positive_int, default=DEFAULT_MAX_INFLIGHT,
        help="most model calls at once (default: the cores, %(default)s)")
    add("--max-connections", type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="most open connections (default: %(default)s)")
    add("--queue-timeout", type=positive_float,
        default=DEFAULT_QUEUE_TIMEOUT_S,
        help="seconds a request waits for a model slot before 503 "
        "(default: %(default)s)")
    add("--idle-timeout", type=positive_float, default=DEFAULT_IDLE_TIMEOUT_S,
        help="seconds before an idle connection is closed "
        "(default: %(default)s)")
    add("--allow-nan", choices=("auto", "yes", "no"), default="auto",
        help="NaN in the inputs of the signatures that fill missing "
        "entries: auto = when the model has an `impute` signature "
        "(default: %(default)s)")
    add("--no-warmup", action="store_true",
        help="skip the first call of each signature at start")
    add("--log-requests", action="store_true",
        help="log every request to stderr")
    add("--malloc-arenas", type=int, default=DEFAULT_MALLOC_ARENAS,
        help="cap on glibc's malloc arenas, set at start (see "
        "limit_malloc_arenas; 0 = glibc's default) (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = ModelServer(
        args.model_dir, name=args.name, max_batch=args.max_batch,
        max_inflight=args.max_inflight, queue_timeout=args.queue_timeout,
        allow_nan=args.allow_nan, warmup=not args.no_warmup)
    server = Server((args.host, args.port), model,
                    max_body_bytes=args.max_body_bytes,
                    max_connections=args.max_connections,
                    idle_timeout=args.idle_timeout,
                    log_requests=args.log_requests)
    host, port = server.server_address[:2]

    def stop(signum, frame):
        # shutdown() waits for serve_forever, which runs in this thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({
        "event": "ready", "url": f"http://{host}:{port}/v1/models/{args.name}",
        "host": host, "port": port, "pid": os.getpid(),
        "signatures": sorted(model.signatures), "warmed": model.warmed,
        "warmup_errors": model.warmup_errors, "malloc_arenas": _MALLOC_ARENAS,
        "nan_allowed": model.nan_allowed,
        "load_s": round(model.load_seconds, 3),
        "keras_vae_imported": any(
            m.split(".")[0] == "keras_vae" and sys.modules[m] is not None
            for m in list(sys.modules)),
    }), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print(json.dumps({"event": "stopped"}), flush=True)


def limit_malloc_arenas(argv=None):
    """glibc gives each thread that allocates concurrently its own malloc
    arena (up to 8 per core), and memory freed in one stays there: a
    threaded server's RSS then grows with every new thread/arena pairing
    before it levels off. `--malloc-arenas N` (default 2; 0 = glibc's
    default) caps them, as MALLOC_ARENA_MAX=N would, before TensorFlow
    starts its threads. Linux/glibc only; elsewhere nothing happens."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--malloc-arenas", type=int,
                        default=DEFAULT_MALLOC_ARENAS)
    arenas = parser.parse_known_args(argv)[0].malloc_arenas
    global _MALLOC_ARENAS
    if arenas <= 0 or not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        if ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas) == 1:
            _MALLOC_ARENAS = arenas
    except (OSError, AttributeError):
        pass
    return _MALLOC_ARENAS


if __name__ == "__main__":
    sys.modules["keras_vae"] = None  # any `import keras_vae` now fails
    limit_malloc_arenas()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _quiet_tf import import_tensorflow_quietly

    import_tensorflow_quietly()
    main()
