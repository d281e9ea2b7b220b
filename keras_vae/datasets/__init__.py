"""Datasets with known factors of variation, generated in code (no
download), for disentanglement metrics and experiments.

```none
Shapes       dSprites-like binary images: shape × scale × orientation × x × y
load_shapes  a random sample of Shapes: (images, factors)
```
"""

from keras_vae.datasets.shapes import Shapes, load_shapes

__all__ = ["Shapes", "load_shapes"]
