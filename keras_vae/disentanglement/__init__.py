"""Disentanglement metrics: how well a representation separates known
factors of variation.

```none
mig               codes, factors -> float   Mutual Information Gap (Chen et al. 2018)
dci               codes, factors -> dict    disentanglement, completeness,
                                            informativeness (Eastwood & Williams 2018)
sap               codes, factors -> float   SAP score (Kumar et al. 2018)
factor_vae_score  representation_fn, sampler -> dict   (Kim & Mnih 2018)
beta_vae_score    representation_fn, sampler -> dict   (Higgins et al. 2017)
kl_decomposition  vae, x -> dict    index-code MI, total correlation,
                                    dimension-wise KL (Chen et al. 2018)
```

Each is computed as disentanglement_lib (Locatello et al. 2019) computes
it; each docstring says where it differs. `mig`, `dci` and `sap` take
arrays, `codes` `(N, num_codes)` (e.g. the posterior means of N examples)
and `factors` `(N, num_factors)` (integer labels, or real values for
`sap(..., continuous_factors=True)`). `factor_vae_score` and
`beta_vae_score` need examples with a factor held fixed, so they draw them
from a sampler (`keras_vae.datasets.Shapes` is one; see
`factor_vae_score`). All but `factor_vae_score` use scikit-learn, which
keras_vae does not depend on: `pip install "keras_vae[disentanglement]"`
(it is imported when a metric is called).
"""

from keras_vae.disentanglement.beta_vae import beta_vae_score
from keras_vae.disentanglement.dci import dci
from keras_vae.disentanglement.factor_vae import factor_vae_score
from keras_vae.disentanglement.kl_decomposition import kl_decomposition
from keras_vae.disentanglement.mig import mig
from keras_vae.disentanglement.sap import sap

__all__ = [
    "beta_vae_score",
    "dci",
    "factor_vae_score",
    "kl_decomposition",
    "mig",
    "sap",
]
