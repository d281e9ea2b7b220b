"""The user-facing inference API of VAEModel (encode ... log_likelihood).

Kept apart from the training step (`vae_model.py`): these methods run the
encoder/decoder views of the graph on NumPy data, in chunks, outside `fit`.
"""

import numpy as np
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae import objectives

# Decoder rows (K samples x examples) per call in `log_likelihood` / `elbo`.
_ROWS_PER_CHUNK = 8192


class VAEInference:
    """Mixin of `VAEModel`: inference on arrays (needs `_terms`, `encoder`,
    `decoder`, `likelihood`, `kl_layer`, `_conditions`, `_parts`)."""

    def encode(self, x, batch_size=256):
        """Posterior parameters `(loc, scale)` of q(z | x), as NumPy."""
        loc, scale = self.encoder.predict(x, batch_size=batch_size, verbose=0)
        return loc, scale

    def decode(self, z, condition=None, batch_size=256):
        """Likelihood parameters (the decoder output) for latents `z`."""
        return self.decoder.predict(
            [np.asarray(z, "float32")] + self._condition_list(condition, len(z)),
            batch_size=batch_size, verbose=0,
        )

    def reconstruct(self, x, batch_size=256):
        """E[x | z = posterior mean]: the likelihood's mean, as NumPy."""
        loc, _ = self.encode(x, batch_size=batch_size)
        conditions = self._conditions(x)
        params = self.decode(loc, conditions or None, batch_size=batch_size)
        return np.asarray(self.likelihood.mean(params))

    def sample(self, n, seed=None, condition=None):
        """Draws `n` latents from the prior, decodes, returns the mean.

        Args:
            n: number of samples.
            seed: int for reproducible draws (the same seed gives the same
                samples), or None.
            condition: for a conditional VAE, the decoder's other inputs
                (one row, broadcast to `n`, or `n` rows).
        """
        n = v.check_positive_int("n", n)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        prior = self.kl_layer.prior_distribution()
        z = prior.sample(n, seed=tf.constant([seed, 0], tf.int32))
        params = self.decode(z.numpy(), condition)
        return np.asarray(self.likelihood.mean(params))

    def _condition_list(self, condition, n):
        needed = len(self._parts.graph.condition_index)
        if needed == 0:
            if condition is not None:
                raise ValueError(
                    "This VAEModel's decoder reads only z; received a "
                    "`condition`."
                )
            return []
        if condition is None:
            raise ValueError(
                f"This VAEModel's decoder also reads {needed} model "
                "input(s) (a conditional VAE): pass `condition=`."
            )
        conds = condition if isinstance(condition, (list, tuple)) else [condition]
        out = []
        for c in conds:
            c = np.asarray(c)
            if c.shape[0] == 1 and n != 1:
                c = np.repeat(c, n, axis=0)
            out.append(c)
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
                t = self._terms(x, y, k, training=False, need_weights=True)
                return reduce(t)
            fn = tf.function(step, jit_compile=True, reduce_retracing=True)
            self._parts.functions[name] = fn
        xs = x if isinstance(x, (list, tuple)) else [x]
        n = len(xs[0])
        b = min(batch_size, n)
        k_chunks = _sample_chunks(num_samples, max(1, _ROWS_PER_CHUNK // b))
        results = []
        for start in range(0, n, b):
            rows = np.arange(start, min(start + b, n))
            pad = np.concatenate([rows, np.full(b - len(rows), rows[0])])
            xb = [np.asarray(a)[pad] for a in xs]
            xb_in = xb if isinstance(x, (list, tuple)) else xb[0]
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

    def export_serving(self, path, log_likelihood_samples=100):
        """Writes a TensorFlow SavedModel for TF Serving; see `keras_vae.export`."""
        from keras_vae.export import export_serving

        return export_serving(
            self, path, log_likelihood_samples=log_likelihood_samples
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
