"""β-TCVAE: the KL of the ELBO split in three, the total correlation weighted.

```none
E_p(x) KL(q(z|x) ‖ p(z)) = I_q(x; z)                 index-code mutual information
                         + KL(q(z) ‖ Π_d q(z_d))     total correlation (TC)
                         + Σ_d KL(q(z_d) ‖ p(z_d))   dimension-wise KL
q(z) = (1/N) Σ_n q(z | x_n)                          the aggregate posterior of N examples

per example, at z_i ~ q(z | x_i) (batch of B):
  mi_i   = log q(z_i | x_i) - log q̂(z_i)
  tc_i   = log q̂(z_i)       - Σ_d log q̂(z_id)
  dwkl_i = Σ_d log q̂(z_id)  - log p(z_i)             (the three add up to
                                                      log q(z_i|x_i) - log p(z_i))
  q̂(z_i)   = Σ_j w_ij q(z_i | x_j),   q̂(z_id) = Σ_j w_ij q(z_id | x_j)

minibatch-weighted sampling (MWS):   w_ij = 1 / (N B)
minibatch-stratified sampling (MSS): w_ii = 1 / N,  w_i,i+1 = (N - M) / (N M),
                                     w_ij = 1 / M otherwise;   M = B - 1
```

MWS is the estimator of the paper's experiments; MSS the one the authors'
code calls "the improved minibatch estimator" (its weights sum to 1 over
the batch, and q̂(z) is unbiased for q(z) at a fixed z). MWS weights sum to
1/N: every log q̂ is log N too small where the other examples' posteriors
dominate (log B where the example's own does), so its TC carries a bias of
up to (D - 1)·log N (disentanglement_lib's comment: "the constant should
be (num_latents - 1) * log(batch_size * dataset_size)"), a constant that
does not change the gradient much but does change the reported value.

References: Chen, Li, Grosse & Duvenaud, "Isolating Sources of
Disentanglement in Variational Autoencoders", 2018 (β-TCVAE, MWS, MSS);
the authors' code rtqichen/beta-tcvae (`VAE.elbo`,
`_log_importance_weight_matrix`).
"""

import math

import keras
import tensorflow as tf

from keras_vae import _validation as v
from keras_vae.objectives.base import Objective

SAMPLINGS = ("mss", "mws")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_dataset_size(dataset_size):
    """`dataset_size` as a positive Python int, or the template error."""
    if dataset_size is None:
        raise v.invalid(
            "dataset_size",
            "a positive integer: N, the number of training examples (the "
            "aggregate posterior q(z) averages over them)", None)
    return v.check_positive_int("dataset_size", dataset_size)


def log_importance_weights(batch_size, dataset_size, sampling="mss",
                           dtype=tf.float32):
    """log w (B, B) of MWS or MSS: row i weighs q(z_i | x_j) for each j.

    As the paper defines the estimators (see the module doc). For MSS the
    sample's own posterior (the diagonal) has weight 1/N and column
    (i + 1) mod B the stratum weight (N - M)/(N M); the authors' code puts
    1/N in column 0 and the stratum weight in column 1 of every row
    instead (its strided writes move down a column, not along the
    diagonal; rtqichen/beta-tcvae pull request 1), which gives the
    sample's own posterior weight 1/M in every row but the first.

    `batch_size` may be a tensor; `dataset_size` is raised to the batch
    size when smaller (a batch larger than the dataset has no estimator;
    `tc_decomposition` refuses it where it can).
    """
    b = tf.cast(batch_size, dtype)
    n = tf.maximum(tf.cast(dataset_size, dtype), b)
    if sampling == "mws":
        return tf.fill(tf.stack([batch_size, batch_size]),
                       -tf.math.log(n * b))
    m = tf.maximum(b - 1.0, 1.0)
    eye = tf.eye(batch_size, dtype=dtype)
    stratum = tf.roll(eye, shift=1, axis=1)  # (i, i + 1 mod B)
    w = tf.where(eye > 0, 1.0 / n,
                 tf.where(stratum > 0, (n - m) / (n * m), 1.0 / m))
    return tf.math.log(w)


def _normal_log_prob(z, loc, scale):
    return (-0.5 * tf.square((z - loc) / scale) - tf.math.log(scale)
            - _HALF_LOG_2PI)


