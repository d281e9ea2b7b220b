"""keras_vae: Keras 3 layers for variational autoencoders on TFP.

```python
q = keras_vae.GaussianEncoderHead(latent_dim=32)(h)
q = keras_vae.KLRegularizer()(q)
z = keras_vae.ReparameterizedSample()(q)
...
vae = keras_vae.VAEModel(x_in, logits)
vae.compile(loss=keras_vae.losses.BernoulliNLL())
```
"""

from keras_vae import (
    callbacks,
    datasets,
    disentanglement,
    evaluate,
    losses,
    objectives,
    plotting,
    priors,
)
from keras_vae.layers import (
    CategoricalSample,
    GaussianEncoderHead,
    GumbelSoftmaxHead,
    GumbelSoftmaxSample,
    IAFSample,
    KLRegularizer,
    LatentSample,
    ReparameterizedSample,
)
from keras_vae.layers import PatchGANDiscriminator, SharedLogScale
from keras_vae.layers import (
    FiniteScalarQuantizer,
    ResidualVectorQuantizer,
    VectorQuantizer,
)
from keras_vae.layers import MissingIndicator
from keras_vae.models import VAEModel

__version__ = "0.1.0"

__all__ = [
    "CategoricalSample",
    "GaussianEncoderHead",
    "GumbelSoftmaxHead",
    "GumbelSoftmaxSample",
    "IAFSample",
    "KLRegularizer",
    "LatentSample",
    "ReparameterizedSample",
    "PatchGANDiscriminator",
    "SharedLogScale",
    "VAEModel",
    "FiniteScalarQuantizer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "MissingIndicator",
    "callbacks",
    "datasets",
    "disentanglement",
    "evaluate",
    "losses",
    "objectives",
    "plotting",
    "priors",
]
