"""LatentSample: the base of the layers that `VAEModel` reads as a latent z.

A latent variable in a model graph is

```none
posterior params --(KLRegularizer)--> LatentSample([params..., context...]) --> z
```

The sampling layer knows the posterior family, so it is the one place that
answers what `VAEModel` asks of a latent: the posterior distribution for
given parameters, K reparameterised draws with their log-density, and a
deterministic point for reconstructions. Subclasses:
`ReparameterizedSample` (Gaussian), `IAFSample` (Gaussian pushed through an
inverse autoregressive flow), `GumbelSoftmaxSample` (relaxed one-hot
categorical), `CategoricalSample` (hard one-hot categorical, trained by
score-function gradients).
"""

import keras

from keras_vae.seed_state import SavesSeedState
from keras_vae.posteriors import posterior_distribution


class LatentSample(SavesSeedState, keras.layers.Layer):
    """Base class of the layers that draw a latent variable z ~ q(z | x).

    Subclass contract:
    - `num_params`: how many leading call inputs are posterior parameters
      (2 for `(loc, scale)`, 1 for logits); they are the tensors a
      `KLRegularizer` passes on. Further inputs are context (flows).
    - `sampled_kl`: True when log q(z | x) is not the density of
      `posterior(params)` (a flow), so the KL must be the sampled
      log q(z) - log p(z) at the drawn z, with `log_q` from `draw_latent`.
    - `relaxed`: True when training draws are a continuous relaxation of a
      discrete latent (Gumbel-softmax): they have no density under q, so
      objectives that need log q(z) at training draws (IWAE) refuse them.
    - `reparameterized`: False when z is not a differentiable function of
      the posterior parameters (hard categorical draws): the objective
      then gives the level score-function gradients (`ELBO`: REINFORCE
      with control variates; `IWAE`: VIMCO).
    - `family`: the posterior family, for objectives that accept only
      some (`"gaussian"`: `(loc, scale)` of a Normal, diagonal or full;
      `"flow"`, `"categorical"`, `"relaxed_categorical"`), so they need
      not import the layer classes.
    - `draw_latent(params, context, num_samples, seed, training)` ->
      `(z, log_q)`: z of shape `(num_samples * B, ...)`, sample-major (rows
      `k*B ... (k+1)*B - 1` are the k-th draw), and log q(z | x) of shape
      `(num_samples * B,)`, or None when it is `posterior(params).log_prob`.
    - `mode(params, context)`: the deterministic z used when the layer is
      called with `training=False` and `inference="mean"`, and by
      `VAEModel.reconstruct`.
    """

    num_params = 2
    family = None
    sampled_kl = False
    relaxed = False
    reparameterized = True

    def split_inputs(self, inputs):
        """`(params, context)` lists from the call inputs."""
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        return flat[: self.num_params], flat[self.num_params:]

    def posterior(self, params):
        """The TFP distribution q(z | x) of the posterior parameters."""
        return posterior_distribution(params)

    def draw_latent(self, params, context=(), num_samples=1, seed=None,
                    training=True):
        """`(z, log_q)`: `num_samples` draws per row, sample-major, and
        log q(z | x) or None (see the class doc)."""
        raise TypeError(
            f"{type(self).__name__} must define `draw_latent`; LatentSample "
            "is a base class."
        )

    def mode(self, params, context=()):
        """The deterministic z that reconstructions decode."""
        raise TypeError(
            f"{type(self).__name__} must define `mode`; LatentSample is a "
            "base class."
        )