def decomposition_terms(z, loc, scale, log_w, own, log_pz=None):
    """`(log q(z|x), log q̂(z), Σ_d log q̂(z_d), log p(z))` for rows of z.

    Args:
        z: `(..., R, L)` draws; row r was drawn from posterior `own[r]`.
        loc, scale: `(B, L)` the posteriors of the batch.
        log_w: `(R, B)` log weights of the rows (rows of
            `log_importance_weights`).
        own: `(R,)` int, the column of each row's own posterior.
        log_pz: `(..., R)` log p(z), or None for the standard normal.

    Each output has shape `(..., R)`.
    """
    log_q = _normal_log_prob(z[..., :, None, :], loc, scale)  # (..., R, B, L)
    joint = tf.reduce_sum(log_q, axis=-1)                      # (..., R, B)
    log_qzx = tf.reduce_sum(
        _normal_log_prob(z, tf.gather(loc, own), tf.gather(scale, own)), -1)
    log_qz = tf.reduce_logsumexp(joint + log_w, axis=-1)
    log_prod = tf.reduce_sum(
        tf.reduce_logsumexp(log_q + log_w[..., None], axis=-2), axis=-1)
    if log_pz is None:
        log_pz = tf.reduce_sum(-0.5 * tf.square(z) - _HALF_LOG_2PI, -1)
    return log_qzx, log_qz, log_prod, tf.cast(log_pz, z.dtype)


def tc_decomposition(z, loc, scale, dataset_size, sampling="mss",
                     log_pz=None):
    """Per-example minibatch estimates of the three terms of the KL.

    ```none
    mi_i   = log q(z_i | x_i) - log q̂(z_i)             index-code MI
    tc_i   = log q̂(z_i) - Σ_d log q̂(z_id)              total correlation
    dwkl_i = Σ_d log q̂(z_id) - log p(z_i)               dimension-wise KL
    mi_i + tc_i + dwkl_i = log q(z_i | x_i) - log p(z_i)   (exactly)
    ```

    q̂ is the aggregate posterior of a dataset of N = `dataset_size`
    examples, estimated from the batch's posteriors by minibatch-weighted
    (`"mws"`) or minibatch-stratified (`"mss"`) sampling (Chen et al.
    2018; see `keras_vae.objectives.beta_tcvae`). Their batch means
    estimate the three terms of E_p(x) KL(q(z|x) ‖ p(z)).

    Args:
        z: `(..., B, L)` draws, row i from q(z | x_i) (leading axes: K
            draws per example).
        loc, scale: `(B, L)` the diagonal Gaussian posteriors of the batch.
        dataset_size: N, a positive int, at least the batch size B.
        sampling: `"mss"` (default) or `"mws"`.
        log_pz: log p(z_i) of shape `(..., B)`, or None (default) for the
            standard normal prior.

    Returns:
        `(mi, tc, dwkl)`, each of shape `(..., B)`, in z's dtype.

    Raises:
        ValueError: `dataset_size` not a positive int or smaller than a
            batch size known when called (eagerly, or at trace time with
            a static batch), a batch of fewer than 2, or a bad `sampling`.
            With a batch size known only at run time the check runs in
            graph mode (an `InvalidArgumentError`); XLA drops it, and N is
            then taken to be at least B.

    Example:

    ```python
    mi, tc, dwkl = keras_vae.objectives.tc_decomposition(
        z, loc, scale, dataset_size=60000, sampling="mss")
    ```
    """
    dataset_size = check_dataset_size(dataset_size)
    v.check_choice("sampling", sampling, SAMPLINGS)
    z = tf.convert_to_tensor(z)
    if not z.dtype.is_floating:
        z = tf.cast(z, tf.float32)
    loc = tf.cast(loc, z.dtype)
    scale = tf.cast(scale, z.dtype)
    static = z.shape[-2] if z.shape.rank else None
    if static is not None:
        _check_batch(static, dataset_size)
        batch = static
    else:
        batch = tf.shape(z)[-2]
        tf.debugging.assert_less_equal(
            batch, dataset_size,
            message=_too_small_message(dataset_size, "B"))
    log_w = log_importance_weights(batch, dataset_size, sampling, z.dtype)
    log_qzx, log_qz, log_prod, log_pz = decomposition_terms(
        z, loc, scale, log_w, tf.range(batch), log_pz)
    return log_qzx - log_qz, log_qz - log_prod, log_prod - log_pz


