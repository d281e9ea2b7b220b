"""The forward trace of a VAEModel: one record of every latent level.

`run_trace` is the single forward pass through a VAE's latent levels that
training, `elbo`, `log_likelihood`, `encode`, `posterior_mode`,
`reconstruct`, `sample` and every exported signature read. It runs the
levels in the order the graph imposes, for K samples per example, in one
of three modes:

```none
"sample"  z_k ~ q(z | x) per level (K draws, folded into the batch axis,
          sample-major); log q(z_k | x), log p(z_k) and KL(q || p); then
          the decoder on the K·B rows and, given targets, log p(x | z_k)
"mode"    each level at its posterior mode (the mean; through the flow
          for IAFSample; the one-hot argmax for categoricals; the
          quantised features for a quantizer); no KL
"prior"   ancestral draws z ~ p(z) level by level (a level whose prior is
          computed by the model reads the earlier draws), then the decoder
```

A quantized level (`keras_vae.models.quantized`) is deterministic: its
K draws are the one quantizer output, log q = 0, log p = -log K per
position and the KL log K per position; it has no "prior" mode.

It returns a `Trace`, a frozen record of the forward pass and nothing more
(whose per-level entries are `LevelTrace`s); objectives
(`keras_vae.objectives`) read it and compute what they add themselves
(the `KLRegularizer` penalties, control variates, discriminator terms).
Two options change the pass and are named where they are used: per-example
posterior parameters in place of the encoder's (`posterior_params`,
refinement) and gradient taps on z (`gradient_taps`, DReG).

Seeds: with `seed=None` every sampler draws from its own
`keras.random.SeedGenerator` (the training stream, saved with the model);
with a seed (an int tensor of shape (2,)) level i draws with
`keras_vae.random.derive_seed(seed, i)`, a fixed function of it.
"""

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from keras_vae.kl import kl_divergence_and_kind, kl_per_dimension
from keras_vae.models import missing as missing_lib
from keras_vae.models import quantized as quantized_lib
from keras_vae.models.gradient_tap import GradientTap
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
        kl_weight: β, the `KLRegularizer`'s weight (a variable).
        kl_layer: the level's `KLRegularizer` (its prior, β, free bits
            and capacity: `kl_layer.penalty(kl, kl_per_dim())`).
        posterior: q(z | x) as a TFP distribution, one per row of the
            stage ("sample" mode).
        prior: p(z) as a TFP distribution ("sample" and "prior" modes).
        stage_samples: K when the stage ran on K·B rows (a level reading
            an earlier level's z), else 1.
        sampler: the level's sampling layer (`LatentSample`, or the
            `QuantizedLatent` of a quantizer): its `posterior(params)`
            and `reparameterized` flag.
        z_deps: indices of the earlier levels whose z this level's
            posterior reads (its parents).
        analytic_kl: whether `kl` is TFP's closed form (differentiable in
            the posterior parameters without looking at z).
        z_tap: the level's `GradientTap` when the trace was run with
            `gradient_taps=True` (z went through it), else None.
        losses: the losses a quantized level's layer added in this pass
            (commitment, codebook; training only), which
            `VAEModel.compute_objective` adds to the loss.
    """

    name: str
    params: Optional[tuple]
    prior_params: Optional[tuple]
    z: Any
    log_q: Any = None
    log_p: Any = None
    kl: Any = None
    kl_weight: Any = 1.0
    kl_layer: Any = None
    posterior: Any = None
    prior: Any = None
    stage_samples: int = 1
    sampler: Any = None
    z_deps: tuple = ()
    analytic_kl: bool = False
    z_tap: Any = None
    losses: tuple = ()

    def kl_per_dim(self):
        """KL(q ‖ p) per example and latent dimension, `(B, *event)`, when
        the `KLRegularizer` sets free bits and TFP has the closed form per
        dimension; else None (what `KLRegularizer.penalty` takes)."""
        if (self.kl_layer is None or self.kl_layer.free_bits <= 0.0
                or self.sampler.sampled_kl or self.posterior is None):
            return None
        per_dim = kl_per_dimension(self.posterior, self.prior)
        if per_dim is not None and self.stage_samples > 1:
            k = self.stage_samples
            per_dim = tf.reduce_mean(
                unfold(per_dim, k, tf.shape(per_dim)[0] // k), 0)
        return per_dim


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
        inputs: the model inputs (a list in `model.inputs` order, B rows;
            missing entries filled), for objectives whose baselines read x.
        targets: the data the likelihood scored (B rows; missing entries
            filled), or None.
        mask: the observed entries of `targets` (models compiled with
            `missing_values`), or None.
        training: whether the trace ran in training mode (objectives
            update their running statistics only then).
    """

    mode: str
    num_samples: int
    levels: tuple
    decoder_params: Any = None
    log_px_z: Any = None
    inputs: Any = None
    targets: Any = None
    mask: Any = None
    training: bool = False

    @property
    def kl(self):
        """Σ_levels KL, per example (B,)."""
        return tf.add_n([level.kl for level in self.levels])

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
        """The K-sample ELBO estimate per example (B,), β = 1:
        (1/K) Σ_k log p(x | z_k) - KL."""
        return tf.reduce_mean(self.log_px_z, axis=0) - self.kl

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
    xs, stage_xs, targets, mask = _filled(model, inputs, targets)
    batch = tf.shape(xs[0])[0]
    rows = _Rows(stage_xs, k)
    zs, records = [], []
    for i, level in enumerate(model.levels):
        override = (posterior_params or {}).get(i)
        if mode == MODE:
            record = _mode_level(level, rows, zs, override, training)
        elif level.quantizer is not None:
            record = _quantized_level(level, rows, zs, override, k, batch,
                                      training, gradient_taps)
        else:
            level_seed = None if seed is None else derive_seed(seed, i)
            record = _sample_level(level, rows, zs, override, k, batch,
                                   level_seed, training, gradient_taps)
        zs.append(record.z)
        records.append(record)

    decoder_params = log_px_z = None
    if decode:
        graph = model.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [rows.get(j, True) for j in graph.decoder_input_index]
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
                 inputs=xs, targets=targets, mask=mask,
                 training=bool(training))


