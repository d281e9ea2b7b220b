"""Train-step speed of VAEModel against the leanest hand-written step.

One process, one machine, the user's-story MLP (784-512-256-(z 32), mirrored
decoder, Bernoulli likelihood, Adam 1e-3), 8192 synthetic binary vectors
through the same cached `tf.data` pipeline. Contestants, each XLA-compiled
(`jit_compile=True`) and trained by `fit` (`baselines.py`):

```none
lean       the keras.io pattern stripped to the bone: a keras.Model whose
           train_step draws eps with tf.random.normal, computes BCE + analytic
           KL, applies Adam and returns the loss; no metric trackers
keras.io   the keras.io pattern as published: `Sampling` layer with
           keras.random noise, three Mean trackers
VAEModel   keras_vae.VAEModel, its default compile (ELBO, K = 1)
```

and, to find where VAEModel's time goes, VAEModel with parts of its step
removed (a subclass overriding the step's pieces; the package is not
changed), and with the non-finite skip's fallback:

```none
- skip guard      no mask that keeps the old weights after a non-finite loss
- counters        no non-finite counters
- trackers        no Mean trackers (returns the loss only)
copy-and-select   an Adam subclass: the skip copies every weight and slot
                  and selects them back (models/_nonfinite.py's fallback
                  for optimizers it does not know), not masked writes
```

Timing: after one warm-up epoch each, the contestants alternate epoch by
epoch (so machine load hits them alike), `--epochs` epochs each, each
timed around `fit(epochs=1)`. The ratios are of the best epochs (against
`lean` and `keras.io` measured in the same run); the median is shown too.
On the shared 2-core machine where this was written, whole epochs run in
one of two speed modes, whatever the model (at batch 1024 about 45 or 80
ms a step, the lean step as much as VAEModel's): a median of a few epochs
measures which mode each contestant happened to get, the best epoch
measures the step. `--quick` times only the
last ablation (all three pieces removed, which runs every override) and
leaves out keras.io and the copy-and-select skip.

    python benchmarks/step_parity.py [--epochs 3] [--batch-sizes 128 1024] [--quick]
"""

import sys

import harness  # first: it sets TF's log level before TF is imported
import keras
import keras_vae

import baselines

D, HIDDEN, LATENT = 784, (512, 256), 32
ABLATIONS = (("skip guard",), ("skip guard", "counters"),
             ("skip guard", "counters", "trackers"))
# The pieces of VAEModel's train step the ablation overrides: if the core
# renames one, the override would silently do nothing, so check they exist.
HOOKS = ("_apply_update", "_count_nonfinite", "_update_metrics")


class _Ablated(keras_vae.VAEModel):
    """VAEModel with parts of its train step removed (profiling only)."""

    drop = ()

    def _apply_update(self, grads, weights, loss):
        if "skip guard" in self.drop:
            self.optimizer.apply_gradients(zip(grads, weights))
        else:
            super()._apply_update(grads, weights, loss)

    def _count_nonfinite(self, loss, values):
        if "counters" not in self.drop:
            super()._count_nonfinite(loss, values)

    def _update_metrics(self, loss, values, batch):
        if "trackers" in self.drop:
            return {"loss": loss}
        return super()._update_metrics(loss, values, batch)


class AdamSubclass(keras.optimizers.Adam):
    """Adam under another type: VAEModel's skip takes its fallback."""


def vae_model(drop=(), optimizer=None):
    cls = keras_vae.VAEModel
    if drop:
        cls = type("Ablated", (_Ablated,), {"drop": drop})
    vae = baselines.mlp_vae(D, HIDDEN, LATENT, 0, cls)
    if optimizer is None:
        return baselines.compile_vae(vae)
    return baselines.compile_vae(vae, optimizer=optimizer)


def contestants(ablations, full=True):
    out = {
        "lean": lambda: baselines.hand_written(D, HIDDEN, LATENT, 0, lean=True),
        "keras.io": lambda: baselines.hand_written(D, HIDDEN, LATENT, 0),
        "VAEModel": vae_model,
    }
    if not full:
        del out["keras.io"]
    if full and ablations:
        out["VAEModel, copy-and-select skip"] = lambda: vae_model(
            optimizer=AdamSubclass(baselines.LEARNING_RATE))
    for drop in ablations:
        out["VAEModel - " + ", ".join(drop)] = lambda d=drop: vae_model(d)
    return out


def measure(batch, epochs, data, ablations, full=True):
    ds = harness.dataset(data, batch, cache=True, drop_remainder=True)
    models = {}
    for name, make in contestants(ablations, full).items():
        keras.utils.set_random_seed(0)
        models[name] = make()
    timings = harness.take_turns(
        {name: (lambda m=m: m.fit(ds, epochs=1, verbose=0))
         for name, m in models.items()},
        rounds=epochs)
    n = (len(data) // batch) * batch
    return {name: (n / t.best, n / t.median) for name, t in timings.items()}


def main(argv=None):
    p = harness.parser(__doc__, "1 epoch, 1024 examples, batch 128, only "
                       "the last ablation, no keras.io (its step runs in "
                       "throughput.py's smoke run) (a smoke run)")
    p.add_argument("--epochs", type=int, default=7)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--examples", type=int, default=8192)
    p.add_argument("--no-profile", action="store_true",
                   help="skip the ablated VAEModel variants")
    args = p.parse_args(argv)
    harness.positive(p, args, "epochs", "examples")
    missing = [h for h in HOOKS if not hasattr(keras_vae.VAEModel, h)]
    if missing:
        raise SystemExit(f"VAEModel no longer has {missing}: update _Ablated")
    ablations = () if args.no_profile else ABLATIONS
    if args.quick:
        args.epochs, args.examples, args.batch_sizes = 1, 1024, [128]
        ablations = ablations[-1:]
    report = harness.Report("Train step against the leanest hand-written one")
    data = harness.synthetic_binary(args.examples)
    report.add(
        f"MLP 784-512-256-(z 32), Adam, XLA, {args.examples} synthetic "
        f"binary examples, {args.epochs} alternating epochs each: examples/s "
        "of the best epoch (the ratios) and of the median one", "")
    rows = []
    for batch in args.batch_sizes:
        rates = measure(batch, args.epochs, data, ablations,
                        full=not args.quick)
        for name, (best, median) in rates.items():
            rows.append([batch, name, f"{best:,.0f}", f"{median:,.0f}"] + [
                f"{best / rates[base][0]:.2f}x" if base in rates else "—"
                for base in ("lean", "keras.io")])
            print(f"  batch {batch} {name}: best {best:,.0f}, median "
                  f"{median:,.0f} examples/s", flush=True)
    report.add(*harness.table(
        ["batch", "step", "examples/s, best", "median", "vs lean",
         "vs keras.io"], rows, "rlrrrr"))
    report.emit(args.output)
    return rows


if __name__ == "__main__":
    sys.exit(main() and 0)
