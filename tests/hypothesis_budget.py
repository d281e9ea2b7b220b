"""Hypothesis settings shared by the property-based tests.

`KERAS_VAE_HYPOTHESIS_EXAMPLES` scales the number of examples (default 40);
`KERAS_VAE_HYPOTHESIS_RANDOM=1` explores new examples instead of the fixed
(derandomised) sequence used in CI.
"""

import os

from hypothesis import HealthCheck, Phase, settings

MAX_EXAMPLES = int(os.environ.get("KERAS_VAE_HYPOTHESIS_EXAMPLES", "40"))
BUDGET = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("KERAS_VAE_HYPOTHESIS_RANDOM"),
    database=None,  # no replay of saved failures: same run every time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # No "explain" phase: it re-runs a failing example hundreds of times.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    print_blob=True,
)
