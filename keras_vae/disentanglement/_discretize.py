"""Histogram discretisation and discrete information, as disentanglement_lib
computes them (`evaluation/metrics/utils.py`).

```none
bins(c)      = num_bins equal-width bins over [min c, max c]  (np.histogram)
c_binned     = index of the bin of c, 1 ... num_bins          (np.digitize on
                                                               the left edges)
I(c; y)      = Σ_{a,b} p(a, b) log(p(a, b) / (p(a) p(b)))     (nats)
H(y)         = I(y; y)
```
"""

import numpy as np

from keras_vae.disentanglement import _inputs


def histogram_discretize(codes, num_bins):
    """Each column of `codes` `(N, K)` binned into `num_bins` equal-width
    bins over its own range; int64 bin indices in 1 ... num_bins.

    The same bins as disentanglement_lib's `_histogram_discretize`: the
    left edges of `np.histogram(column, num_bins)` given to `np.digitize`
    (the maximum falls in the last bin; a constant column in bin 1 or
    the middle bin, one bin either way).
    """
    binned = np.empty(codes.shape, dtype=np.int64)
    for k in range(codes.shape[1]):
        edges = np.histogram(codes[:, k], num_bins)[1][:-1]
        binned[:, k] = np.digitize(codes[:, k], edges)
    return binned


def mutual_information(binned_codes, factors, metric):
    """`(num_codes, num_factors)` discrete mutual information in nats
    (sklearn.metrics.mutual_info_score, as disentanglement_lib)."""
    metrics = _inputs.sklearn(metric, "metrics")
    info = np.zeros((binned_codes.shape[1], factors.shape[1]))
    for i in range(binned_codes.shape[1]):
        for j in range(factors.shape[1]):
            info[i, j] = metrics.mutual_info_score(factors[:, j],
                                                   binned_codes[:, i])
    return info


def entropy(factors, metric):
    """`(num_factors,)` discrete entropy in nats, H(y) = I(y; y)."""
    metrics = _inputs.sklearn(metric, "metrics")
    return np.array([metrics.mutual_info_score(factors[:, j], factors[:, j])
                     for j in range(factors.shape[1])])
