"""The ground-truth sampler protocol of `factor_vae_score` and
`beta_vae_score`, and the checked calls into it.

A sampler is any object with two methods (disentanglement_lib's
`GroundTruthData` has both, with a `np.random.RandomState`):

```none
sample_factors(num, rng)                     -> (num, num_factors) integer factors
sample_observations_from_factors(factors, rng) -> num observations
```

`rng` is a `np.random.Generator`. `keras_vae.datasets.Shapes` is one.
The representation is a callable `representation_fn(observations)` ->
`(num, num_codes)` codes (NumPy or a tensor), e.g. a VAE's posterior means.
"""

import numpy as np

from keras_vae import _validation as v
from keras_vae.disentanglement import _inputs

# `sample_observations_from_factors` and `representation_fn` are called on
# whole groups of about this many observations (memory, not results: the
# factors are drawn before, and a deterministic sampler gives the same
# observations in any chunking).
OBSERVATIONS_PER_CALL = 2048

SAMPLER = ("a sampler with methods sample_factors(num, rng) and "
           "sample_observations_from_factors(factors, rng) (e.g. "
           "keras_vae.datasets.Shapes)")


def check_sampler(sampler):
    for method in ("sample_factors", "sample_observations_from_factors"):
        if not callable(getattr(sampler, method, None)):
            raise v.invalid("sampler", SAMPLER, sampler)
    return sampler


def check_representation_fn(representation_fn):
    if not callable(representation_fn):
        raise v.invalid("representation_fn",
                        "a callable observations -> (num, num_codes) codes",
                        representation_fn)
    return representation_fn


def sample_factors(sampler, num, rng, metric):
    """`sampler.sample_factors(num, rng)` as checked int64 `(num, F)`."""
    factors = sampler.sample_factors(num, rng)
    array = _inputs.as_matrix("sampler", factors, "num_factors")
    if len(array) != num:
        raise _inputs.invalid_array(
            "sampler", f"sample_factors({num}, rng) to return {num} rows",
            f"shape {array.shape}")
    return _inputs.as_discrete("sampler", array, metric)


def represent(sampler, representation_fn, factors, rng, metric):
    """Codes `(num, K)` of the observations of `factors`, in chunks of
    whole groups (`factors` is `(groups, group_size, F)`); returns
    `(groups, group_size, K)`."""
    groups, size, _ = factors.shape
    per_call = max(1, OBSERVATIONS_PER_CALL // size)
    chunks = []
    for start in range(0, groups, per_call):
        part = factors[start:start + per_call]
        flat = part.reshape(-1, part.shape[-1])
        observations = sampler.sample_observations_from_factors(flat, rng)
        codes = _inputs.as_matrix("representation_fn",
                                  representation_fn(observations),
                                  "num_codes")
        if len(codes) != len(flat):
            raise _inputs.invalid_array(
                "representation_fn",
                f"codes (num, num_codes) for its {len(flat)} observations",
                f"codes of shape {codes.shape}")
        chunks.append(codes.reshape(len(part), size, -1))
    return np.concatenate(chunks)


def check_common(batch_size, num_train, num_eval, seed):
    return (_inputs.check_int("batch_size", batch_size, 2),
            v.check_positive_int("num_train", num_train),
            v.check_positive_int("num_eval", num_eval),
            v.check_seed("seed", seed))
