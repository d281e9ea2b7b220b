"""examples/serve_http.py: TF Serving's REST shape over a keras_vae SavedModel.

One server process (keras_vae blocked there) serves a tiny exported MLP
VAE on 127.0.0.1 for the whole module: every malformed request gets its 4xx
and a message naming the input and what was received, and the server keeps
answering, with the in-memory model's numbers, over the same keep-alive
connection and under concurrent clients. The NaN policy of a model with an
`impute` signature, the busy answer and the JSON encoder are checked in
this process on `ModelServer` / `json_array` directly.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest

import keras_vae

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")
SERVER = os.path.join(EXAMPLES, "serve_http.py")
DIM, LATENT, MAX_BATCH, MAX_BODY = 8, 2, 4, 4096
READY_TIMEOUT_S, REQUEST_TIMEOUT_S, STOP_TIMEOUT_S = 120, 30, 15
PREDICT = "/v1/models/vae:predict"
X = np.array([[0, 1, 0, 1, 1, 0, 0, 1],
              [1, 1, 1, 0, 0, 0, 1, 0],
              [0, 0, 0, 0, 1, 1, 1, 1]], np.float32)


def tiny_vae(missing_values=None):
    x_in = keras.Input((DIM,), name="x")
    h = keras.layers.Dense(16, activation="tanh")(x_in)
    q = keras_vae.GaussianEncoderHead(LATENT)(h)
    z = keras_vae.ReparameterizedSample(seed=3)(keras_vae.KLRegularizer()(q))
    logits = keras.layers.Dense(DIM)(keras.layers.Dense(16, activation="tanh")(z))
    vae = keras_vae.VAEModel(x_in, logits)
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                missing_values=missing_values)
    return vae


class Connection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def request(port, method, path, body=None, conn=None):
    """(status, parsed JSON answer); a fresh connection unless `conn`."""
    own = conn is None
    conn = conn or Connection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        conn.request(method, path, body,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        if own:
            conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(port, in-memory vae, ready line) of a server on the tiny model."""
    keras.utils.set_random_seed(5)
    vae = tiny_vae()
    model_dir = str(tmp_path_factory.mktemp("serve_http") / "model")
    vae.export_serving(model_dir, log_likelihood_samples=10)
    log_path = os.path.join(os.path.dirname(model_dir), "server.log")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, SERVER, model_dir, "--port", "0",
             "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY),
             "--max-inflight", "2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env)
    try:
        ready, deadline = None, time.monotonic() + READY_TIMEOUT_S
        while ready is None and time.monotonic() < deadline:
            assert proc.poll() is None, open(log_path).read()[-3000:]
            for line in open(log_path).read().splitlines():
                if line.startswith('{"event": "ready"'):
                    ready = json.loads(line)
            time.sleep(0.1)
        assert ready is not None, open(log_path).read()[-3000:]
        yield ready["port"], vae, ready
        assert proc.poll() is None, "the server died during the tests"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
    assert proc.returncode == 0, open(log_path).read()[-3000:]
    assert '{"event": "stopped"}' in open(log_path).read()


@pytest.mark.slow  # the server: a second interpreter
def test_status_metadata_and_a_process_without_keras_vae(served):
    port, _, ready = served
    assert ready["keras_vae_imported"] is False
    assert ready["nan_allowed"] is False
    assert ready["signatures"] == ["decode", "encode", "log_likelihood",
                                   "sample", "serving_default"]
    assert ready["warmed"] and set(ready["warmed"]) == set(ready["signatures"])
    status, body = request(port, "GET", "/v1/models/vae")
    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = request(port, "GET", "/v1/models/vae/metadata")
    assert status == 200
    sig = body["metadata"]["signature_def"]["signature_def"]
    x = sig["serving_default"]["inputs"]["x"]
    assert x["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", str(DIM)]
    assert set(sig["encode"]["outputs"]) == {"loc", "scale"}


