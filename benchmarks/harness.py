"""What every benchmark shares: machine line, data, CPU time, timing, report.

The scripts run as `python benchmarks/x.py`, so this module imports as
`harness` (the hand-written comparison models are in `baselines.py`).

```none
machine   machine_lines(): date, CPU model and cores, Python / TF / Keras /
          TFP / keras_vae versions, platform, load average
data      digits(): scikit-learn's 8x8 digits, stochastically binarized,
          a fixed 80/20 split; synthetic_binary(): low-rank binary vectors;
          dataset(): the tf.data pipeline
CPU time  own_cpu_seconds(), CpuWatch (the share of the machine other
          processes used while we measured), peak_rss_mib()
timing    EpochTimer (wall and CPU time per epoch), take_turns() (calls
          alternate round by round, so machine load falls on all alike),
          Timing (first call, median of the timed calls)
report    Report: a markdown report, machine block first, run time, load
          and other processes' share last; printed and written to --output
```
"""

import argparse
import dataclasses
import datetime
import os
import platform
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402

BUSY_LOAD_PER_CORE = 0.25   # 1-min load per core above which we warn
BUSY_SHARE = 0.05           # others' share of the CPU above which we warn


# ------------------------------------------------------------------ machine
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_line(when):
    try:
        load = os.getloadavg()
    except OSError:
        return f"load average {when}: unavailable"
    line = (f"load average {when} (1/5/15 min): "
            + " ".join(f"{v:.2f}" for v in load))
    if load[0] > BUSY_LOAD_PER_CORE * (os.cpu_count() or 1):
        line += " -- the machine is busy: timings are noisy"
    return line


def machine_lines():
    import tensorflow_probability as tfp

    gpus = tf.config.list_physical_devices("GPU")
    return [
        f"date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores"
        + (f", GPUs: {len(gpus)}" if gpus else ", no GPU"),
        f"python {platform.python_version()}, tensorflow {tf.__version__}, "
        f"keras {keras.__version__}, tfp {tfp.__version__}, "
        f"keras_vae {keras_vae.__version__}",
        f"platform: {platform.platform()}",
        load_line("at the start"),
    ]


# ----------------------------------------------------------------- CPU time
def own_cpu_seconds(children=False):
    """This process's CPU time, all threads (`children`: plus that of the
    child processes it has waited for, e.g. a server it started)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    seconds = usage.ru_utime + usage.ru_stime
    if children:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds += usage.ru_utime + usage.ru_stime
    return seconds


def _machine_busy_seconds():
    """CPU seconds all processes have spent busy since boot (Linux), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """How much of the machine other processes used while we measured:
    (machine busy CPU - our CPU) / (wall time x cores). With `children`,
    our CPU includes the child processes waited for before `stop()`."""

    def __init__(self, children=False):
        self.children = children
        self._start = self._now()
        self._end = None

    def _now(self):
        return (time.perf_counter(), _machine_busy_seconds(),
                own_cpu_seconds(self.children))

    def stop(self):
        self._end = self._now()
        return self

    def line(self, what):
        wall0, busy0, own0 = self._start
        wall1, busy1, own1 = self._end or self._now()
        if busy0 is None or busy1 is None:
            return f"other processes' CPU during {what}: unknown"
        others = max(0.0, (busy1 - busy0) - (own1 - own0))
        share = others / (max(wall1 - wall0, 1e-9) * (os.cpu_count() or 1))
        line = (f"other processes used {100 * share:.0f}% of the machine's "
                f"CPU during {what}")
        return line + (" -- timings are noisy" if share > BUSY_SHARE else "")


def peak_rss_mib():
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


