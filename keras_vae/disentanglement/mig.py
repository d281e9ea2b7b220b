"""The Mutual Information Gap (MIG) of Chen et al. (2018)."""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _discretize, _inputs


def mig(codes, factors, num_bins=20):
    """Mutual Information Gap: how much better the best code predicts each
    factor than the second best, as a fraction of the factor's entropy.

    ```none
    c_k      = codes[:, k] binned into num_bins equal-width bins over its range
    I[k, j]  = I(c_k; y_j)                       discrete mutual information
    H[j]     = H(y_j)                            discrete entropy
    MIG      = (1 / J) Σ_j (I[k_1(j), j] - I[k_2(j), j]) / H[j]
               k_1(j), k_2(j): the codes with the largest and second
               largest I[., j]
    ```

    1 when each factor is captured by one code alone (and completely), 0
    when the two best codes of each factor know as much about it. Computed
    as disentanglement_lib's `compute_mig` on its `(codes, factors)`
    sample: histogram discretisation (`histogram_discretizer`, 20 bins in
    its configs), `sklearn.metrics.mutual_info_score` for I and H (nats),
    mean over factors ("discrete_mig"). Needs scikit-learn
    (`pip install "keras_vae[disentanglement]"`).

    Differences from disentanglement_lib: it takes the arrays rather than
    sampling `num_train` points from a dataset (pass the codes of such a
    sample, e.g. 10,000 as its configs); a constant factor (H = 0, which
    disentanglement_lib turns into NaN) is an error here.

    Args:
        codes: `(N, num_codes)` array, the representation of N examples
            (e.g. the posterior means), num_codes >= 2.
        factors: `(N, num_factors)` array of integer labels (integer-valued
            floats are accepted), the ground-truth factors of the same
            examples; each takes at least two values.
        num_bins: positive int, bins per code dimension.

    Returns:
        The MIG, a float in [0, 1].

    Raises:
        ValueError: a non-2-D or non-finite array, N that differ, fewer
            than 2 examples or 2 code dimensions, non-integer or constant
            factors, or a bad `num_bins`.

    Example:

    ```python
    factors = np.random.default_rng(0).integers(0, 5, size=(1000, 2))
    keras_vae.disentanglement.mig(factors + 0.1, factors)  # 0.995
    ```

    References: Chen et al. 2018, "Isolating Sources of Disentanglement in
    Variational Autoencoders"; Locatello et al. 2019 (disentanglement_lib).
    """
    num_bins = v.check_positive_int("num_bins", num_bins)
    codes, factors = _inputs.codes_and_factors(codes, factors, "mig")
    _inputs.check_varies("factors", factors)
    binned = _discretize.histogram_discretize(codes, num_bins)
    info = _discretize.mutual_information(binned, factors, "mig")
    entropy = _discretize.entropy(factors, "mig")
    top_two = np.sort(info, axis=0)[::-1][:2]
    return float(np.mean((top_two[0] - top_two[1]) / entropy))