ROW = [0.0] * DIM
NAN_BODY = b'{"inputs": [[0, 1, 0, NaN, 0, 0, 0, 0]]}'
# name: (method, path, body, status, substrings of the error message)
BAD = {
    "malformed JSON": ("POST", PREDICT, b'{"instances": [[0, 1', 400,
                       ["not valid JSON"]),
    "not an object": ("POST", PREDICT, [ROW], 400, ["JSON object", "list"]),
    "unknown key": ("POST", PREDICT, {"instances": [ROW], "foo": 1}, 400,
                    ["Unknown keys", "foo"]),
    "both forms": ("POST", PREDICT, {"instances": [ROW], "inputs": [ROW]},
                   400, ["exactly one of"]),
    "unknown signature": ("POST", PREDICT,
                          {"signature_name": "nope", "inputs": [ROW]}, 400,
                          ['"nope"', "serving_default", "log_likelihood"]),
    "missing input": ("POST", PREDICT, {"inputs": {"z": [ROW]}}, 400,
                      ["missing inputs ['x']", "unknown inputs ['z']"]),
    "extra input": ("POST", PREDICT, {"inputs": {"x": [ROW], "y": [ROW]}},
                    400, ["unknown inputs ['y']"]),
    "row without batch axis": ("POST", PREDICT, {"inputs": ROW}, 400,
                               ["input `x`", "(batch, 8)", "shape (8,)",
                                "wrap it in a list"]),
    "wrong width": ("POST", PREDICT, {"inputs": [[0.0] * (DIM - 1)]}, 400,
                    ["input `x`", "(batch, 8)", "shape (1, 7)"]),
    "wrong row width": ("POST", PREDICT, {"instances": [[0.0] * 9]}, 400,
                        ["input `x`", "rows of shape (9,)"]),
    "ragged": ("POST", PREDICT, {"inputs": [ROW, ROW[:3]]}, 400,
               ["input `x`", "ragged"]),
    "strings": ("POST", PREDICT, {"inputs": [["0"] * DIM]}, 400,
                ["input `x`", "float32", "strings", '"0"']),
    "booleans": ("POST", PREDICT, {"inputs": [[True] + ROW[1:]]}, 400,
                 ["input `x`", "booleans"]),
    "null": ("POST", PREDICT, {"inputs": [[None] + ROW[1:]]}, 400,
             ["input `x`", "null"]),
    "NaN": ("POST", PREDICT, NAN_BODY, 400,
            ["input `x`", "NaN at index [0, 3]", "without missing values"]),
    "infinity": ("POST", PREDICT, b'{"inputs": [[Infinity, 0, 0, 0, 0, 0, '
                 b'0, 0]]}', 400, ["input `x`", "inf", "index [0, 0]"]),
    "beyond float32": ("POST", PREDICT, {"inputs": [[1e39] + ROW[1:]]}, 400,
                       ["input `x`", "1e+39", "float32's range"]),
    "oversize batch (inputs)": ("POST", PREDICT,
                                {"inputs": [ROW] * (MAX_BATCH + 1)}, 400,
                                ["input `x`", "1 to 4 rows", "5 rows"]),
    "oversize batch (instances)": ("POST", PREDICT,
                                   {"instances": [ROW] * (MAX_BATCH + 1)},
                                   400, ["1 to 4 rows", "5 rows"]),
    "no rows": ("POST", PREDICT, {"instances": []}, 400, ["0 rows"]),
    "NaN latent": ("POST", PREDICT, {"signature_name": "decode", "inputs":
                                     {"z": [[float("nan"), 0.0]]}}, 400,
                   ["input `z` of signature `decode`", "NaN"]),
    "too many samples": ("POST", PREDICT, {"signature_name": "sample",
                                           "inputs": {"num_samples": 5,
                                                      "seed": 1}}, 400,
                         ["input `num_samples`", "num_samples=5"]),
    "fractional samples": ("POST", PREDICT, {"signature_name": "sample",
                                             "inputs": {"num_samples": 2.5,
                                                        "seed": 1}}, 400,
                           ["input `num_samples`", "int32", "floats"]),
    "seed beyond int32": ("POST", PREDICT, {"signature_name": "sample",
                                            "inputs": {"num_samples": 2,
                                                       "seed": 2**31}}, 400,
                          ["input `seed`", "2147483648", "int32's range"]),
    "scalars in the row form": ("POST", PREDICT,
                                {"signature_name": "sample",
                                 "instances": [1]}, 400, ["columnar"]),
    "body too large": ("POST", PREDICT, b" " * (MAX_BODY + 1), 413,
                       [str(MAX_BODY + 1), "--max-body-bytes"]),
    "unknown model": ("POST", "/v1/models/other:predict", {"inputs": [ROW]},
                      404, ["Latest(other)"]),
    "unknown version": ("POST", "/v1/models/vae/versions/2:predict",
                        {"inputs": [ROW]}, 404, ["Specific(vae, 2)"]),
    "unknown path": ("GET", "/v2/nothing", None, 404, ["Unknown path"]),
    "GET on predict": ("GET", PREDICT, None, 405, ["POST"]),
    "PUT": ("PUT", "/v1/models/vae", b"{}", 405, ["PUT"]),
    "classify": ("POST", "/v1/models/vae:classify", {"inputs": [ROW]}, 400,
                 [":classify is not served"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BAD))
def test_a_malformed_request_gets_its_4xx_and_the_server_answers_on(
        served, name):
    port, vae, _ = served
    method, path, body, want, parts = BAD[name]
    status, answer = request(port, method, path, body)
    assert status == want, answer
    message = answer["error"]
    for part in parts:
        assert part in message, (part, message)
    # Still answering, with the in-memory model's numbers.
    status, answer = request(port, "POST", PREDICT,
                             {"instances": X[:1].tolist()})
    assert status == 200, answer
    np.testing.assert_allclose(answer["predictions"], vae.reconstruct(X[:1]),
                               atol=1e-6)


@pytest.mark.slow
def test_valid_requests_give_the_in_memory_models_numbers(served):
    port, vae, _ = served
    conn = Connection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        # Row form, one output; binary pixels sent as integers.
        status, answer = request(
            port, "POST", PREDICT,
            {"instances": X.astype(int).tolist()}, conn)
        assert status == 200
        np.testing.assert_allclose(answer["predictions"], vae.reconstruct(X),
                                   atol=1e-6)
        # An error on the same keep-alive connection does not break it.
        status, _ = request(port, "POST", PREDICT, b"{oops", conn)
        assert status == 400
        # Row form, several outputs: one object per row.
        status, answer = request(
            port, "POST", PREDICT,
            {"signature_name": "encode", "instances": X.tolist()}, conn)
        assert status == 200
        loc, scale = vae.encode(X)
        assert [sorted(r) for r in answer["predictions"]] == [
            ["loc", "scale"]] * len(X)
        np.testing.assert_allclose(
            [r["loc"] for r in answer["predictions"]], loc, atol=1e-6)
        np.testing.assert_allclose(
            [r["scale"] for r in answer["predictions"]], scale, atol=1e-6)
        # Columnar form, several outputs.
        z = np.array([[0.5, -1.0]], np.float32)
        status, answer = request(
            port, "POST", PREDICT,
            {"signature_name": "decode", "inputs": {"z": z.tolist()}}, conn)
        assert status == 200
        np.testing.assert_allclose(answer["outputs"]["params"], vae.decode(z),
                                   atol=1e-5)
        # Bernoulli mean = sigmoid(logits), by hand.
        np.testing.assert_allclose(
            answer["outputs"]["mean"],
            1 / (1 + np.exp(-np.asarray(answer["outputs"]["params"]))),
            atol=1e-6)
        # log_likelihood: deterministic per request; log p(x) of binary data
        # is < 0 and near the in-memory estimate (other noise).
        body = {"signature_name": "log_likelihood",
                "inputs": {"x": X.tolist()}}
        (s1, a1), (s2, a2) = (request(port, "POST", PREDICT, body, conn)
                              for _ in range(2))
        assert s1 == s2 == 200 and a1 == a2
        ll = np.asarray(a1["outputs"])
        assert ll.shape == (len(X),) and np.all(ll < 0)
        local = vae.log_likelihood(X, num_samples=1000)
        np.testing.assert_allclose(ll, local, atol=0.5)
        # sample: num_samples rows of probabilities, fixed by the seed.
        body = {"signature_name": "sample",
                "inputs": {"num_samples": 3, "seed": 7}}
        (s1, a1), (s2, a2) = (request(port, "POST", PREDICT, body, conn)
                              for _ in range(2))
        assert s1 == s2 == 200 and a1 == a2
        samples = np.asarray(a1["outputs"])
        assert samples.shape == (3, DIM)
        assert np.all((samples > 0) & (samples < 1))
    finally:
        conn.close()


@pytest.mark.slow
def test_expect_100_continue_refuses_a_large_body_before_it_is_sent(served):
    port = served[0]
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=REQUEST_TIMEOUT_S) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Content-Length: {10 * MAX_BODY}\r\n\r\n".encode())
        data = b""
        while b"}" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), data
    assert b"100 Continue" not in head
    assert "--max-body-bytes" in json.loads(body)["error"]