def _filled(model, inputs, targets):
    """The inputs as a list of tensors, twice: with missing entries filled
    (a model compiled with `missing_values`; what objectives read), and as
    the stages read them (NaN at the missing entries of inputs read by
    `MissingIndicator` layers, `missing.stage_inputs`); the targets, filled;
    the mask of the targets' observed entries (or None)."""
    xs = [tf.convert_to_tensor(t) for t in model._input_list(inputs)]
    missing = getattr(model, "missing_values", None)
    mask = None
    stage_xs = xs
    if missing is not None:
        stage_xs = missing_lib.stage_inputs(model, xs, missing)
        xs = [missing_lib.fill(t, missing) for t in xs]
        if targets is not None:
            mask = missing_lib.observed(targets, missing)
            targets = missing_lib.fill(targets, missing, mask)
    return xs, stage_xs, targets, mask


class _Rows:
    """Model inputs by index, as B rows or tiled to K·B (for a stage that
    reads an earlier level's K draws); each tiling made once."""

    def __init__(self, xs, k):
        self.xs, self.k, self.tiled = xs, k, {}

    def get(self, j, repeat):
        if not repeat or self.k == 1:
            return self.xs[j]
        if j not in self.tiled:
            self.tiled[j] = repeat_rows(self.xs[j], self.k)
        return self.tiled[j]


def _run_stage(level, rows, zs, override, repeat, training):
    """The level's stage on its inputs: `(params, prior_params, context)`,
    the posterior parameters replaced by `override` when given."""
    inputs_i = [rows.get(j, repeat) for j in level.input_index]
    inputs_i += [zs[d] for d in level.z_deps]
    outputs = call_as_list(level.stage, inputs_i, training)
    n, m = level.num_params, level.num_prior_params
    params = tuple(outputs[:n]) if override is None else tuple(override)
    return params, tuple(outputs[n:n + m]) or None, outputs[n + m:]


