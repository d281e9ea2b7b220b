"""Training speed with and without XLA under `tf.distribute.MirroredStrategy`.

The user's-story MLP VAE (784-512-256-32, mirrored decoder, Bernoulli,
Adam 1e-3) on synthetic binary data, in four variants that take turns
epoch by epoch in one process:

```none
single device, no XLA     Keras' graph step
single device, XLA        Keras' jitted step (VAEModel's default)
Mirrored x2, no XLA       Keras' distributed step (what Keras falls back to)
Mirrored x2, XLA          keras_vae.models.replica_step: each replica's
                          forward/backward compiled, all-reduce and update
                          outside
```

The two replicas are 2 logical CPU devices of the one physical CPU (they
share its cores), so this measures what XLA keeps under the strategy, not
a speed-up from more hardware. The global batch is the same in every
variant (the mirrored replicas get half each). steps/s from the median
timed epoch (`harness.EpochTimer`), after one warm-up epoch (tracing, XLA
compilation).

    python benchmarks/distributed_xla.py               # ~2-4 min on 2 cores
    python benchmarks/distributed_xla.py --quick       # smoke test

Logical devices must be set before TensorFlow starts: run as a script, it
sets them first; `main(argv)` called from another program (the `--quick`
test, where TensorFlow already runs) runs the script in a child process.
"""

import os
import subprocess
import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import tensorflow as tf

import baselines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The user's story; --quick: a small MLP (the smoke run checks the code
# paths, its compile times would otherwise be most of CI's wait).
DEFAULTS = {"epochs": 3, "examples": 8192, "batch_size": 256,
            "shape": (784, (512, 256), 32)}
QUICK = {"epochs": 1, "examples": 256, "batch_size": 64,
         "shape": (64, (32,), 4)}
VARIANTS = (("single device", False), ("single device", True),
            ("Mirrored x2", False), ("Mirrored x2", True))


def _set_logical_devices():
    """Two logical CPUs (before TensorFlow starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


def vae_class():
    """`VAEModel` once it has the replica hook; until then the test suite's
    prototype subclass (tests/models/replica_xla_vae.py)."""
    import keras_vae

    if hasattr(keras_vae.VAEModel, "compute_gradients"):
        return keras_vae.VAEModel
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.models.replica_xla_vae import ReplicaXLAVAE

    return ReplicaXLAVAE


def build(strategy, jit_compile, shape):
    with strategy.scope():
        keras.utils.set_random_seed(1)
        vae = baselines.mlp_vae(*shape, seed=1, cls=vae_class())
        baselines.compile_vae(vae, jit_compile=jit_compile)
    return vae


def measure(args):
    x = harness.synthetic_binary(args.examples, dim=args.shape[0])
    x = harness.whole_batches(x, args.batch_size)
    steps = len(x) // args.batch_size
    data = harness.dataset(x, args.batch_size, cache=True,
                           drop_remainder=True)
    strategies = {
        "single device": tf.distribute.get_strategy(),  # the default
        "Mirrored x2": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }
    runs = {}
    for name, jit in VARIANTS:
        vae = build(strategies[name], jit, args.shape)
        timer = harness.EpochTimer()
        (_, first) = harness.timed(
            lambda: vae.fit(data, epochs=1, shuffle=False, verbose=0))
        runs[(name, jit)] = (vae, timer, first)
    for _ in range(args.epochs):  # the variants take turns, epoch by epoch
        for vae, timer, _ in runs.values():
            vae.fit(data, epochs=1, shuffle=False, verbose=0,
                    callbacks=[timer])
    rows, rate = [], {}
    for (name, jit), (vae, timer, first) in runs.items():
        wall = sorted(timer.times)[len(timer.times) // 2]
        cpu = sorted(timer.cpu_times)[len(timer.cpu_times) // 2]
        rate[(name, jit)] = steps / wall
        uses = getattr(vae.train_function, "uses_xla", None)
        compiled = (uses() if uses else bool(vae.jit_compile))
        rows.append([
            name, vae.distribute_strategy.num_replicas_in_sync,
            "XLA" if jit else "no XLA", "yes" if compiled else "no",
            f"{first:.1f}", f"{steps / wall:.1f}", f"{steps / cpu:.1f}",
        ])
    return rows, rate, steps


def main(argv=None, in_process=False):
    """Runs the benchmark; `in_process` (the script's own run) configures
    the logical devices here, else (called from another program, where
    TensorFlow may run already) a child process runs the script."""
    p = harness.parser(__doc__, "tiny sizes, one timed epoch")
    p.add_argument("--epochs", type=int)
    p.add_argument("--examples", type=int)
    p.add_argument("--batch-size", type=int)
    args = harness.fill(p.parse_args(argv), DEFAULTS, QUICK)
    harness.positive(p, args, "epochs", "examples", "batch_size")
    if not in_process:
        argv = list(sys.argv[1:] if argv is None else argv)
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep
                   + os.environ.get("PYTHONPATH", ""))
        subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                       check=True, env=env, timeout=1800)
        return
    _set_logical_devices()
    report = harness.Report("XLA under tf.distribute.MirroredStrategy")
    rows, rate, steps = measure(args)
    dim, hidden, latent = args.shape
    report.add(
        f"- model: MLP VAE {dim}-{'-'.join(map(str, hidden))}-{latent} "
        f"(mirrored decoder), Bernoulli, Adam; global batch {args.batch_size}, "
        f"{steps} steps per epoch, median of {args.epochs} timed epoch(s)",
        "- Mirrored x2: 2 logical CPU devices sharing one CPU's cores",
        "",
        *harness.table(
            ["strategy", "replicas", "asked", "step compiled", "first epoch s",
             "steps/s", "steps per CPU s"], rows, "lrlllrr"),
        "",
        "- XLA / no XLA, single device: "
        f"{rate[('single device', True)] / rate[('single device', False)]:.2f}x",
        "- XLA / no XLA, Mirrored x2: "
        f"{rate[('Mirrored x2', True)] / rate[('Mirrored x2', False)]:.2f}x",
        "- Mirrored x2 XLA / single device XLA: "
        f"{rate[('Mirrored x2', True)] / rate[('single device', True)]:.2f}x",
    )
    report.emit(args.output)


if __name__ == "__main__":
    main(in_process=True)
