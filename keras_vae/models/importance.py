"""Can an importance-sampled answer be trusted? The low-ESS warning.

`log_likelihood` and `impute` weigh K draws from the encoder's q(z | x)
(the proposal) by w = p(x, z) / q(z | x). When q misses the posterior the
weights degenerate: one draw carries nearly all the weight, the estimate
rests on it, and log p(x) comes out low (E[x_mis | x_obs] noisy) with
nothing in the numbers to show it. Kish's effective sample size tells:

```none
ESS = (Σ_k w_k)² / Σ_k w_k²           K for equal weights, 1 for one dominant draw
ESS / K ≈ 1 / (1 + Var_q(w) / E_q[w]²)  the proposal's quality, whatever K
low  = ESS < fraction · K              per example (fraction 5 %)
warn when more than max_low_share of the examples are low (10 %), once per call
```

Refining each example's proposal first (`refine_steps=N`: N Adam steps on
its own ELBO, `keras_vae.models.refine`) brings q to the posterior the
model implies, and the ESS back toward K. A model trained on incomplete
rows with an encoder blind to the mask is the common case: its q(z | x)
cannot tell a missing entry from a 0.
"""

import warnings

import numpy as np

# An example's weights are degenerate below ESS_FRACTION * K.
ESS_FRACTION = 0.05
# The warning fires when more than this share of the examples is degenerate.
MAX_LOW_SHARE = 0.1


class LowEffectiveSampleSizeWarning(UserWarning):
    """The importance weights of many examples degenerated (see
    `keras_vae.models.importance`)."""


def low_ess(ess, num_samples, fraction=ESS_FRACTION):
    """Boolean mask of the examples whose ESS is below `fraction` · K."""
    return np.asarray(ess, dtype="float64") < float(fraction) * num_samples


def ess_message(ess, num_samples, method, fraction=ESS_FRACTION,
                max_low_share=MAX_LOW_SHARE):
    """The warning text when more than `max_low_share` of the examples
    have a low ESS (`low_ess`), else None."""
    ess = np.asarray(ess, dtype="float64").reshape(-1)
    if ess.size == 0:
        return None
    low = low_ess(ess, num_samples, fraction)
    share = float(np.mean(low))
    if share <= max_low_share:
        return None
    return (
        f"{method}: the importance weights of {int(low.sum())} of "
        f"{ess.size} examples ({share:.0%}) have an effective sample size "
        f"below {fraction:.0%} of K = {num_samples} (median ESS "
        f"{np.median(ess):.3g}): the encoder's q(z | x) is a poor proposal "
        "for them, so the estimate rests on a few draws (log p(x) likely "
        "too low, imputations noisy). Refine each example's proposal "
        f"first: {method}(..., refine_steps=300); or train an encoder that "
        "sees the missing-value mask (keras_vae.MissingIndicator)."
    )


def warn_if_low_ess(ess, num_samples, method, fraction=ESS_FRACTION,
                    max_low_share=MAX_LOW_SHARE, stacklevel=3):
    """Issues one `LowEffectiveSampleSizeWarning` for a call whose weights
    degenerated (`ess_message`); returns whether it did.

    Args:
        ess: per-example ESS (NumPy or tensor, any shape).
        num_samples: K.
        method: the name shown (`"log_likelihood"`, `"impute"`).
        fraction, max_low_share: the thresholds (module doc).
        stacklevel: as `warnings.warn` (3: the caller of the method that
            calls this).
    """
    message = ess_message(ess, num_samples, method, fraction, max_low_share)
    if message is None:
        return False
    warnings.warn(message, LowEffectiveSampleSizeWarning,
                  stacklevel=stacklevel)
    return True
