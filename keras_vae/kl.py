"""KL(q || p): analytic when TFP knows it, a sampled estimate otherwise.

This is the one place that decides between the two (as Pyro does).

```none
analytic:  KL(q || p)                     via tfd.kl_divergence
sampled:   log q(z) - log p(z),  z ~ q    (unbiased, one sample per row)
```
"""

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def analytic_kl(q, p):
    """TFP's closed-form KL(q || p), or None when none is registered.

    The one place that asks TFP (which signals a missing pair by raising).
    A diagonal Gaussian over a vector is the package's `Independent(Normal)`;
    against a MultivariateNormal (a full-covariance posterior, a user's
    `MultivariateNormalDiag` prior) it is read as the
    `MultivariateNormalDiag` it equals, whose KL TFP registers.
    """
    if isinstance(p, _MVN):
        q = _as_mvn_diag(q)
    elif isinstance(q, _MVN):
        p = _as_mvn_diag(p)
    try:
        return tfd.kl_divergence(q, p)
    except NotImplementedError:  # TFP: no KL registered for this pair
        return None


_MVN = tfd.MultivariateNormalLinearOperator


def _as_mvn_diag(dist):
    """`Independent(Normal)` over one axis as a MultivariateNormalDiag;
    any other distribution as it is."""
    if (isinstance(dist, tfd.Independent)
            and isinstance(dist.distribution, tfd.Normal)
            and dist.event_shape.rank == 1
            and dist.distribution.event_shape.rank == 0):
        return tfd.MultivariateNormalDiag(loc=dist.distribution.loc,
                                          scale_diag=dist.distribution.scale)
    return dist


def has_analytic_kl(q, p):
    """Whether TFP has a registered closed-form KL for this pair."""
    return analytic_kl(q, p) is not None


def kl_divergence(q, p, z=None, log_q=None):
    """Per-example KL(q || p); `kl_divergence_and_kind`'s first value."""
    return kl_divergence_and_kind(q, p, z, log_q)[0]


def kl_divergence_and_kind(q, p, z=None, log_q=None):
    """`(kl, analytic)`: per-example KL(q || p), shape = q.batch_shape,
    float32, and whether it is TFP's closed form (its gradient then needs
    no look at z).

    Args:
        q: posterior, batch (B,), event (L,).
        p: prior, event (L,), broadcastable batch.
        z: samples from q of shape (..., B, L) used for the sampled estimate
            when no analytic form exists (averaged over leading axes), or a
            function of no arguments that draws them (called only then).
            When None and no analytic form exists, one sample is drawn from
            q by TFP.
        log_q: log q(z) at `z` (shape (..., B)) when `q` is not the
            distribution z was drawn from (a flow pushes q's samples
            through a bijection): the estimate is then always the sampled
            log_q - log p(z), never q's closed form.
    """
    if log_q is None:
        kl = analytic_kl(q, p)
        if kl is not None:
            return kl, True
    if callable(z):
        z = z()
    if z is None:
        z = q.sample()
    z = tf.cast(z, tf.float32)
    if log_q is None:
        log_q = q.log_prob(z)
    log_ratio = tf.cast(log_q, tf.float32) - p.log_prob(z)
    extra = len(log_ratio.shape) - len(q.batch_shape)
    if extra > 0:
        log_ratio = tf.reduce_mean(log_ratio, axis=list(range(extra)))
    return log_ratio, False


def kl_per_dimension(q, p):
    """Per-example, per-dimension KL, shape (B, L), or None.

    Defined when both q and p factorise over dimensions (diagonal
    Gaussians, or `Independent` univariate distributions with an analytic
    pairwise KL), which is what per-dimension free bits and active-unit
    diagnostics need.
    """
    q_dims, p_dims = _factors(q), _factors(p)
    if q_dims is None or p_dims is None:
        return None
    return analytic_kl(q_dims, p_dims)


def _factors(dist):
    """The univariate factors of a factorised distribution, or None."""
    if isinstance(dist, tfd.MultivariateNormalDiag):
        return tfd.Normal(dist.loc, dist.stddev())
    if isinstance(dist, tfd.Independent):
        return dist.distribution
    return None
