"""The KL of a VAE split into mutual information, total correlation and
dimension-wise KL (Chen et al. 2018), estimated on data."""

import numpy as np
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.objectives import beta_tcvae

# Entries of the (rows, batch, L) arrays per chunk (memory, not results).
_ENTRIES_PER_CHUNK = 4_000_000


def kl_decomposition(vae, x, dataset_size=None, sampling="mss",
                     batch_size=None, seed=0):
    """Splits the average KL(q(z|x) ‖ p(z)) of a VAE on `x` in three terms.

    ```none
    E_x KL(q(z|x) ‖ p(z)) = index_code_mi + total_correlation + dimension_wise_kl

    z_i ~ q(z | x_i), one draw per example, and with q̂ the aggregate
    posterior estimated from the examples of z_i's batch (as in training):
      index_code_mi     = mean_i log q(z_i | x_i) - log q̂(z_i)
      total_correlation = mean_i log q̂(z_i) - Σ_d log q̂(z_id)
      dimension_wise_kl = mean_i Σ_d log q̂(z_id) - log p(z_i)
      kl                = mean_i log q(z_i | x_i) - log p(z_i)
    ```

    `kl` is the Monte Carlo estimate at the same draws, so the three
    terms add up to it exactly (to float64 rounding); `analytic_kl` is
    the mean closed-form KL, for comparison (present when the prior has
    one; `kl` differs from it by the Monte Carlo error of one draw per
    example).

    By default `x` is the dataset: one batch holding all of it, each z_i
    scored against the posteriors of all N examples, with the weights of
    `sampling` (`"mss"`: 1/N on the example's own posterior and about
    1/(N - 1) on the others, within O(1/N) of the exact
    q(z) = (1/N) Σ_n q(z | x_n); the N² pairs are computed in chunks).
    With `batch_size`, `x` (shuffled with `seed`) is split into batches of
    `batch_size` to `2·batch_size - 1` examples, each scored on its own as
    `keras_vae.objectives.BetaTCVAE` scores a training batch of a dataset
    of `dataset_size` examples: the numbers training reports. See
    `keras_vae.objectives.tc_decomposition` for the estimators (`"mws"`
    adds up to (L - 1)·log N nats to the total correlation).

    The aggregate posterior is that of the examples given: with N of them
    the index-code MI cannot exceed log N, and where the posteriors are
    sharp (a large KL) q(z) is a mixture of N narrow bumps, whose total
    correlation says more about the sample than about the data's q(z).
    Pass as many examples as memory and time allow (the N² pairs of one
    batch are computed in chunks; 5,000 examples of 10 dimensions take
    seconds).

    Args:
        vae: a `keras_vae.VAEModel` with one flat latent and a diagonal
            Gaussian posterior, and a prior not computed by the model.
        x: the examples (the model inputs, as for `VAEModel.encode`); at
            least 2.
        dataset_size: N of the estimator, a positive int at least the
            batch size (default: the number of examples in `x`).
        sampling: `"mss"` (default) or `"mws"`.
        batch_size: None (default: one batch of all of `x`) or an int >= 2.
        seed: int or None, for the draws of z and the shuffle.

    Returns:
        A dict of floats (nats): `index_code_mi`, `total_correlation`,
        `dimension_wise_kl`, `kl` and, when the prior has a closed-form
        KL, `analytic_kl`.

    Raises:
        ValueError: a model that is not one flat diagonal Gaussian latent,
            fewer than 2 examples, `dataset_size` not a positive int or
            smaller than a batch, a bad `batch_size` or `sampling`.

    Example:

    ```python
    terms = keras_vae.disentanglement.kl_decomposition(vae, x_test[:2000])
    terms["total_correlation"]
    ```

    References: Chen, Li, Grosse & Duvenaud, "Isolating Sources of
    Disentanglement in Variational Autoencoders", 2018 (their
    `elbo_decomposition.py` scores every draw against the whole dataset,
    as the default here).
    """
    beta_tcvae.check_flat_gaussian(vae, None, what="kl_decomposition")
    v.check_choice("sampling", sampling, beta_tcvae.SAMPLINGS)
    seed = v.check_seed("seed", seed)
    kl_layer = vae.kl_layer
    if kl_layer.has_prior_params:
        raise ValueError(
            "kl_decomposition needs a prior p(z) of its own; the prior of "
            f"'{kl_layer.name}' is computed by the model from other inputs "
            "(a conditional prior).")
    loc, scale = (np.asarray(a, np.float64) for a in vae.encode(x))
    n, dim = loc.shape
    if n < 2:
        raise v.invalid("x", "at least 2 examples (the aggregate posterior "
                        "of one is its posterior)", f"{n} example(s)")
    if batch_size is None:
        batch_size = n
    batch_size = v.check_positive_int("batch_size", batch_size)
    if batch_size < 2:
        raise v.invalid("batch_size", "an integer >= 2", batch_size)
    batches = max(1, n // batch_size)
    if dataset_size is None:
        dataset_size = n
    dataset_size = beta_tcvae.check_dataset_size(dataset_size)

    rng = np.random.default_rng(seed)
    z = loc + scale * rng.standard_normal(loc.shape)
    log_pz, analytic = _prior_terms(kl_layer, z, loc, scale, dim)
    order = rng.permutation(n) if batches > 1 else np.arange(n)
    splits = np.array_split(order, batches)
    largest = max(len(b) for b in splits)
    if largest > dataset_size:
        raise ValueError(beta_tcvae._too_small_message(dataset_size, largest))

    sums = np.zeros(4)
    for rows in splits:
        sums += _batch_sums(z[rows], loc[rows], scale[rows], log_pz[rows],
                            dataset_size, sampling)
    mi, tc, dwkl, kl = sums / n
    out = {"index_code_mi": mi, "total_correlation": tc,
           "dimension_wise_kl": dwkl, "kl": kl}
    if analytic is not None:
        out["analytic_kl"] = analytic
    return {k: float(val) for k, val in out.items()}


def _prior_terms(kl_layer, z, loc, scale, dim):
    """log p(z) per example (float64) and the mean analytic KL (or None)."""
    from keras_vae import kl as kl_lib
    from keras_vae.posteriors import posterior_distribution
    from keras_vae.priors.standard_normal import StandardNormal

    prior = kl_layer.prior
    if prior is None or isinstance(prior, StandardNormal):
        log_pz = np.sum(-0.5 * z * z - 0.5 * np.log(2.0 * np.pi), axis=1)
        analytic = np.mean(0.5 * np.sum(
            loc * loc + scale * scale - 1.0 - 2.0 * np.log(scale), axis=1))
        return log_pz, analytic
    p = kl_layer.prior_distribution(event_shape=(dim,))
    log_pz = np.asarray(p.log_prob(z.astype(np.float32)), np.float64)
    q = posterior_distribution([loc.astype(np.float32),
                                scale.astype(np.float32)])
    kl = kl_lib.analytic_kl(q, p)
    return log_pz, None if kl is None else float(np.mean(kl))


def _batch_sums(z, loc, scale, log_pz, dataset_size, sampling):
    """Sums over a batch's rows of mi, tc, dwkl and log q(z|x) - log p(z)."""
    b, dim = loc.shape
    log_w = beta_tcvae.log_importance_weights(b, dataset_size, sampling,
                                              tf.float64)
    step = max(1, _ENTRIES_PER_CHUNK // (b * dim))
    sums = np.zeros(4)
    for start in range(0, b, step):
        rows = tf.range(start, min(b, start + step))
        log_qzx, log_qz, log_prod, lp = (
            np.asarray(t, np.float64)
            for t in beta_tcvae.decomposition_terms(
                tf.gather(z, rows), loc, scale, tf.gather(log_w, rows),
                rows, tf.gather(log_pz, rows)))
        sums += [np.sum(log_qzx - log_qz), np.sum(log_qz - log_prod),
                 np.sum(log_prod - lp), np.sum(log_qzx - lp)]
    return sums