@pytest.mark.slow
def test_concurrent_clients_mixing_good_and_bad_requests(served):
    port, vae, _ = served
    expected = vae.reconstruct(X)
    good = {"inputs": X.tolist()}
    bad = {"inputs": [[float("nan")] * DIM]}
    results, errors = [], []

    def client(i):
        conn = Connection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            for j in range(6):
                is_bad = (i + j) % 3 == 0
                status, answer = request(port, "POST", PREDICT,
                                         bad if is_bad else good, conn)
                results.append((is_bad, status, answer))
        except Exception as err:  # noqa: BLE001 (reported below)
            errors.append(repr(err))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(4 * REQUEST_TIMEOUT_S)
    assert not errors and not any(t.is_alive() for t in threads), errors
    assert len(results) == 48
    for is_bad, status, answer in results:
        if is_bad:
            assert status == 400 and "NaN" in answer["error"]
        else:
            assert status == 200
            np.testing.assert_allclose(answer["outputs"], expected, atol=1e-6)


# ------------------------------------------------ in this process, no HTTP
@pytest.fixture(scope="module")
def serve_http():
    sys.path.insert(0, EXAMPLES)
    try:
        import serve_http as module
    finally:
        sys.path.remove(EXAMPLES)
    return module


def test_nan_policy_of_a_model_with_an_impute_signature(tmp_path, serve_http):
    vae = tiny_vae(missing_values=float("nan"))
    path = str(tmp_path / "model")
    vae.export_serving(path, log_likelihood_samples=10)
    x = X.copy()
    x[0, 3] = np.nan
    body = json.dumps({"inputs": x.tolist()}).encode()  # NaN as NaN

    auto = serve_http.ModelServer(path, max_batch=4, warmup=False)
    assert auto.nan_allowed and "impute" in auto.signatures
    out = np.asarray(json.loads(auto.predict(body))["outputs"])
    np.testing.assert_allclose(out, vae.reconstruct(x), atol=1e-6)
    assert np.all(np.isfinite(out))
    for sig in ("log_likelihood", "encode"):
        answer = json.loads(auto.predict(json.dumps(
            {"signature_name": sig, "inputs": x.tolist()}).encode()))
        assert np.all(np.isfinite(np.asarray(
            answer["outputs"] if sig == "log_likelihood"
            else answer["outputs"]["loc"])))
    answer = json.loads(auto.predict(json.dumps(
        {"signature_name": "impute",
         "inputs": {"x": x.tolist(), "seed": 1}}).encode()))
    imputed = np.asarray(answer["outputs"])
    assert np.isfinite(imputed[0, 3]) and 0 < imputed[0, 3] < 1
    np.testing.assert_array_equal(np.delete(imputed[0], 3),
                                  np.delete(x[0], 3))
    # Never in decode's latents; never +-inf.
    with pytest.raises(serve_http.RequestError, match="does not fill"):
        auto.predict(json.dumps({"signature_name": "decode", "inputs": {
            "z": [[float("nan"), 0.0]]}}).encode())
    with pytest.raises(serve_http.RequestError, match="inf"):
        auto.predict(b'{"inputs": [[-Infinity, 0, 0, 0, 0, 0, 0, 0]]}')

    refuse = serve_http.ModelServer(path, allow_nan="no", warmup=False)
    with pytest.raises(serve_http.RequestError) as err:
        refuse.predict(body)
    assert err.value.status == 400 and "NaN at index [0, 3]" in str(err.value)


