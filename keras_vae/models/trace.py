"""The forward trace of a VAEModel: one record of every latent level.

`run_trace` is the single forward pass through a VAE's latent levels that
training, `elbo`, `log_likelihood`, `encode`, `posterior_mode`,
`reconstruct`, `sample` and every exported signature read. It runs the
levels in the order the graph imposes, for K samples per example, in one
of three modes:

```none
"sample"  z_k ~ q(z | x) per level (K draws, folded into the batch axis,
          sample-major); log q(z_k | x), log p(z_k), KL(q || p) and the
          KLRegularizer's penalty; then the decoder on the K·B rows and,
          given targets, log p(x | z_k)
"mode"    each level at its posterior mode (the mean; through the flow
          for IAFSample; the one-hot argmax for categoricals); no KL
"prior"   ancestral draws z ~ p(z) level by level (a level whose prior is
          computed by the model reads the earlier draws), then the decoder
```

It returns a `Trace`, a frozen record whose per-level entries are
`LevelTrace`s; objectives (`keras_vae.objectives`) read it and nothing else.

Seeds: with `seed=None` every sampler draws from its own
`keras.random.SeedGenerator` (the training stream, saved with the model);
with a seed (an int tensor of shape (2,)) level i draws with
`keras_vae.random.derive_seed(seed, i)`, a fixed function of it.
"""

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from keras_vae import objectives
from keras_vae.models import missing as missing_lib
from keras_vae.models.gradient_tap import GradientTap
from keras_vae.objectives.kl import kl_divergence_and_kind
from keras_vae.models.graph import call_as_list
from keras_vae.random import derive_seed

SAMPLE, MODE, PRIOR = "sample", "mode", "prior"
MODES = (SAMPLE, MODE, PRIOR)


@dataclasses.dataclass(frozen=True)
class LevelTrace:
    """What one latent level did in a trace.

    Attributes:
        name: the sampling layer's name.
        params: posterior parameters (`(loc, scale)` or `(logits,)`), per
            row of the level's stage (B rows; K·B when the level reads an
            earlier level's z); None in "prior" mode.
        prior_params: the prior's parameters when the model computes them
            (a conditional or hierarchical prior), else None.
        z: the latent, `(K·B, *event)` sample-major in "sample" mode,
            `(B, *event)` otherwise.
        log_q: log q(z | x) at z, `(K, B)` ("sample" mode only).
        log_p: log p(z) at z, `(K, B)` ("sample" and "prior" modes).
        kl: KL(q(z|x) ‖ p(z)) per example `(B,)`: analytic when TFP has
            it, else the sampled log q - log p averaged over the K draws
            ("sample" mode only).
        penalty: the level's `KLRegularizer` penalty, a scalar: β · KL
            (batch mean), or its free-bits / capacity form.
        kl_weight: β, the `KLRegularizer`'s weight (a variable).
        sampler: the level's sampling layer (`LatentSample`): its
            `posterior(params)` and `reparameterized` flag.
        z_deps: indices of the earlier levels whose z this level's
            posterior reads (its parents).
        analytic_kl: whether `kl` is TFP's closed form (differentiable in
            the posterior parameters without looking at z).
        z_tap: the level's `GradientTap` when the trace was run with
            `gradient_taps=True` (z went through it), else None.
    """

    name: str
    params: Optional[tuple]
    prior_params: Optional[tuple]
    z: Any
    log_q: Any = None
    log_p: Any = None
    kl: Any = None
    penalty: Any = None
    kl_weight: Any = 1.0
    sampler: Any = None
    z_deps: tuple = ()
    analytic_kl: bool = False
    z_tap: Any = None


@dataclasses.dataclass(frozen=True)
class Trace:
    """One forward pass of a VAE (see the module doc).

    Attributes:
        mode: "sample", "mode" or "prior".
        num_samples: K.
        levels: a `LevelTrace` per latent level, in sampling order.
        decoder_params: the likelihood parameters, `(K·B, ...)`
            sample-major (None when the trace did not decode).
        log_px_z: log p(x | z_k), `(K, B)`, when targets were given.
        inputs: the model inputs (a list in `model.inputs` order, B rows),
            for objectives whose baselines read x.
        training: whether the trace ran in training mode (objectives
            update their running statistics only then).
    """

    mode: str
    num_samples: int
    levels: tuple
    decoder_params: Any = None
    log_px_z: Any = None
    inputs: Any = None
    training: bool = False

    @property
    def kl(self):
        """Σ_levels KL, per example (B,)."""
        return tf.add_n([level.kl for level in self.levels])

    @property
    def penalty(self):
        """Σ_levels penalty, a scalar: what the ELBO loss adds to the
        reconstruction term."""
        return tf.add_n([level.penalty for level in self.levels])

    @property
    def log_pz(self):
        """Σ_levels log p(z_k), (K, B)."""
        return tf.add_n([level.log_p for level in self.levels])

    @property
    def log_qz(self):
        """Σ_levels log q(z_k | x), (K, B)."""
        return tf.add_n([level.log_q for level in self.levels])

    @property
    def reconstruction(self):
        """-(1/K) Σ_k log p(x | z_k), per example (B,)."""
        return -tf.reduce_mean(self.log_px_z, axis=0)

    @property
    def elbo(self):
        """The K-sample ELBO estimate per example (B,), β = 1."""
        return objectives.elbo(self.log_px_z, self.kl)

    def per_sample(self, rows):
        """`(K·B, ...)` sample-major rows of this trace (a z, the decoder
        params or a function of them) as `(K, B, ...)` ("sample" mode)."""
        batch = tf.shape(self.log_px_z if self.log_px_z is not None
                         else self.levels[0].log_q)[1]
        return unfold(rows, self.num_samples, batch)

    def unfolded_z(self, index):
        """Level `index`'s z as `(K, B, *event)` ("sample" mode)."""
        return self.per_sample(self.levels[index].z)

    def log_weights(self, weighted=False):
        """Importance log weights, (K, B).

        ```none
        log w_k = log p(x | z_k) + Σ_levels β_l (log p(z_k) - log q(z_k | x))
        ```

        with β_l = 1 (`weighted=False`, the bound and log p(x)) or each
        level's `KLRegularizer` weight (`weighted=True`, as IWAE trains
        under KL warm-up).
        """
        total = self.log_px_z
        for level in self.levels:
            beta = level.kl_weight if weighted else 1.0
            total = total + beta * (level.log_p - level.log_q)
        return total