def _too_small_message(dataset_size, batch):
    return (
        "Invalid value received for argument `dataset_size`. Expected N, "
        f"the number of training examples, at least the batch size ({batch}) "
        f"(a batch is drawn from the dataset). Received: "
        f"dataset_size={dataset_size!r}"
    )


def _check_batch(batch, dataset_size):
    if batch > dataset_size:
        raise ValueError(_too_small_message(dataset_size, batch))
    if batch < 2:
        raise ValueError(
            "The aggregate posterior q(z) is estimated from the other "
            "examples of the batch, so a batch needs at least 2 examples. "
            f"Received: a batch of {batch}"
        )


def check_flat_gaussian(model, objective, diagonal=True, what=None):
    """Refuses a model that is not one flat Gaussian latent: one level, a
    `ReparameterizedSample` with a diagonal scale (or any reparameterized
    continuous latent when `diagonal` is False), z of shape (B, L).
    `objective` is named in the messages (or
    `what`, e.g. "kl_decomposition", with `objective=None`)."""
    name = what or type(objective).__name__
    received = "" if objective is None else (
        f" Received: objective={objective!r}")
    levels = getattr(model, "levels", None)
    if levels is None:
        raise ValueError(
            f"{name} needs a keras_vae.VAEModel. Received: {model!r}")
    if len(levels) != 1:
        raise ValueError(
            f"{name} scores one latent; VAEModel '{model.name}' has "
            f"{len(levels)} levels ({[l.name for l in levels]})." + received
        )
    level = levels[0]
    sampler = level.sampler
    if diagonal:
        outputs = level.stage.outputs
        gaussian = sampler.family == "gaussian"
        full = gaussian and len(outputs[1].shape) > len(outputs[0].shape)
        if not gaussian or full:
            raise ValueError(
                f"{name} needs a diagonal Gaussian posterior "
                "(GaussianEncoderHead(covariance='diag') -> KLRegularizer "
                "-> ReparameterizedSample): its estimate of the aggregate "
                "posterior factorises q(z | x) over dimensions. "
                f"'{level.name}' is a {type(sampler).__name__}"
                + ("" if not gaussian else " with a full covariance")
                + "." + received
            )
    elif sampler.family == "quantized":
        raise ValueError(
            f"{name} needs a continuous latent with a posterior density; "
            f"'{level.name}' is vector-quantised (a deterministic one-hot "
            "posterior)." + received
        )
    elif not sampler.reparameterized or sampler.relaxed:
        raise ValueError(
            f"{name} needs a continuous reparameterized latent; "
            f"'{level.name}' is a {type(sampler).__name__} (one-hot "
            "draws)." + received
        )
    if len(level.z_shape) != 1:
        raise ValueError(
            f"{name} needs a flat latent z of shape (batch, L) (its terms "
            f"are over the latent dimensions); '{level.name}' has shape "
            f"(batch, *{tuple(level.z_shape)}). Use GaussianEncoderHead("
            "flatten=True)." + received
        )