def test_busy_model_slots_give_503_and_bad_arguments_are_refused(
        tmp_path, serve_http):
    vae = tiny_vae()
    path = str(tmp_path / "model")
    vae.export_serving(path, log_likelihood_samples=2)
    server = serve_http.ModelServer(path, max_inflight=1, queue_timeout=0.05,
                                    warmup=False)
    server._slots.acquire()  # the one slot taken by another request
    try:
        with pytest.raises(serve_http.RequestError) as err:
            server.predict(json.dumps({"inputs": X.tolist()}).encode())
        assert err.value.status == 503 and "busy" in err.value.message
    finally:
        server._slots.release()
    assert "outputs" in json.loads(server.predict(
        json.dumps({"inputs": X.tolist()}).encode()))
    for kwargs, arg in (({"max_batch": 0}, "max_batch"),
                        ({"max_inflight": 1.5}, "max_inflight"),
                        ({"allow_nan": "maybe"}, "allow_nan")):
        with pytest.raises(ValueError, match=f"argument `{arg}`"):
            serve_http.ModelServer(path, warmup=False, **kwargs)


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (2, 0)])
def test_json_array_reads_back_exactly(serve_http, shape):
    rng = np.random.default_rng(0)
    a = np.array(rng.standard_normal(shape)
                 * 10.0 ** rng.integers(-30, 30, shape), np.float32)
    text = serve_http.json_array(a)
    back = np.asarray(json.loads(text), np.float32).reshape(shape)
    np.testing.assert_array_equal(back, a)  # bit for bit
    assert back.shape == a.shape
    if a.size:
        a.flat[0] = np.nan
        assert "NaN" in serve_http.json_array(a)
        assert np.isnan(np.asarray(json.loads(serve_http.json_array(a)),
                                   np.float32).flat[0])


