"""The exported SavedModel served over HTTP under concurrent clients.

The MLP VAE of the user's story (784-512-256-32, mirrored decoder,
Bernoulli likelihood; `--epochs` of training on synthetic binary data, 0 =
untrained: the speed does not depend on the weights) is exported with
`vae.export_serving(path, log_likelihood_samples=K)` and served by
`examples/serve_http.py` (TF Serving's REST shape; TensorFlow, NumPy and
the standard library, keras_vae blocked) in its own process on 127.0.0.1,
at a free port. Then, for each signature (`serving_default` in the row form
`{"instances": [...]}`, `log_likelihood` in the columnar form
`{"inputs": {"x": ...}}`), each request batch size and each number of
concurrent clients, every client (a thread with its own keep-alive
`http.client` connection) sends `--requests` requests, all released at
once by a barrier:

```none
req/s          requests answered / wall time of the cell (first send to last answer)
rows/s         req/s x batch
p50, p99       latency of one request: send to the last byte of the answer
server CPU     the server process's CPU seconds (/proc/<pid>/stat) per request
errors         non-200 answers, broken connections, timeouts, or an answer
               whose numbers differ from the reference answer (must be 0)
RSS            the server's resident memory (/proc/<pid>/status VmRSS)
```

Before the timed cells every (signature, batch) is requested
`WARMUP_REQUESTS` times by one client and its first answer kept as the
reference, then `--warmup` times by each of the most clients at once. The
`serving_default` reference is checked against the in-memory
`vae.reconstruct(x)`, the `log_likelihood` one against the in-memory
`vae.log_likelihood(x, K)` (other noise, so within Monte Carlo error only);
both signatures are deterministic, so every answer under load must equal
its reference (byte for byte, or else to 1e-5).

The server's RSS is read when it is ready (each signature called once on
one row), after the warm-up ("before": the server's threads and
TensorFlow's allocator have then met every request size at the full
concurrency), after each cell, and at the end ("after"); memory is flat
when after - before <= `FLAT_MIB`. The server runs with its default
`--malloc-arenas 2` (see examples/serve_http.py). At the end the malformed
requests of `BAD_REQUESTS` are sent (each must get its 4xx), then one
valid request (which must still be answered).

The machine's load average (`/proc/loadavg`) is printed before and after:
the clients, the server and any other process share the cores, so on a
shared machine absolute numbers are noisy (the server CPU per request is
the steadier figure).

    python benchmarks/serving_load.py            # ~3-4 min on 2 shared cores
    python benchmarks/serving_load.py --quick    # smoke test, ~20-35 s
    python benchmarks/serving_load.py --clients 1 8 --requests 100 --output load.md
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import harness  # first: it sets TF's log level before TF is imported
import keras
import numpy as np
import tensorflow as tf

import baselines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "examples", "serve_http.py")
RESULTS = os.path.join(ROOT, "benchmarks", "results_serving_load.md")
DIM, HIDDEN, LATENT = 784, (512, 256), 32
TRAIN_BATCH, MODEL_SEED, REQUEST_SEED = 128, 1, 2
MODEL_NAME = "vae"
SIGNATURES = {  # signature: request form
    "serving_default": "instances", "log_likelihood": "inputs"}
WARMUP_REQUESTS = 3
READY_TIMEOUT_S = 180     # server start: import TensorFlow, load, warm up
REQUEST_TIMEOUT_S = 120   # one request (socket timeout)
STOP_TIMEOUT_S = 15
FLAT_MIB = 32             # allowed RSS growth from before to after the load
ATOL = 1e-5
DEFAULTS = {"epochs": 1, "examples": 4096, "clients": (1, 4, 16),
            "batch_sizes": (1, 32), "requests": 60, "warmup": 8,
            "ll_samples": 100,
            "budget": 60.0, "max_batch": 64, "max_inflight": 2}
QUICK = {"epochs": 0, "examples": 256, "clients": (1, 16),
         "batch_sizes": (1, 32), "requests": 3, "warmup": 2,
         "ll_samples": 10,
         "budget": 10.0, "max_batch": 64, "max_inflight": 2}
# name: (request body, path suffix, expected status); the model has one
# input `x` of shape (batch, 784) and no `impute` signature.
BAD_REQUESTS = {
    "malformed JSON": (b'{"instances": [[0, 1', ":predict", 400),
    "unknown signature": ({"signature_name": "nope", "inputs": [[0.0] * DIM]},
                          ":predict", 400),
    "missing input": ({"inputs": {"z": [[0.0] * DIM]}}, ":predict", 400),
    "wrong shape": ({"inputs": [[0.0] * (DIM - 1)]}, ":predict", 400),
    "wrong dtype": ({"inputs": [["0"] * DIM]}, ":predict", 400),
    "NaN": (b'{"inputs": [[NaN' + b", 0" * (DIM - 1) + b"]]}",
            ":predict", 400),
    "oversize batch": (None, ":predict", 400),   # max_batch + 1 rows
    "body too large": (None, ":predict", 413),   # > --max-body-bytes
    "unknown model": ({"inputs": [[0.0] * DIM]}, "x:predict", 404),
}


# ------------------------------------------------------------ the server
def proc_memory_mib(pid):
    """(VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) / 1024  # kB
    return values["VmRSS"], values["VmHWM"]