@keras.saving.register_keras_serializable(package="keras_vae")
class BetaTCVAE(Objective):
    """The β-TCVAE objective (Chen et al. 2018): the ELBO with the total
    correlation of the aggregate posterior weighted by β.

    ```none
    loss = E_b[ -(1/K) Σ_k log p(x_b | z_k)
                + w · (α·mi_b + β·tc_b + γ·dwkl_b) ]          the paper's
         = E_b[ -(1/K) Σ_k log p(x_b | z_k)
                + w · (KL_b + (α-1)·mi_b + (β-1)·tc_b + (γ-1)·dwkl_b) ]  computed
    ```

    mi, tc and dwkl are the per-example minibatch estimates of
    `tc_decomposition` (the aggregate posterior q(z) of `dataset_size`
    examples estimated from the batch by `sampling`), averaged over the K
    draws. Their sum is the sampled KL log q(z|x) - log p(z) at the same
    z, whose expectation is the analytic KL_b, so the computed form has
    the paper's expected loss and gradient with less variance (as
    disentanglement_lib writes β-TCVAE: `kl_loss + (beta - 1) * tc`).
    α = β = γ = 1 gives the ELBO. w is the `KLRegularizer`'s weight (1
    unless a callback anneals it: KL warm-up scales the whole KL).

    `fit` reports, besides `loss`, `elbo`, `reconstruction` and `kl`, the
    batch means `mutual_information`, `total_correlation` and
    `dimension_wise_kl` (estimates with the bias of their estimator; see
    the module doc: MWS adds up to (L - 1)·log N nats to the TC).

    The model must have one flat latent with a diagonal Gaussian
    posterior (`GaussianEncoderHead` -> `KLRegularizer` ->
    `ReparameterizedSample`); `compile` refuses others, and free bits or
    a KL capacity.

    `dataset_size` must be at least the batch size. It is checked when
    the batch size is known at trace time (`compute_objective` eagerly; a
    `tf.data` pipeline batched with `drop_remainder=True`); under XLA
    with a batch of unknown size the check cannot run and N is taken to
    be at least the batch.

    Args:
        beta: β, the weight of the total correlation (default 6.0; the
            paper's dSprites runs use β = 6).
        dataset_size: N, the number of training examples (required).
        sampling: `"mss"` (default; minibatch-stratified sampling, the
            authors' improved estimator) or `"mws"` (minibatch-weighted
            sampling, the paper's experiments).
        alpha: α, the weight of the index-code mutual information
            (default 1.0).
        gamma: γ, the weight of the dimension-wise KL (default 1.0).
        num_samples: K, draws of z per example (default 1); each draw's
            batch is scored against the batch's posteriors.

    Example:

    ```python
    vae.compile(loss=keras_vae.losses.BernoulliNLL(),
                objective=keras_vae.objectives.BetaTCVAE(
                    beta=6.0, dataset_size=len(x_train)))
    ```

    References: Chen, Li, Grosse & Duvenaud, "Isolating Sources of
    Disentanglement in Variational Autoencoders", 2018.
    """

    def __init__(self, beta=6.0, dataset_size=None, sampling="mss",
                 alpha=1.0, gamma=1.0, num_samples=1):
        super().__init__(num_samples)
        self.beta = v.check_float("beta", beta, minimum=0.0)
        self.dataset_size = check_dataset_size(dataset_size)
        self.sampling = v.check_choice("sampling", sampling, SAMPLINGS)
        self.alpha = v.check_float("alpha", alpha, minimum=0.0)
        self.gamma = v.check_float("gamma", gamma, minimum=0.0)

    def check(self, model):
        check_flat_gaussian(model, self)
        kl = model.levels[0].kl
        if kl.free_bits > 0 or kl.capacity is not None:
            raise ValueError(
                "BetaTCVAE weighs the KL's three terms itself and has no "
                "place for the free bits or KL capacity that KLRegularizer "
                f"'{kl.name}' sets. Received: objective={self!r}"
            )

    def compute(self, trace, state=None, sample_weight=None, tape=None):
        level = trace.levels[0]
        loc, scale = level.params
        mi, tc, dwkl = tc_decomposition(
            trace.unfolded_z(0), loc, scale, self.dataset_size,
            self.sampling, log_pz=level.log_p)
        mi, tc, dwkl = (tf.reduce_mean(t, axis=0) for t in (mi, tc, dwkl))
        if level.analytic_kl:
            regulariser = (level.kl + (self.alpha - 1.0) * mi
                           + (self.beta - 1.0) * tc
                           + (self.gamma - 1.0) * dwkl)
        else:
            regulariser = self.alpha * mi + self.beta * tc + self.gamma * dwkl
        weight = tf.cast(level.kl_weight, tf.float32)
        loss = (self.batch_mean(trace.reconstruction, sample_weight)
                + weight * self.batch_mean(regulariser, sample_weight))
        return loss, {
            **self.standard_metrics(trace, sample_weight),
            "mutual_information": self.batch_mean(mi, sample_weight),
            "total_correlation": self.batch_mean(tc, sample_weight),
            "dimension_wise_kl": self.batch_mean(dwkl, sample_weight),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "dataset_size": self.dataset_size,
            "sampling": self.sampling,
            "alpha": self.alpha,
            "gamma": self.gamma,
        }