def test_a_conditional_model_takes_named_inputs_in_both_forms(
        tmp_path, serve_http):
    x_in, y_in = keras.Input((DIM,), name="x"), keras.Input((2,), name="label")
    q = keras_vae.KLRegularizer()(keras_vae.GaussianEncoderHead(2)(x_in))
    z = keras_vae.ReparameterizedSample(seed=1)(q)
    out = keras.layers.Dense(DIM)(keras.layers.Concatenate()([z, y_in]))
    vae = keras_vae.VAEModel([x_in, y_in], out)
    vae.compile(loss=keras_vae.losses.BernoulliNLL())
    path = str(tmp_path / "cvae")
    vae.export_serving(path, log_likelihood_samples=4)
    server = serve_http.ModelServer(path, max_batch=4)
    assert set(server.warmed) == set(server.signatures)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1]]
    expected = vae.reconstruct([X, y])

    def predict(request):
        return json.loads(server.predict(json.dumps(request).encode()))

    rows = [{"x": a.tolist(), "input_1": b.tolist()} for a, b in zip(X, y)]
    np.testing.assert_allclose(predict({"instances": rows})["predictions"],
                               expected, atol=1e-6)
    np.testing.assert_allclose(
        predict({"inputs": {"x": X.tolist(), "input_1": y.tolist()}})[
            "outputs"], expected, atol=1e-6)
    # sample: one row of the condition, num_samples rows out.
    samples = predict({"signature_name": "sample", "inputs": {
        "num_samples": 2, "seed": 3, "input_1": y[:1].tolist()}})["outputs"]
    assert np.asarray(samples).shape == (2, DIM)
    ll = predict({"signature_name": "log_likelihood", "inputs": {
        "x": X.tolist(), "input_1": y.tolist(), "targets": X.tolist()}})
    assert np.asarray(ll["outputs"]).shape == (len(X),)

    bad = {
        "plain rows": ({"instances": X.tolist()},
                       ["several inputs ['input_1', 'x']", "object"]),
        "rows without a name": ({"instances": [{"x": X[0].tolist()}]},
                                ["instance 0", "missing inputs ['input_1']"]),
        "rows that differ in number": (
            {"inputs": {"x": X.tolist(), "input_1": y[:2].tolist()}},
            ["same number of rows", "'x': 3", "'input_1': 2"]),
        "a bare array": ({"inputs": X.tolist()}, ["several inputs",
                                                   "mapping each name"]),
        "a wrong condition": (
            {"inputs": {"x": X.tolist(), "input_1": X.tolist()}},
            ["input `input_1`", "(batch, 2)", "shape (3, 8)"]),
    }
    for name, (request, parts) in bad.items():
        with pytest.raises(serve_http.RequestError) as err:
            predict(request)
        assert err.value.status == 400, name
        for part in parts:
            assert part in err.value.message, (name, part, err.value.message)