# --------------------------------------------------------------------- data
def digits(seed=0, split_seed=0, image=False, test_fraction=0.2):
    """scikit-learn's 8x8 digits (no download): grey levels / 16, a fixed
    split (1437 train / 360 test), then pixel ~ Bernoulli(grey level) with
    `default_rng(seed)`, train first. Rows of 64, or (8, 8, 1) images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x = load_digits().data.astype("float32") / 16.0
    if image:
        x = x.reshape(-1, 8, 8, 1)
    train, test = train_test_split(x, test_size=test_fraction,
                                   random_state=split_seed)
    rng = np.random.default_rng(seed)
    return tuple((rng.random(a.shape) < a).astype("float32")
                 for a in (train, test))


def synthetic_binary(num_examples, seed=0, dim=784, factors=16,
                     weight_scale=0.5):
    """Binary vectors with low-rank structure (so a VAE has work to do):

    ```none
    x_d ~ Bernoulli(sigmoid(f @ W + b)_d),  f ~ N(0, I_factors)
    ```
    """
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((num_examples, factors))
    w = weight_scale * rng.standard_normal((factors, dim))
    b = rng.standard_normal(dim)
    probs = 1.0 / (1.0 + np.exp(-(f @ w + b)))
    return (rng.random(probs.shape) < probs).astype("float32")


def dataset(x, batch_size, shuffle_seed=None, cache=False,
            drop_remainder=False):
    """x only (the target is x): [shuffle] -> [cache] -> batch -> prefetch."""
    ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle_seed is not None:
        ds = ds.shuffle(len(x), seed=shuffle_seed,
                        reshuffle_each_iteration=True)
    if cache:
        ds = ds.cache()
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(
        tf.data.AUTOTUNE)


def whole_batches(x, batch_size):
    """The first rows of x that make whole batches: one batch shape means
    one XLA compilation of a train step instead of three (full batch, last
    batch, and the shape-generic retrace Keras makes after two shapes)."""
    return x[:max(batch_size, len(x) // batch_size * batch_size)]


# ------------------------------------------------------------------- timing
class EpochTimer(keras.callbacks.Callback):
    """Wall time and process CPU time of every epoch (CPU time, the work
    done, is much less disturbed than wall time by other processes)."""

    def __init__(self):
        super().__init__()
        self.times, self.cpu_times = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), own_cpu_seconds())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._start
        self.times.append(time.perf_counter() - wall)
        self.cpu_times.append(own_cpu_seconds() - cpu)


@dataclasses.dataclass
class Timing:
    first: float = 0.0                 # first call: tracing, compilation
    walls: list = dataclasses.field(default_factory=list)
    cpus: list = dataclasses.field(default_factory=list)

    @property
    def median(self):
        return statistics.median(self.walls)

    @property
    def median_cpu(self):
        return statistics.median(self.cpus)

    @property
    def best(self):
        """The fastest timed call: the cost of the work itself when the
        machine's state, not the work, makes calls slow at times."""
        return min(self.walls)


def timed(fn):
    """(fn(), wall seconds)."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def take_turns(calls, rounds, per_round=1, warmup=0, budget=None,
               min_calls=1, max_calls=None, first=None):
    """Times `calls` (name -> fn) taking turns: each first call alone (its
    time is `Timing.first`; `first`, name -> fn, replaces it, e.g. a call
    on a slice that compiles what the full call needs), `warmup` untimed
    calls, then `rounds` rounds in which each fn runs `per_round` timed
    calls in turn (at most `max_calls` in all; fewer once they took
    `budget` seconds, after at least `min_calls`). Returns {name: Timing}."""
    out = {name: Timing() for name in calls}
    for name, fn in calls.items():
        _, out[name].first = timed((first or calls)[name])
        for _ in range(warmup):
            fn()
    for _ in range(rounds):
        for name, fn in calls.items():
            t = out[name]
            for _ in range(per_round):
                done = len(t.walls)
                if (max_calls is not None and done >= max_calls) or (
                        budget is not None and sum(t.walls) >= budget
                        and done >= min_calls):
                    break
                cpu = own_cpu_seconds()
                _, wall = timed(fn)
                t.walls.append(wall)
                t.cpus.append(own_cpu_seconds() - cpu)
    return out


# ------------------------------------------------------------------- report
def parser(doc, quick_help):
    """An ArgumentParser with the flags every script has."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--output", help="also write the markdown report here")
    return p


def fill(args, defaults, quick):
    """Arguments left at None take `quick[key]` with --quick, else
    `defaults[key]`."""
    for key, value in (quick if args.quick else defaults).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def compile_kwargs(quick):
    """Extra `compile()` arguments of a --quick run that does not measure
    speed: an eager train step, which skips tracing and compiling it (most
    of a smoke run's time; the inference passes stay compiled). A smoke run
    checks the script's own code; the full run and the package's tests
    check the compiled step."""
    return {"jit_compile": False, "run_eagerly": True} if quick else {}


def positive(p, args, *names):
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")


def mean_sd(values, digits=2):
    """"m ± s" over seeds (sample sd), or the one value."""
    v = np.asarray(values, np.float64)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(header, rows, align=None):
    """Markdown table lines; `align` a string of 'l'/'r' per column."""
    align = align or "l" + "r" * (len(header) - 1)
    return ["| " + " | ".join(header) + " |",
            "|" + "".join(" --- |" if a == "l" else " ---: |"
                          for a in align),
            *["| " + " | ".join(str(c) for c in row) + " |" for row in rows]]


class Report:
    """A markdown report: title and machine block (printed at once), the
    body, then run time, load and other processes' CPU share."""

    def __init__(self, title, children=False):
        self.start = time.perf_counter()
        self.watch = CpuWatch(children)
        self.lines = [f"# {title}", ""] + [f"- {m}" for m in machine_lines()]
        print("\n".join(self.lines), flush=True)
        self.lines.append("")
        self._printed = len(self.lines)

    def add(self, *lines):
        self.lines += lines
        return self

    def emit(self, output=None):
        self.watch.stop()
        self.lines += [
            "",
            f"- total run time: {time.perf_counter() - self.start:.0f} s, "
            f"peak RSS {peak_rss_mib():.0f} MiB",
            f"- {load_line('at the end')}",
            f"- {self.watch.line('the run')}",
        ]
        text = "\n".join(self.lines) + "\n"
        print("\n".join(self.lines[self._printed:]), flush=True)
        if output:
            with open(output, "w") as f:
                f.write(text)
            print(f"wrote {output}")
        return text