def proc_cpu_seconds(pid):
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg():
    with open("/proc/loadavg") as f:
        return f.read().strip()


class ServerProcess:
    """examples/serve_http.py in a subprocess; its output goes to a file."""

    def __init__(self, model_dir, workdir, max_batch, max_inflight,
                 max_body_bytes):
        self.log_path = os.path.join(workdir, "server.log")
        self.max_body_bytes = max_body_bytes
        self._log = open(self.log_path, "w")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, model_dir, "--name", MODEL_NAME,
             "--host", "127.0.0.1", "--port", "0",
             "--max-batch", str(max_batch),
             "--max-inflight", str(max_inflight),
             "--max-body-bytes", str(max_body_bytes)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
            stdin=subprocess.DEVNULL)
        self.pid = self.proc.pid
        self.ready = self._wait_ready()
        self.port = self.ready["port"]

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}"
                                   f"):\n{self.log()[-3000:]}")
            for line in self.log().splitlines():
                if line.startswith('{"event": "ready"'):
                    return json.loads(line)
            time.sleep(0.1)
        raise RuntimeError(f"the server was not ready in {READY_TIMEOUT_S} "
                           f"s:\n{self.log()[-3000:]}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        """SIGTERM (the server shuts down cleanly), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self._log.close()
        return self.proc.returncode


# ----------------------------------------------------------- the clients
class Connection(http.client.HTTPConnection):
    """http.client sends the headers and the body in two writes; without
    TCP_NODELAY the body waits for the server's delayed ACK (~40 ms)."""

    def connect(self):
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def post(port, path, body, timeout=REQUEST_TIMEOUT_S):
    """One request on a fresh connection: (status, body bytes)."""
    conn = Connection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body,
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def same_numbers(data, reference):
    """Whether two answers hold the same numbers (to ATOL)."""
    if data == reference:
        return True
    try:
        a, b = (np.asarray(next(iter(json.loads(d).values())), np.float64)
                for d in (data, reference))
    except (ValueError, TypeError, StopIteration, AttributeError):
        return False
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=ATOL,
                                                   atol=ATOL))


