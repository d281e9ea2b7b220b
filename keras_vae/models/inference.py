"""The user-facing inference API of VAEModel on arrays (encode ... impute).

Kept apart from the training step (`vae_model.py`): these methods run the
inference programs (`keras_vae.models.programs`, the same TF functions the
exported signatures call) on NumPy data, in padded chunks of examples,
through a cache of compiled functions, with progress bars.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.models import importance
from keras_vae.models import missing as missing_lib
from keras_vae.models import programs
from keras_vae.models import quantized as quantized_lib
from keras_vae.models import refine as refine_lib
from keras_vae.random import derive_seed

# Decoder rows (K samples x examples) per call in `log_likelihood` / `elbo`.
_ROWS_PER_CHUNK = 8192
# Most examples per chunk when `batch_size=None` (as `encode`'s default).
_MAX_EXAMPLES_PER_CHUNK = 4096


class VAEInference:
    """Mixin of `VAEModel`: inference on arrays.

    Reads from its host (a `VAEModel`): the programs' needs (`trace`,
    `decoder`, `likelihood`, `missing_values`), the graph (`levels`,
    `graph`, `inputs`), the data helpers (`_input_list`,
    `default_target`), `name`, `jit_compile`, and `_parts.functions`
    (the cache of compiled functions, emptied by `compile`).
    """

    def encode(self, x, batch_size=4096, verbose=0):
        """Posterior parameters of q(z | x), as NumPy.

        One latent: `(loc, scale)` (Gaussian) or the logits (categorical).
        Several latents: a list with one such entry per level (in
        `levels` order), each computed given the earlier levels' modes.
        `verbose=1` shows a progress bar over the batches (as `predict`;
        so do `posterior_mode`, `decode` and `reconstruct`). Batches of
        `batch_size` rows (default 4096) run XLA-compiled when the model's
        steps are.
        """
        per_level, _ = self._batched(
            self._mode_pass_fn(decode=False), x, batch_size, verbose
        )
        out = [p[0] if len(p) == 1 else tuple(p) for p in per_level]
        return out[0] if len(out) == 1 else out

    def posterior_mode(self, x, batch_size=4096, verbose=0):
        """The latent point of each level that `reconstruct` decodes.

        The posterior mean `loc` for `ReparameterizedSample`, the flow of
        `loc` for `IAFSample`, the one-hot argmax for `GumbelSoftmaxSample`;
        each level given the earlier levels' modes. One array for one
        latent, else a list in `levels` order (NumPy).
        """
        _, zs = self._batched(self._mode_pass_fn(decode=False), x,
                              batch_size, verbose)
        return zs[0] if len(zs) == 1 else list(zs)

    def decode(self, z, condition=None, batch_size=4096, verbose=0):
        """Likelihood parameters (the decoder output) for latents `z`.

        `z`: an array, or a list of arrays when the decoder reads several
        latents. `condition`: the decoder's other inputs (a label).
        """
        zs = list(z) if isinstance(z, (list, tuple)) else [z]
        zs = [np.asarray(a, "float32") for a in zs]
        index = self.graph.decoder_input_index
        conds = self._condition_list(condition, len(zs[0]), index)
        fn = self._compiled("decode", lambda xs: programs.decode(self, xs))
        return self._batched(fn, zs + [conds[j] for j in index], batch_size,
                             verbose, as_inputs=False)

    def encode_codes(self, x, batch_size=4096, verbose=0):
        """The integer codes of the vector-quantised latents (NumPy int32).

        One quantized latent: its codes, `(N, ...)` (the axes of its
        features but the last; `(N, ..., Q)` for a
        `ResidualVectorQuantizer` of Q stages). Several: a list, in
        `levels` order, of the quantized levels' codes (each given the
        earlier levels' modes). `decode_codes(encode_codes(x))` is what
        the model's forward pass outputs for x (as `decode` returns it).
        """
        self._quantized_levels("encode_codes")
        fn = self._compiled("encode_codes",
                            lambda xs: programs.encode_codes(self, xs))
        out = self._batched(fn, x, batch_size, verbose)
        return out[0] if len(out) == 1 else list(out)

    def decode_codes(self, codes, condition=None, batch_size=4096,
                     verbose=0):
        """Likelihood parameters (the decoder output) for integer codes.

        `codes`: the codes of the latent the decoder reads, as
        `encode_codes` returns them (an integer array `(N, ...)`; a list,
        one per latent, when the decoder reads several, which must all be
        quantized). Each is looked up in its codebook (the vectors the
        quantizer outputs for those codes) and decoded: the same numbers
        as the model's forward pass. `condition`: the decoder's other
        inputs (a label), as in `decode`. Codes of the wrong dtype or
        shape, or outside [0, num_codes), raise a `ValueError`.
        """
        graph = self.graph
        levels = [self.levels[d] for d in graph.decoder_z]
        names = [level.name for level in levels]
        plain = [level.name for level in levels if level.quantizer is None]
        if plain:
            raise ValueError(
                f"VAEModel '{self.name}': decode_codes needs every latent "
                f"the decoder reads ({names}) to be vector-quantised; "
                f"{plain} are not. Use decode(z)."
            )
        if len(levels) == 1:
            codes = [codes]
        elif not isinstance(codes, (list, tuple)) or len(codes) != len(
                levels):
            raise v.invalid(
                "codes", f"a list of {len(levels)} code arrays, one per "
                f"latent the decoder reads ({names})",
                f"<{type(codes).__name__} of "
                f"{len(codes) if isinstance(codes, (list, tuple)) else 1}>")
        codes = [_checked_codes(level, c) for level, c in zip(levels, codes)]
        index = graph.decoder_input_index
        conds = self._condition_list(condition, len(codes[0]), index)
        # Checked above: the XLA-compiled lookup drops its range asserts.
        fn = self._compiled("decode_codes",
                            lambda xs: programs.decode_codes(self, xs))
        return self._batched(fn, codes + [conds[j] for j in index],
                             batch_size, verbose, as_inputs=False)

    def _quantized_levels(self, what):
        """The quantized levels; raises for a model without one."""
        levels = [level for level in self.levels
                  if level.quantizer is not None]
        if not levels:
            raise ValueError(
                f"VAEModel '{self.name}' has no vector-quantised latent "
                "(VectorQuantizer, ResidualVectorQuantizer, "
                f"FiniteScalarQuantizer), so it has no codes for `{what}`; "
                "use encode / decode."
            )
        return levels

    def reconstruct(self, x, batch_size=4096, verbose=0):
        """E[x | z]: the likelihood's mean with every latent at its
        posterior mode (the mean; through the flow for `IAFSample`)."""
        fn = self._compiled("reconstruct",
                            lambda xs: programs.reconstruct(self, xs))
        return self._batched(fn, x, batch_size, verbose)

    def sample(self, n, seed=None, condition=None, latent_shape=None):
        """Draws `n` latents from the prior, decodes, returns the mean.

        With several latents the draw is ancestral: each level from its
        prior given the levels drawn before (z2 ~ p(z2), z1 ~ p(z1 | z2)),
        then x from the decoder.

        Args:
            n: number of samples.
            seed: int for reproducible draws (the same seed gives the same
                samples), or None.
            condition: for a conditional VAE, the inputs the decoder (and
                conditional priors) read besides z (one row, broadcast to
                `n`, or `n` rows; a list when there are several).
            latent_shape: the shape of one z (no batch axis) when it is
                not known from the model (a spatial latent of a fully
                convolutional model, `(None, None, C)`): e.g. `(8, 8, 4)`.
                With several such levels, a dict level name -> shape.
        """
        n = v.check_positive_int("n", n)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        seed = v.check_seed("seed", seed)
        conds = self._condition_list(
            condition, n, self.graph.condition_index
        )
        xs = [None] * len(self.inputs)
        for j, c in conds.items():
            xs[j] = tf.convert_to_tensor(c)
        return np.asarray(programs.sample(
            self, xs, n, seed, self._latent_shapes(latent_shape)))

    def _latent_shapes(self, latent_shape):
        """dict level index -> shape of one z, from `latent_shape`."""
        unknown = [i for i, level in enumerate(self.levels)
                   if level.prior_model is None
                   and any(d is None for d in level.z_shape)]
        if latent_shape is None:
            if unknown:
                names = [self.levels[i].name for i in unknown]
                shapes = [self.levels[i].z_shape for i in unknown]
                raise ValueError(
                    "Invalid value received for argument `latent_shape`: "
                    f"the latent(s) {names} have shape(s) {shapes} (batch "
                    "axis excluded), unknown until run time, so drawing "
                    "from the prior needs `latent_shape`, e.g. "
                    "latent_shape=(8, 8, 4). Received: latent_shape=None"
                )
            return {}
        if not isinstance(latent_shape, dict):
            if len(unknown) != 1 and len(self.levels) != 1:
                raise ValueError(
                    "Invalid value received for argument `latent_shape`: "
                    "with several latents pass a dict level name -> shape. "
                    f"Received: latent_shape={latent_shape!r}"
                )
            index = unknown[0] if unknown else 0
            latent_shape = {self.levels[index].name: latent_shape}
        by_name = {level.name: i for i, level in enumerate(self.levels)}
        out = {}
        for name, shape in latent_shape.items():
            if name not in by_name:
                raise ValueError(
                    "Invalid value received for argument `latent_shape`: "
                    f"no latent named '{name}' (latents: {list(by_name)})."
                )
            level = self.levels[by_name[name]]
            shape = tuple(shape)
            if len(shape) != len(level.z_shape) or any(
                d is not None and d != e for d, e in zip(level.z_shape, shape)
            ) or not all(isinstance(e, (int, np.integer)) and e > 0
                         for e in shape):
                raise ValueError(
                    "Invalid value received for argument `latent_shape`: the "
                    f"latent '{name}' has shape {level.z_shape} (batch axis "
                    "excluded); expected positive sizes of that rank. "
                    f"Received: latent_shape={shape}"
                )
            out[by_name[name]] = tuple(int(e) for e in shape)
        return out

    # -------------------------------------------------- graph passes (TF)
    def _compiled(self, key, fn):
        """`fn` as a cached `tf.function`, XLA-compiled when the model's
        steps are (`compile(jit_compile=...)`, True by default)."""
        fn_key = (key, bool(getattr(self, "jit_compile", False)))
        compiled = self._parts.functions.get(fn_key)
        if compiled is None:
            # No AutoGraph: these passes have no tensor-dependent Python
            # control flow, and converting closures that share code (one
            # per key) makes AutoGraph warn of a "closure mismatch".
            compiled = tf.function(fn, jit_compile=fn_key[1],
                                   reduce_retracing=True, autograph=False)
            self._parts.functions[fn_key] = compiled
        return compiled

    def _mode_pass_fn(self, decode=True):
        """Compiled: every level at its posterior mode (`trace` in "mode"
        mode); returns (params per level, z per level[, likelihood params])."""
        return self._compiled(("mode_pass", decode),
                              lambda xs: programs.mode_pass(self, xs, decode))

    def _batched(self, fn, x, batch_size, verbose=0, as_inputs=True):
        """`fn(list of input batches)` over `x` in batches; NumPy, concatenated.

        Every call has `batch_size` rows (the last batch is padded, its
        padding dropped), so a compiled `fn` is traced once.
        """
        batch_size = v.check_positive_int("batch_size", batch_size)
        xs = self._input_list(x) if as_inputs else list(x)
        xs = [np.asarray(a) for a in xs]
        n = len(xs[0])
        b = min(batch_size, n)
        outs = []
        starts = range(0, n, b)
        bar = _progbar(len(starts), verbose)
        for start in starts:
            rows = min(b, n - start)
            batch = [a[start:start + b] for a in xs]
            if rows < b:
                pad = np.concatenate([np.arange(start, n),
                                      np.full(b - rows, start)])
                batch = [a[pad] for a in xs]
            out = fn(batch)
            outs.append(tf.nest.map_structure(
                lambda t: np.asarray(t)[:rows], out))
            if bar is not None:
                bar.add(1)
        return tf.nest.map_structure(
            lambda *parts: np.concatenate(parts, axis=0), *outs
        )

    def _condition_list(self, condition, n, index):
        """dict model-input index -> array of `n` rows, for inputs `index`."""
        if not index:
            if condition is not None:
                raise ValueError(
                    "This VAEModel generates from z alone; received a "
                    "`condition`."
                )
            return {}
        if condition is None:
            raise ValueError(
                f"This VAEModel's decoder or prior also reads {len(index)} "
                "model input(s) (a conditional VAE): pass `condition=`."
            )
        if len(index) == 1:
            single = isinstance(condition, (list, tuple)) and len(
                condition) == 1 and np.ndim(condition[0]) >= 1
            conds = [condition[0] if single else condition]
        else:
            conds = list(condition) if isinstance(
                condition, (list, tuple)) else [condition]
        if len(conds) != len(index):
            raise ValueError(
                f"Expected {len(index)} condition array(s) (model inputs "
                f"{index}). Received {len(conds)}."
            )
        out = {}
        for j, c in zip(index, conds):
            c = np.asarray(c, dtype=self.inputs[j].dtype)
            rank = len(self.inputs[j].shape)
            if c.ndim == rank - 1:  # one row without its batch axis
                c = c[None]
            trailing = tuple(self.inputs[j].shape)[1:]
            if c.ndim != rank or c.shape[0] not in (1, n) or any(
                d is not None and d != e for d, e in zip(trailing, c.shape[1:])
            ):
                raise ValueError(
                    f"Invalid value received for argument `condition`: model "
                    f"input {j} ('{self.inputs[j].name}') has shape "
                    f"{tuple(self.inputs[j].shape)}, so a condition is one "
                    f"row or {n} rows of that shape. Received shape "
                    f"{np.shape(c)}."
                )
            if c.shape[0] == 1 and n != 1:
                c = np.repeat(c, n, axis=0)
            out[j] = c
        return out

    def _chunked(self, program, x, y, num_samples, batch_size, seed,
                 verbose=0, refine=None, k_chunk=None):
        """`program(model, x, y, K, k_chunk, seed, params)` (one of
        `keras_vae.models.programs`) per example, in chunks of examples.

        One XLA-compiled function per (program, K, chunk size, refine) runs
        all K samples of a chunk of examples (a `tf.while_loop` over chunks
        of `k_chunk` samples); the last partial chunk of examples is
        padded (and its padding dropped), so the function keeps its
        shapes. Example chunk i draws with `derive_seed(seed, i)`. `refine`:
        `(steps, learning_rate, samples)` to refine each example's
        posterior first (`keras_vae.models.refine`, seeded by
        `derive_seed(seed, i, -1)`), or None.
        """
        name = program.__name__
        xs = self._input_list(x)
        if self.missing_values is None:
            missing_lib.refuse_nan(
                [np.asarray(a) for a in xs] + [np.asarray(y)], name
            )
        n = len(xs[0])
        b = min(batch_size, n)
        if k_chunk is None:
            k_chunk = max(1, min(num_samples, _ROWS_PER_CHUNK // b))
        if refine is not None:
            refine_lib.check_refinable(self)
        key = (name, num_samples, k_chunk, refine)
        fn = self._parts.functions.get(key)
        if fn is None:
            def step(x, y, seed):
                params = None
                if refine is not None:
                    params = refine_lib.refined_posteriors(
                        self, x, y, refine[0], refine[1], refine[2],
                        derive_seed(seed, -1),
                    )
                return program(self, x, y, num_samples, k_chunk, seed,
                               params)
            fn = tf.function(step, jit_compile=True, reduce_retracing=True,
                             autograph=False)
            self._parts.functions[key] = fn
        if seed is None:
            seed = self._noise_seed()
        else:
            seed = v.check_seed("seed", seed)
        results = []
        starts = range(0, n, b)
        bar = _progbar(len(starts), verbose)
        for i, start in enumerate(starts):
            rows = np.arange(start, min(start + b, n))
            pad = np.concatenate([rows, np.full(b - len(rows), rows[0])])
            xb = [np.asarray(a)[pad] for a in xs]
            xb_in = xb if len(xb) > 1 else xb[0]
            yb = np.asarray(y)[pad]
            out = fn(xb_in, yb, derive_seed(seed, i))
            results.append(tf.nest.map_structure(
                lambda t: t.numpy()[:len(rows)], out))
            if bar is not None:
                bar.add(1)
        return tf.nest.map_structure(
            lambda *parts: np.concatenate(parts), *results)

    def _noise_seed(self):
        """The first random latent's noise stream: reproducible from the
        model's state (saved with it), and it moves on each call. A model
        whose latents are all quantized draws nothing: 0."""
        for level in self.levels:
            generator = getattr(level.sampler, "seed_generator", None)
            if generator is not None:
                return generator.next()
        return 0

    def log_likelihood(self, x, num_samples=1000, batch_size=None, y=None,
                       seed=None, verbose=0, refine_steps=0,
                       refine_learning_rate=0.1, refine_samples=4,
                       return_ess=False):
        """Per-example importance-sampled estimate of log p(x), in nats.

        ```none
        log p(x) ~ log (1/K) sum_k p(x | z_k) p(z_k) / q(z_k | x),  z_k ~ q(z|x)
        ```

        A lower bound in expectation that tightens to log p(x) as K grows
        (Burda et al. 2015). Streams over `batch_size` examples and over
        chunks of samples, so large K fits in memory.

        Args:
            x: model inputs (an array, or a list for several inputs).
            num_samples: K, importance samples per example.
            batch_size: examples per chunk, or None (default): as many as
                make about 8,192 decoder rows with the K samples, at least
                100 and at most 4,096 (4,096 for the ELBO's K = 1, 100 for
                K >= 82), so small K runs in large XLA calls.
            y: targets, when they are not the input (a conditional VAE
                with inputs `[x, label]` passes `y=x`).
            seed: int for a reproducible estimate (the same seed and
                batch_size give the same numbers), or None: a seed drawn
                from the first latent's noise stream (so a model and its
                saved copy give the same numbers).
            verbose: 0 (silent, default) or 1 (a progress bar over the
                chunks of examples), as in `predict`.
            refine_steps: 0 (default: the encoder's q is the proposal), or
                N > 0: each example's posterior parameters first take N
                Adam steps on its own ELBO (`keras_vae.models.refine`;
                Gaussian `ReparameterizedSample` latents), a better
                proposal for the same K.
            refine_learning_rate: Adam's first step size η (default 0.1);
                it decays by a cosine to 1 % of η at the last step, so
                the refined bound settles at its optimum instead of
                jittering around it (`keras_vae.models.refine`; on PPCA
                with posterior precision ~1 to ~100 per dimension, 1,000
                steps end within 0.01 nat of log p(x), 300 within 0.06).
            refine_samples: samples of z per refinement step.

            return_ess: also return each example's effective sample size
                of its importance weights, (Σ w)² / Σ w² in [1, K].

        With a model compiled with `missing_values`, this is log p(x_obs):
        the missing entries of each row are marginalised.

        When more than 10 % of the examples have an effective sample size
        below 5 % of K, the encoder's q is a poor proposal for them and the
        estimate is likely too low: a `LowEffectiveSampleSizeWarning`
        (once per call) names `refine_steps` as the remedy
        (`keras_vae.models.importance`).

        Returns:
            NumPy array of shape (N,); with `return_ess`, `(log_likelihood,
            ess)`, both of shape (N,).
        """
        num_samples = v.check_positive_int("num_samples", num_samples)
        batch_size = examples_per_chunk(batch_size, num_samples)
        return_ess = v.check_bool("return_ess", return_ess)
        y = self.default_target(x) if y is None else y
        estimate, ess = self._chunked(
            programs.log_likelihood_and_ess, x, y, num_samples, batch_size,
            seed, verbose, _refine_args(refine_steps, refine_learning_rate,
                                        refine_samples),
        )
        importance.warn_if_low_ess(ess, num_samples, "log_likelihood")
        return (estimate, ess) if return_ess else estimate

    def elbo(self, x, num_samples=1, batch_size=None, y=None, seed=None,
             verbose=0, refine_steps=0, refine_learning_rate=0.1,
             refine_samples=4):
        """Per-example ELBO estimate with K samples (NumPy, shape (N,)).

        ```none
        ELBO(x) ~ (1/K) sum_k log p(x | z_k) - KL(q(z | x) || p(z))
        ```

        The KL is analytic where TFP has it (else sampled at the same z_k).
        Arguments as `log_likelihood`; with `refine_steps=N` the ELBO is
        that of each example's refined posterior (semi-amortised
        inference), which the model's weights never see.
        """
        num_samples = v.check_positive_int("num_samples", num_samples)
        batch_size = examples_per_chunk(batch_size, num_samples)
        y = self.default_target(x) if y is None else y
        return self._chunked(
            programs.elbo, x, y, num_samples, batch_size, seed,
            verbose, _refine_args(refine_steps, refine_learning_rate,
                                  refine_samples),
        )

    def impute(self, x, num_samples=1000, batch_size=100, y=None, seed=None,
               num_imputations=None, verbose=0, refine_steps=0,
               refine_learning_rate=0.1, refine_samples=4,
               return_ess=False):
        """Fills the missing entries of `x` from the model (NumPy).

        Needs a model compiled with `missing_values`. The missing entries
        get E[x_mis | x_obs], by self-normalised importance sampling with
        the encoder's q as the proposal; observed entries are returned
        untouched:

        ```none
        w_k = p(x_obs | z_k) p(z_k) / q(z_k | x_obs),   z_k ~ q(z | x_obs)
        E[x_mis | x_obs] ~ Σ_k w̃_k E[x_mis | z_k],       w̃ = w / Σ_j w_j
        ```

        With `num_imputations=M`, M draws from p(x_mis | x_obs) instead
        (multiple imputation): z resampled in proportion to w (sampling
        importance resampling, K candidates per draw), then x_mis ~ p(x |
        z), shape `(M, N, ...)`.

        Args:
            x: model inputs with missing entries (NaN, or the compiled
                `missing_values`).
            num_samples: K, importance samples per example.
            batch_size: examples per chunk.
            y: the data to impute when it is not the input (a conditional
                VAE); default the input.
            seed: int for reproducible imputations (the exported `impute`
                signature gives the same numbers for one chunk of examples
                and the same seed), or None.
            num_imputations: None (the conditional mean) or M > 0 draws.
            verbose: 0 or 1 (a progress bar over the chunks of examples).
            refine_steps, refine_learning_rate, refine_samples: refine each
                example's proposal first, as in `log_likelihood`.
            return_ess: also return each example's effective sample size
                of its importance weights (the conditional mean only,
                `num_imputations=None`).

        Warns as `log_likelihood` when the weights degenerate.
        """
        if self.missing_values is None:
            raise ValueError(
                f"VAEModel '{self.name}' was compiled without "
                "`missing_values`, so no entry is missing: compile(..., "
                "missing_values=float('nan')) to impute NaN entries."
            )
        num_samples = v.check_positive_int("num_samples", num_samples)
        batch_size = v.check_positive_int("batch_size", batch_size)
        y = np.asarray(self.default_target(x) if y is None else y)
        refine = _refine_args(refine_steps, refine_learning_rate,
                              refine_samples)
        return_ess = v.check_bool("return_ess", return_ess)
        if num_imputations is None:
            filled, ess = self._chunked(
                programs.impute_and_ess, x, y, num_samples, batch_size,
                seed, verbose, refine, k_chunk=programs.SAMPLES_PER_CHUNK,
            )
            importance.warn_if_low_ess(ess, num_samples, "impute")
            filled = filled.astype(y.dtype)
            return (filled, ess) if return_ess else filled
        if return_ess:
            raise v.invalid("return_ess", "False with num_imputations "
                            "(the ESS comes with the conditional mean)",
                            return_ess)
        m = v.check_positive_int("num_imputations", num_imputations)
        draws = np.stack([
            self._impute_draw(x, num_samples, batch_size, y,
                              None if seed is None else seed + j, verbose,
                              refine)
            for j in range(m)
        ])
        return np.where(self._observed(y)[None], y[None], draws).astype(
            y.dtype)

    def _impute_draw(self, x, num_samples, batch_size, y, seed, verbose,
                     refine):
        """One draw of x_mis ~ p(x_mis | x_obs) per row (see `impute`),
        observed entries included as given."""
        likelihood = self.likelihood
        if seed is None:  # one seed for the z resampling and the x draw
            seed = int(np.random.randint(0, 2**31 - 1))
        params = self._chunked(
            programs.impute_params, x, y, num_samples, batch_size, seed,
            verbose, refine, k_chunk=programs.SAMPLES_PER_CHUNK,
        )
        draw = likelihood.distribution(params).sample(
            seed=derive_seed(seed, -2)
        ).numpy()
        return np.where(self._observed(y), y, draw).astype(y.dtype)

    def _observed(self, y):
        """NumPy mask of the observed entries of `y`."""
        return missing_lib.observed(y, self.missing_values).numpy()

    def export_serving(self, path, log_likelihood_samples=100,
                       target_shape=None):
        """Writes a TensorFlow SavedModel for TF Serving; see `keras_vae.export`."""
        from keras_vae.models.export import export_serving

        return export_serving(
            self, path, log_likelihood_samples=log_likelihood_samples,
            target_shape=target_shape,
        )


def _checked_codes(level, codes):
    """`codes` of the quantized `level` as an int32 array, or the
    template error (dtype, shape, range)."""
    quantizer = level.quantizer
    expected = quantized_lib.code_shape(quantizer, level.z_shape)
    array = np.asarray(codes)
    shape = "(batch, " + ", ".join(
        "?" if d is None else str(d) for d in expected) + ")"
    if array.dtype.kind not in "iu":
        raise v.invalid(
            "codes", f"integer codes of shape {shape} for the latent "
            f"'{level.name}'", f"<array of dtype {array.dtype}>")
    if array.ndim != len(expected) + 1 or any(
            d is not None and d != e
            for d, e in zip(expected, array.shape[1:])):
        raise v.invalid(
            "codes", f"integer codes of shape {shape} for the latent "
            f"'{level.name}'", f"<codes of shape {array.shape}>")
    if array.size and (array.min() < 0
                       or array.max() >= quantizer.num_codes):
        raise v.invalid(
            "codes", f"codes in [0, {quantizer.num_codes}) for the latent "
            f"'{level.name}'",
            f"<codes with min {array.min()} and max {array.max()}>")
    return array.astype("int32")


def examples_per_chunk(batch_size, num_samples):
    """`batch_size`, checked; None: about `_ROWS_PER_CHUNK` decoder rows
    per call, between 100 and `_MAX_EXAMPLES_PER_CHUNK` examples."""
    if batch_size is None:
        return max(100, min(_MAX_EXAMPLES_PER_CHUNK,
                            _ROWS_PER_CHUNK // num_samples))
    return v.check_positive_int("batch_size", batch_size)


def _refine_args(steps, learning_rate, samples):
    """`(steps, learning_rate, samples)` for `_chunked`, or None."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) \
            or steps < 0:
        raise v.invalid("refine_steps", "an int >= 0", steps)
    if steps == 0:
        return None
    learning_rate = v.check_float("refine_learning_rate", learning_rate,
                                  minimum=0.0, strict=True)
    return (int(steps), learning_rate,
            v.check_positive_int("refine_samples", samples))


def _progbar(steps, verbose):
    """A Keras progress bar over `steps` chunks when `verbose`, else None."""
    if verbose not in (0, 1, 2, False, True):
        raise v.invalid("verbose", "0, 1 or 2 (as in `predict`)", verbose)
    if not verbose:
        return None
    return keras.utils.Progbar(steps, verbose=int(verbose), unit_name="chunk")
