"""The user-facing inference API of VAEModel (encode ... log_likelihood).

Kept apart from the training step (`vae_model.py`): these methods run the
encoder/decoder views of the graph on NumPy data, in chunks, outside `fit`.
"""

import numpy as np
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import objectives
from keras_vae.models.graph import call_as_list

# Decoder rows (K samples x examples) per call in `log_likelihood` / `elbo`.
_ROWS_PER_CHUNK = 8192


class VAEInference:
    """Mixin of `VAEModel`: inference on arrays (needs `_terms`, `levels`,
    `encoder`, `decoder`, `likelihood`, `_parts`)."""

    def encode(self, x, batch_size=256):
        """Posterior parameters of q(z | x), as NumPy.

        One latent: `(loc, scale)` (Gaussian) or the logits (categorical).
        Several latents: a list with one such entry per level (in
        `levels` order), each computed given the earlier levels' modes.
        """
        per_level, _ = self._batched(
            self._mode_pass_fn(decode=False), x, batch_size
        )
        out = [p[0] if len(p) == 1 else tuple(p) for p in per_level]
        return out[0] if len(out) == 1 else out

    def posterior_mode(self, x, batch_size=256):
        """The latent point of each level that `reconstruct` decodes.

        The posterior mean `loc` for `ReparameterizedSample`, the flow of
        `loc` for `IAFSample`, the one-hot argmax for `GumbelSoftmaxSample`;
        each level given the earlier levels' modes. One array for one
        latent, else a list in `levels` order (NumPy).
        """
        _, zs = self._batched(self._mode_pass_fn(decode=False), x, batch_size)
        return zs[0] if len(zs) == 1 else list(zs)

    def decode(self, z, condition=None, batch_size=256):
        """Likelihood parameters (the decoder output) for latents `z`.

        `z`: an array, or a list of arrays when the decoder reads several
        latents. `condition`: the decoder's other inputs (a label).
        """
        zs = list(z) if isinstance(z, (list, tuple)) else [z]
        zs = [np.asarray(a, "float32") for a in zs]
        index = self._parts.graph.decoder_input_index
        conds = self._condition_list(condition, len(zs[0]), index)
        return self.decoder.predict(
            zs + [conds[j] for j in index], batch_size=batch_size, verbose=0,
        )

    def reconstruct(self, x, batch_size=256):
        """E[x | z]: the likelihood's mean with every latent at its
        posterior mode (the mean; through the flow for `IAFSample`)."""
        _, _, params = self._batched(self._mode_pass_fn(), x, batch_size)
        return np.asarray(self.likelihood.mean(params))

    def sample(self, n, seed=None, condition=None):
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
        """
        n = v.check_positive_int("n", n)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        conds = self._condition_list(
            condition, n, self._parts.graph.condition_index
        )
        conds = {j: tf.convert_to_tensor(c) for j, c in conds.items()}
        params = self._ancestral(n, tf.constant(seed, tf.int32), conds)
        return np.asarray(self.likelihood.mean(params))

    # -------------------------------------------------- graph passes (TF)
    def _mode_pass(self, xs, decode=True):
        """Every level at its posterior mode, then (if `decode`) the decoder.

        Returns `(posterior params per level, z per level, likelihood
        params)`, or the first two without `decode`.
        """
        zs, per_level = [], []
        for level in self.levels:
            inputs = [xs[j] for j in level.input_index]
            inputs += [zs[d] for d in level.z_deps]
            outputs = call_as_list(level.stage, inputs, training=False)
            n, m = level.num_params, level.num_prior_params
            params = outputs[:n]
            zs.append(level.sampler.mode(params, outputs[n + m:]))
            per_level.append(params)
        if not decode:
            return per_level, zs
        graph = self._parts.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [xs[j] for j in graph.decoder_input_index]
        return per_level, zs, self.decoder(decoder_in, training=False)

    def _mode_pass_fn(self, decode=True):
        key = ("mode_pass", decode)
        fn = self._parts.functions.get(key)
        if fn is None:
            def mode_pass(xs):
                return self._mode_pass(xs, decode=decode)
            fn = tf.function(mode_pass, reduce_retracing=True)
            self._parts.functions[key] = fn
        return fn

    def _ancestral(self, n, seed, conditions):
        """Likelihood params of `n` draws from p(z...) p(x | z...).

        `seed`: int32 scalar tensor; level i draws with seed `(seed, i)`.
        `conditions`: dict model-input index -> tensor of `n` rows.
        """
        zs = []
        for i, level in enumerate(self.levels):
            level_seed = tf.stack([seed, tf.constant(i, seed.dtype)])
            if level.prior_model is not None:
                inputs = [conditions[j] for j in level.prior_input_index]
                inputs += [zs[d] for d in level.prior_z_deps]
                prior_params = call_as_list(
                    level.prior_model, inputs, training=False
                )
                p = level.kl.prior_distribution(prior_params)
                z = p.sample(seed=level_seed)
            else:
                z = level.kl.prior_distribution().sample(n, seed=level_seed)
            zs.append(tf.cast(z, tf.float32))
        graph = self._parts.graph
        decoder_in = [zs[d] for d in graph.decoder_z]
        decoder_in += [conditions[j] for j in graph.decoder_input_index]
        return self.decoder(decoder_in, training=False)

    def _batched(self, fn, x, batch_size):
        """`fn(list of input batches)` over `x` in batches; NumPy, concatenated."""
        batch_size = v.check_positive_int("batch_size", batch_size)
        xs = [np.asarray(a) for a in self._input_list(x)]
        outs = []
        for start in range(0, len(xs[0]), batch_size):
            out = fn([a[start:start + batch_size] for a in xs])
            outs.append(tf.nest.map_structure(lambda t: t.numpy(), out))
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

    def _chunked(self, name, x, y, num_samples, batch_size, reduce):
        """Runs `reduce(terms)` over chunks of examples and of samples.

        Calls of the compiled function keep their shapes (one or two XLA
        compilations): sample chunks divide K where a divisor is near the
        memory limit, and the last partial chunk of examples is padded
        (and its padding dropped).
        Returns, per example chunk, a list of `(reduced, k)` pairs.
        """
        fn = self._parts.functions.get(name)
        if fn is None:
            def step(x, y, k):
                t = self._terms(x, y, k, training=False)
                return reduce(t)
            fn = tf.function(step, jit_compile=True, reduce_retracing=True)
            self._parts.functions[name] = fn
        xs = self._input_list(x)
        n = len(xs[0])
        b = min(batch_size, n)
        k_chunks = _sample_chunks(num_samples, max(1, _ROWS_PER_CHUNK // b))
        results = []
        for start in range(0, n, b):
            rows = np.arange(start, min(start + b, n))
            pad = np.concatenate([rows, np.full(b - len(rows), rows[0])])
            xb = [np.asarray(a)[pad] for a in xs]
            xb_in = xb if len(xb) > 1 else xb[0]
            yb = np.asarray(y)[pad]
            parts = [(fn(xb_in, yb, k)[:len(rows)], k) for k in k_chunks]
            results.append(parts)
        return results

    def log_likelihood(self, x, num_samples=1000, batch_size=100, y=None):
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
            batch_size: examples per chunk.
            y: targets, when they are not the input (a conditional VAE
                with inputs `[x, label]` passes `y=x`).

        Returns:
            NumPy array of shape (N,).
        """
        num_samples = v.check_positive_int("num_samples", num_samples)
        batch_size = v.check_positive_int("batch_size", batch_size)
        y = self._default_target(x) if y is None else y

        def reduce(t):
            log_w = objectives.log_weights(t["log_px_z"], t["log_pz"], t["log_qz"])
            return tf.reduce_logsumexp(log_w, axis=0)

        results = self._chunked(
            "log_likelihood", x, y, num_samples, batch_size, reduce
        )
        return np.concatenate(
            [objectives.logmeanexp_chunks(parts).numpy() for parts in results]
        )

    def elbo(self, x, num_samples=1, batch_size=100, y=None):
        """Per-example ELBO estimate with K samples (NumPy, shape (N,))."""
        num_samples = v.check_positive_int("num_samples", num_samples)
        batch_size = v.check_positive_int("batch_size", batch_size)
        y = self._default_target(x) if y is None else y

        def reduce(t):
            # Sum over this chunk's samples; the KL term is per sample so
            # that chunks combine by a plain average.
            k = tf.cast(tf.shape(t["log_px_z"])[0], tf.float32)
            return tf.reduce_sum(t["log_px_z"], 0) - k * t["kl"]

        results = self._chunked("elbo", x, y, num_samples, batch_size, reduce)
        return np.concatenate(
            [
                sum(s.numpy() for s, _ in parts) / sum(k for _, k in parts)
                for parts in results
            ]
        )

    def export_serving(self, path, log_likelihood_samples=100,
                       target_shape=None):
        """Writes a TensorFlow SavedModel for TF Serving; see `keras_vae.export`."""
        from keras_vae.export import export_serving

        return export_serving(
            self, path, log_likelihood_samples=log_likelihood_samples,
            target_shape=target_shape,
        )


def _sample_chunks(k, limit):
    """Chunk sizes summing to k, each <= limit, with few distinct sizes.

    Equal chunks when a divisor of k is within 4x of the limit (one
    compilation), else chunks of `limit` and one remainder (two).
    """
    top = min(k, limit)
    for d in range(top, max(top // 4, 1) - 1, -1):
        if k % d == 0:
            return [d] * (k // d)
    full, rest = divmod(k, top)
    return [top] * full + ([rest] if rest else [])