class Client(threading.Thread):
    """Sends `count` requests on one keep-alive connection after `barrier`,
    stopping early at `deadline`; records latencies and errors."""

    def __init__(self, port, path, body, reference, count, barrier,
                 deadline):
        super().__init__(daemon=True)
        self.port, self.path, self.body = port, path, body
        self.reference, self.count = reference, count
        self.barrier, self.deadline = barrier, deadline
        self.latencies, self.errors, self.done_at = [], [], None

    def _connect(self):
        return Connection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S)

    def run(self):
        conn = self._connect()
        headers = {"Content-Type": "application/json"}
        answers = []
        try:
            self.barrier.wait(REQUEST_TIMEOUT_S)
            for _ in range(self.count):
                if time.perf_counter() > self.deadline[0]:
                    break
                start = time.perf_counter()
                try:
                    conn.request("POST", self.path, self.body, headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except (OSError, http.client.HTTPException) as err:
                    self.latencies.append(time.perf_counter() - start)
                    self.errors.append(f"{type(err).__name__}: {err}")
                    conn.close()
                    conn = self._connect()
                    continue
                self.latencies.append(time.perf_counter() - start)
                if resp.status != 200:
                    self.errors.append(f"HTTP {resp.status}: {data[:300]!r}")
                else:
                    answers.append(data)
        except threading.BrokenBarrierError as err:
            self.errors.append(f"barrier: {err}")
        finally:
            self.done_at = time.perf_counter()
            conn.close()
        # Checked after the timed requests: every answer equals the reference.
        wrong = sum(not same_numbers(a, self.reference) for a in answers)
        if wrong:
            self.errors.append(f"{wrong} answers differ from the reference")


def run_cell(server, body, reference, clients, requests, budget):
    """`clients` threads x `requests` requests; the cell's measurements."""
    path = f"/v1/models/{MODEL_NAME}:predict"
    barrier = threading.Barrier(clients + 1)
    deadline = [float("inf")]
    threads = [Client(server.port, path, body, reference, requests, barrier,
                      deadline) for _ in range(clients)]
    for t in threads:
        t.start()
    cpu0 = proc_cpu_seconds(server.pid)
    deadline[0] = time.perf_counter() + budget
    start = time.perf_counter()
    barrier.wait(REQUEST_TIMEOUT_S)
    for t in threads:
        t.join(budget + 2 * REQUEST_TIMEOUT_S)
    stuck = sum(t.is_alive() for t in threads)
    wall = max(t.done_at or time.perf_counter() for t in threads) - start
    cpu = proc_cpu_seconds(server.pid) - cpu0
    latencies = np.concatenate([t.latencies for t in threads]) * 1e3
    errors = [e for t in threads for e in t.errors]
    errors += [f"{stuck} clients did not finish"] * bool(stuck)
    return {"requests": len(latencies), "errors": errors, "wall": wall,
            "cut": len(latencies) < clients * requests,
            "latencies_ms": latencies, "server_cpu": cpu,
            "rss": proc_memory_mib(server.pid)[0]}


# ------------------------------------------------------------- requests
def request_body(signature, x):
    form = SIGNATURES[signature]
    rows = x.tolist()
    payload = {"signature_name": signature}
    payload[form] = rows if form == "instances" else {"x": rows}
    return json.dumps(payload, separators=(",", ":")).encode()


def warm_up_and_check(server, vae, requests, batch_sizes, k):
    """Each (signature, batch) a few times; the reference answers and the
    lines comparing them with the in-memory model."""
    references, lines = {}, []
    path = f"/v1/models/{MODEL_NAME}:predict"
    for signature in SIGNATURES:
        for batch in batch_sizes:
            x = requests[:batch]
            body = request_body(signature, x)
            answers = [post(server.port, path, body)
                       for _ in range(WARMUP_REQUESTS)]
            bad = [(s, d[:300]) for s, d in answers if s != 200]
            if bad:
                raise RuntimeError(f"warm-up of {signature} at batch {batch}"
                                   f" failed: {bad}")
            references[signature, batch] = answers[0][1]
            if not all(same_numbers(d, answers[0][1]) for _, d in answers):
                raise RuntimeError(f"{signature} at batch {batch} gave "
                                   "different answers to one request")
            key = "predictions" if SIGNATURES[signature] == "instances" \
                else "outputs"
            served = np.asarray(json.loads(answers[0][1])[key], np.float64)
            if signature == "serving_default":
                local = np.asarray(vae.reconstruct(x), np.float64)
                diff = float(np.max(np.abs(served - local)))
                if served.shape != local.shape or diff > ATOL:
                    raise RuntimeError(
                        f"served reconstruction differs from "
                        f"vae.reconstruct by {diff:.2e} at batch {batch}")
                lines.append(f"served `serving_default` vs in-memory "
                             f"`vae.reconstruct` at batch {batch}: max "
                             f"|diff| {diff:.1e}")
            else:
                local = np.asarray(vae.log_likelihood(x, num_samples=k),
                                   np.float64)
                if served.shape != (batch,) or not np.all(
                        np.isfinite(served)):
                    raise RuntimeError(f"bad log_likelihood answer: "
                                       f"{served!r}")
                lines.append(f"served `log_likelihood` (K = {k}) at batch "
                             f"{batch}: mean {served.mean():.2f} nats, "
                             f"in-memory `vae.log_likelihood` (other noise) "
                             f"{local.mean():.2f}")
    return references, lines


def bad_request_checks(server, max_batch):
    """Sends each malformed request; then a valid one. Lines and failures."""
    lines, failures = [], []
    base = f"/v1/models/{MODEL_NAME}"
    for name, (payload, suffix, want) in BAD_REQUESTS.items():
        if name == "oversize batch":
            payload = {"instances": [[0.0] * DIM] * (max_batch + 1)}
        if name == "body too large":
            payload = b" " * (server.max_body_bytes + 1)
        body = payload if isinstance(payload, bytes) else json.dumps(
            payload).encode()
        try:
            status, data = post(server.port, base + suffix, body, timeout=30)
            message = json.loads(data).get("error", "")
        except (OSError, http.client.HTTPException, ValueError) as err:
            status, message = None, f"{type(err).__name__}: {err}"
        if status != want or not message:
            failures.append(f"{name}: HTTP {status} ({message[:200]}), "
                            f"expected {want}")
        lines.append(f"| {name} | {status} | {short(message)} |")
    status, _ = post(server.port, base + ":predict",
                     json.dumps({"instances": [[0.0] * DIM]}).encode())
    if status != 200:
        failures.append(f"a valid request after them: HTTP {status}")
    return lines, failures, status


# ---------------------------------------------------------------- report
def short(message, width=150):
    """An error message for a table cell: what it is about and, for the
    "Invalid value received for input ..." ones, what was received."""
    head, sep, received = message.partition(" Expected ")
    if sep and "Received: " in received:
        message = head + " ... Received: " + received.split("Received: ",
                                                            1)[1]
    message = message.replace("|", "\\|")
    return message if len(message) <= width else message[:width] + "..."


def cell_row(signature, batch, clients, cell):
    ms = cell["latencies_ms"]
    n = cell["requests"]
    p50, p99 = (np.percentile(ms, [50, 99]) if n else (float("nan"),) * 2)
    rps = n / cell["wall"] if cell["wall"] > 0 else float("nan")
    return [f"`{signature}`", batch, clients, n, len(cell["errors"]),
            f"{rps:,.1f}", f"{rps * batch:,.0f}", f"{p50:.1f}", f"{p99:.1f}",
            f"{1e3 * cell['server_cpu'] / max(n, 1):.1f}",
            f"{cell['rss']:.0f}"]


def parse_args(argv):
    p = harness.parser(__doc__, "small sizes for a smoke test (~20-30 s)")
    p.add_argument("--epochs", type=int,
                   help="training epochs before export (default 1; 0 = none)")
    p.add_argument("--examples", type=int, help="training examples (4096)")
    p.add_argument("--clients", type=int, nargs="+",
                   help="numbers of concurrent clients (default 1 4 16)")
    p.add_argument("--batch-sizes", type=int, nargs="+",
                   help="rows per request (default 1 32)")
    p.add_argument("--requests", type=int,
                   help="requests per client per cell (default 60)")
    p.add_argument("--warmup", type=int,
                   help="warm-up requests per client at the most clients, "
                   "per signature and batch (default 8)")
    p.add_argument("--ll-samples", type=int,
                   help="K of the exported log_likelihood (default 100)")
    p.add_argument("--budget", type=float,
                   help="seconds after which a cell's clients stop sending "
                   "(default 60)")
    p.add_argument("--max-batch", type=int,
                   help="the server's --max-batch (default 64)")
    p.add_argument("--max-inflight", type=int,
                   help="the server's --max-inflight (default 2)")
    args = harness.fill(p.parse_args(argv), DEFAULTS, QUICK)
    harness.positive(p, args, "examples", "requests", "warmup", "ll_samples",
                     "budget",
                     "max_batch", "max_inflight")
    if args.epochs < 0:
        p.error("--epochs must be >= 0")
    if min(args.clients) <= 0 or min(args.batch_sizes) <= 0:
        p.error("--clients and --batch-sizes must be > 0")
    if max(args.batch_sizes) > args.max_batch:
        p.error("--batch-sizes must be <= --max-batch")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.output is None and not args.quick:
        args.output = RESULTS
    report = harness.Report("keras_vae served under concurrent load",
                            children=True)
    load_before = loadavg()
    tf.get_logger().setLevel("ERROR")
    keras.utils.set_random_seed(MODEL_SEED)
    vae = baselines.compile_vae(baselines.mlp_vae(
        DIM, HIDDEN, LATENT, MODEL_SEED, name="mlp_vae", input_name="x"))
    x_train = harness.synthetic_binary(args.examples)
    _, train_s = harness.timed(lambda: args.epochs and vae.fit(
        harness.dataset(x_train, TRAIN_BATCH, shuffle_seed=0),
        epochs=args.epochs, verbose=0, shuffle=False))
    requests = harness.synthetic_binary(max(args.batch_sizes),
                                        seed=REQUEST_SEED)
    tmp = tempfile.mkdtemp(prefix="serving_load-")
    server, rows, all_errors, cut = None, [], [], []
    try:
        model_dir = os.path.join(tmp, "saved_model")
        _, export_s = harness.timed(lambda: vae.export_serving(
            model_dir, log_likelihood_samples=args.ll_samples))
        # Room for the biggest valid request, and small enough to test 413.
        max_body = max(2**20, 64 * DIM * args.max_batch)
        start = time.perf_counter()
        server = ServerProcess(model_dir, tmp, args.max_batch,
                               args.max_inflight, max_body)
        start_s = time.perf_counter() - start
        rss_ready = proc_memory_mib(server.pid)[0]
        references, checks = warm_up_and_check(
            server, vae, requests, args.batch_sizes, args.ll_samples)
        for (signature, batch), reference in references.items():
            # At full concurrency too: the threads' allocations settle.
            warm = run_cell(server, request_body(signature, requests[:batch]),
                            reference, max(args.clients), args.warmup,
                            args.budget)
            if warm["errors"]:
                raise RuntimeError(f"concurrent warm-up of {signature} at "
                                   f"batch {batch}: {warm['errors'][:3]}")
        rss_before = proc_memory_mib(server.pid)[0]
        print(f"server pid {server.pid} on port {server.port}: ready in "
              f"{start_s:.1f} s, RSS {rss_ready:.0f} MiB, after warm-up "
              f"{rss_before:.0f} MiB", flush=True)
        for signature in SIGNATURES:
            for batch in args.batch_sizes:
                body = request_body(signature, requests[:batch])
                for clients in args.clients:
                    cell = run_cell(server, body,
                                    references[signature, batch], clients,
                                    args.requests, args.budget)
                    rows.append(cell_row(signature, batch, clients, cell))
                    if cell["cut"]:
                        cut.append(f"`{signature}` batch {batch}, {clients} "
                                   f"clients")
                    all_errors += cell["errors"]
                    print("  " + " | ".join(str(c) for c in rows[-1]),
                          flush=True)
        rss_after, rss_peak = proc_memory_mib(server.pid)
        bad_lines, bad_failures, after_status = bad_request_checks(
            server, args.max_batch)
        alive = server.proc.poll() is None
    finally:
        code = server.stop() if server is not None else None
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = loadavg()
    total = sum(r[3] for r in rows)
    delta = rss_after - rss_before
    flat = delta <= FLAT_MIB
    report.add(
        f"Model: MLP VAE {DIM}-{'-'.join(map(str, HIDDEN))}-{LATENT} "
        f"(mirrored decoder, Bernoulli), trained {args.epochs} epoch(s) on "
        f"{args.examples} synthetic binary examples in {train_s:.1f} s; "
        f"export_serving (K = {args.ll_samples}) {export_s:.1f} s. Server: "
        f"examples/serve_http.py in its own process (keras_vae imported "
        f"there: {server.ready['keras_vae_imported']}), ready in "
        f"{start_s:.1f} s, --max-inflight {args.max_inflight}, --max-batch "
        f"{args.max_batch}; clients: threads of this process, one "
        f"keep-alive connection each, {args.requests} requests per client "
        f"per cell (stopped after {args.budget:g} s); requests are binary "
        f"rows as JSON numbers (`serving_default` in the row form, "
        f"`log_likelihood` in the columnar form).", "",
        f"- /proc/loadavg before: {load_before}; after: {load_after} "
        f"({os.cpu_count()} cores shared by the clients, the server and "
        "other processes: absolute numbers are noisy)", "",
        *harness.table(["signature", "batch", "clients", "requests",
                        "errors", "req/s", "rows/s", "p50 ms", "p99 ms",
                        "server CPU ms/req", "server RSS MiB after"],
                       rows, "lrrrrrrrrrr"),
        "",
        f"- errors: {len(all_errors)} of {total} requests"
        + (f" (first: {all_errors[0]})" if all_errors else ""),
        *([f"- stopped by the {args.budget:g} s budget before all "
           f"{args.requests} requests per client: " + "; ".join(cut)]
          if cut else []),
        f"- server RSS (VmRSS): {rss_ready:.0f} MiB when ready, "
        f"{rss_before:.0f} MiB after the warm-up (before), {rss_after:.0f} "
        f"MiB after the load (after): delta {delta:+.1f} MiB; peak (VmHWM) "
        f"{rss_peak:.0f} MiB; memory flat (delta <= {FLAT_MIB} MiB): "
        f"{'yes' if flat else 'NO'} ({1024 * delta / max(total, 1):+.1f} "
        f"KiB per request; one kept `serving_default` request body at "
        f"batch {max(args.batch_sizes)} would be "
        f"{len(request_body('serving_default', requests)) / 1024:.0f} KiB)",
        *[f"- {line}" for line in checks], "",
        f"Malformed requests after the load (each must get its 4xx; then a "
        f"valid request got HTTP {after_status}; server alive: "
        f"{'yes' if alive else 'NO'}, exit code after SIGTERM {code}):", "",
        "| request | status | error message (start) |", "| --- | ---: | --- |",
        *bad_lines,
        *([""] + [f"- FAILED: {f}" for f in bad_failures]
          if bad_failures else []))
    report.emit(args.output)
    return {"rows": rows, "errors": all_errors, "rss_delta_mib": delta,
            "flat": flat, "bad_request_failures": bad_failures,
            "alive": alive}


if __name__ == "__main__":
    result = main()
    sys.exit(0 if not result["errors"] and result["flat"]
             and not result["bad_request_failures"] and result["alive"]
             else 1)