def _mode_level(level, rows, zs, override, training):
    """A level at its posterior mode."""
    params, prior_params, context = _run_stage(
        level, rows, zs, override, False, training)
    return LevelTrace(
        name=level.name, params=params, prior_params=prior_params,
        z=level.sampler.mode(list(params), context),
        kl_weight=level.kl.kl_weight, kl_layer=level.kl,
        sampler=level.sampler, z_deps=tuple(level.z_deps),
    )


def _sample_level(level, rows, zs, override, k, batch, seed, training,
                  gradient_taps):
    """K draws of a level, their densities and the KL."""
    rows_k = bool(level.z_deps) and k > 1  # the stage runs on K*B rows
    kl_layer = level.kl
    p = None
    static = all(d is not None for d in kl_layer.event_shape)
    if not level.num_prior_params and static:
        # Before the stage's call on the data: a VampPrior runs the
        # stage on its pseudo-inputs, and the layer losses (activity
        # regularisers) kept for the objective must be the data's.
        p = kl_layer.prior_distribution()
    params, prior_params, context = _run_stage(
        level, rows, zs, override, rows_k, training)
    z, log_q = level.sampler.draw_latent(
        list(params), context, 1 if rows_k else k, seed, training=training,
    )
    tap = None
    if gradient_taps:
        tap = GradientTap()
        z = tap(z)
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
    if rows_k:
        kl = tf.reduce_mean(tf.reshape(kl, (k, batch)), 0)
    return LevelTrace(
        name=level.name, params=params, prior_params=prior_params, z=z,
        log_q=tf.reshape(log_q, (k, batch)),
        log_p=tf.reshape(lp, (k, batch)), kl=kl,
        kl_weight=kl_layer.kl_weight, kl_layer=kl_layer, posterior=q,
        prior=p, stage_samples=k if rows_k else 1, sampler=level.sampler,
        z_deps=tuple(level.z_deps), analytic_kl=analytic, z_tap=tap,
    )


def _quantized_level(level, rows, zs, override, k, batch, training,
                     gradient_taps):
    """A quantized level: K identical draws (the quantizer's output; its
    losses and codebook updates happen here when training), log q = 0,
    log p = -KL = -log K · positions."""
    rows_k = bool(level.z_deps) and k > 1  # the stage runs on K*B rows
    params, _, context = _run_stage(level, rows, zs, override, rows_k,
                                    training)
    del context  # a quantizer reads only its features
    z, losses = level.sampler.quantize(list(params), 1 if rows_k else k,
                                       training=training)
    tap = None
    if gradient_taps:
        tap = GradientTap()
        z = tap(z)
    kl = level.sampler.kl(params[0])[:batch]  # a constant: any B rows
    return LevelTrace(
        name=level.name, params=params, prior_params=None, z=z,
        log_q=tf.zeros((k, batch), tf.float32),
        log_p=-tf.tile(kl[None], [k, 1]), kl=kl,
        kl_weight=level.kl.kl_weight, kl_layer=level.kl,
        stage_samples=k if rows_k else 1, sampler=level.sampler,
        z_deps=tuple(level.z_deps), analytic_kl=True, z_tap=tap,
        losses=tuple(losses),
    )


def _prior_trace(model, inputs, seed, decode, num_rows, latent_shapes):
    """Ancestral draws from p(z...) (and the decoder's parameters)."""
    if seed is None:
        raise ValueError("A trace in 'prior' mode needs a `seed`.")
    xs = (model._input_list(inputs) if inputs is not None
          else [None] * len(model.inputs))
    zs, records = [], []
    for i, level in enumerate(model.levels):
        if level.quantizer is not None:
            raise quantized_lib.no_prior_error(level.name)
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
            kl_layer=level.kl, prior=p, sampler=level.sampler,
            z_deps=tuple(level.z_deps),
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