def run_trace(model, inputs, targets=None, *, num_samples=1, mode=SAMPLE,
              training=False, seed=None, decode=True, num_rows=None,
              latent_shapes=None, gradient_taps=False,
              posterior_params=None):
    """Runs the levels of `model` (a `VAEModel`) and returns a `Trace`.

    Args:
        model: the `VAEModel`.
        inputs: the model inputs (a tensor, a list in `model.inputs` order,
            or a dict by Input name). In "prior" mode, the inputs that
            generation reads (`model.graph.condition_index`); the others
            may be None.
        targets: the data scored by the likelihood, giving `log_px_z`
            (optional; "sample" mode).
        num_samples: K (a Python int).
        mode: "sample", "mode" or "prior".
        training: passed to the layers.
        seed: None (the samplers' own streams) or an int tensor of shape
            (2,) (fixed draws: level i uses `derive_seed(seed, i)`).
            Required in "prior" mode.
        decode: run the decoder (default True).
        num_rows: rows to draw in "prior" mode.
        latent_shapes: in "prior" mode, the shape of one z (no batch
            axis) per level whose shape is not known statically, as a dict
            level index -> shape.
        gradient_taps: pass each level's z through a `GradientTap`
            ("sample" mode), for objectives that rescale the gradient
            reaching the encoder through z (DReG).
        posterior_params: dict level index -> posterior parameters used
            in place of the encoder's for that level (per-example refined
            posteriors, `VAEModel.elbo(..., refine_steps=N)`).

    With a model compiled with `missing_values`, the inputs' missing
    entries are filled (`keras_vae.models.missing`) and log p(x | z) scores
    the observed entries of the targets only.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}. Received: {mode!r}")
    if mode == PRIOR:
        return _prior_trace(model, inputs, seed, decode, num_rows,
                            latent_shapes or {})
    k = num_samples if mode == SAMPLE else 1
    # Tensors: a stage may get a model input beside an earlier level's z.
    xs = [tf.convert_to_tensor(t) for t in model._input_list(inputs)]
    missing = getattr(model, "missing_values", None)
    mask = None
    if missing is not None:
        xs = [missing_lib.fill(t, missing) for t in xs]
        if targets is not None:
            mask = missing_lib.observed(targets, missing)
            targets = missing_lib.fill(targets, missing, mask)
    batch = tf.shape(xs[0])[0]
    tiled = {}

    def model_input(j, repeat):
        if not repeat or k == 1:
            return xs[j]
        if j not in tiled:
            tiled[j] = repeat_rows(xs[j], k)
        return tiled[j]

    zs, records = [], []
    for i, level in enumerate(model.levels):
        rows_k = bool(level.z_deps) and k > 1  # the stage runs on K*B rows
        kl_layer = level.kl
        p = None
        static = all(d is not None for d in kl_layer.event_shape)
        if mode == SAMPLE and not level.num_prior_params and static:
            # Before the stage's call on the data: a VampPrior runs the
            # stage on its pseudo-inputs, and the layer losses (activity
            # regularisers) kept for the objective must be the data's.
            p = kl_layer.prior_distribution()
        inputs_i = [model_input(j, rows_k) for j in level.input_index]
        inputs_i += [zs[d] for d in level.z_deps]
        outputs = call_as_list(level.stage, inputs_i, training)
        n, m = level.num_params, level.num_prior_params
        params = tuple(outputs[:n])
        if posterior_params is not None and i in posterior_params:
            params = tuple(posterior_params[i])
        prior_params = tuple(outputs[n:n + m]) or None
        context = outputs[n + m:]
        if mode == MODE:
            zs.append(level.sampler.mode(list(params), context))
            records.append(LevelTrace(
                name=level.name, params=params, prior_params=prior_params,
                z=zs[-1], kl_weight=kl_layer.kl_weight,
                sampler=level.sampler, z_deps=tuple(level.z_deps),
            ))
            continue
        level_seed = None if seed is None else derive_seed(seed, i)
        z, log_q = level.sampler.draw_latent(
            list(params), context, 1 if rows_k else k, level_seed,
            training=training,
        )
        tap = None
        if gradient_taps:
            tap = GradientTap()
            z = tap(z)
        zs.append(z)
        q = level.sampler.posterior(list(params))
        if p is None:
            p = kl_layer.prior_distribution(
                prior_params, kl_layer.event_shape_of(params)
            )
        # Shapes: per row of the stage, then (K, B).
        z_eval = z if rows_k else unfold(z, k, batch)
        if log_q is not None and not rows_k:
            log_q = tf.reshape(log_q, (k, batch))
        kl, analytic = kl_divergence_and_kind(q, p, z_eval, log_q)
        if log_q is None:
            log_q = q.log_prob(z_eval)
        lp = p.log_prob(z_eval)
        per_dim = None
        if kl_layer.free_bits > 0.0 and not level.sampler.sampled_kl:
            per_dim = objectives.kl_per_dimension(q, p)
        if rows_k:
            kl = tf.reduce_mean(tf.reshape(kl, (k, batch)), 0)
            if per_dim is not None:
                per_dim = tf.reduce_mean(unfold(per_dim, k, batch), 0)
        records.append(LevelTrace(
            name=level.name, params=params, prior_params=prior_params, z=z,
            log_q=tf.reshape(log_q, (k, batch)),
            log_p=tf.reshape(lp, (k, batch)), kl=kl,
            penalty=kl_layer.penalty(kl, per_dim),
            kl_weight=kl_layer.kl_weight, sampler=level.sampler,
            z_deps=tuple(level.z_deps), analytic_kl=analytic, z_tap=tap,
        ))

    decoder_params = log_px_z = None
    if decode:
        graph = model.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [model_input(j, True) for j in graph.decoder_input_index]
        decoder_params = model.decoder(decoder_in, training=training)
        if targets is not None and mode == SAMPLE:
            log_px_z = tf.reshape(
                model.likelihood.log_prob(
                    repeat_rows(targets, k), decoder_params,
                    None if mask is None else repeat_rows(mask, k),
                ),
                (k, batch),
            )
    return Trace(mode=mode, num_samples=k, levels=tuple(records),
                 decoder_params=decoder_params, log_px_z=log_px_z,
                 inputs=xs, training=bool(training))


def _prior_trace(model, inputs, seed, decode, num_rows, latent_shapes):
    """Ancestral draws from p(z...) (and the decoder's parameters)."""
    if seed is None:
        raise ValueError("A trace in 'prior' mode needs a `seed`.")
    xs = (model._input_list(inputs) if inputs is not None
          else [None] * len(model.inputs))
    zs, records = [], []
    for i, level in enumerate(model.levels):
        level_seed = derive_seed(seed, i)
        prior_params = None
        if level.prior_model is not None:
            prior_in = [xs[j] for j in level.prior_input_index]
            prior_in += [zs[d] for d in level.prior_z_deps]
            prior_params = tuple(
                call_as_list(level.prior_model, prior_in, False)
            )
            p = level.kl.prior_distribution(prior_params)
            z = p.sample(seed=level_seed)
        else:
            shape = latent_shapes.get(i, level.z_shape)
            if not tf.is_tensor(shape):
                if any(d is None for d in shape):
                    raise ValueError(
                        f"The latent '{level.name}' has shape (batch, "
                        f"*{level.z_shape}), unknown until run time: pass "
                        "its `latent_shape` to draw from the prior."
                    )
                shape = tuple(shape)
            p = level.kl.prior_distribution(event_shape=shape)
            z = p.sample(num_rows, seed=level_seed)
        z = tf.cast(z, tf.float32)
        zs.append(z)
        records.append(LevelTrace(
            name=level.name, params=None, prior_params=prior_params, z=z,
            log_p=p.log_prob(z)[None], kl_weight=level.kl.kl_weight,
            sampler=level.sampler, z_deps=tuple(level.z_deps),
        ))
    decoder_params = None
    if decode:
        graph = model.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [xs[j] for j in graph.decoder_input_index]
        decoder_params = model.decoder(decoder_in, training=False)
    return Trace(mode=PRIOR, num_samples=1, levels=tuple(records),
                 decoder_params=decoder_params)


def unfold(t, k, batch):
    """(K*B, ...) sample-major rows -> (K, B, ...)."""
    return tf.reshape(t, tf.concat([[k, batch], tf.shape(t)[1:]], 0))


def repeat_rows(t, k):
    """`k` copies of a batch stacked along axis 0 (sample-major, as z)."""
    t = tf.convert_to_tensor(t)
    if k == 1:
        return t
    return tf.tile(t, tf.concat([[k], tf.ones_like(tf.shape(t)[1:])], 0))
