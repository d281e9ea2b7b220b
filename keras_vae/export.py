"""SavedModel export of a VAEModel for TF Serving (`VAEModel.export_serving`).

The signatures and how they are written: `keras_vae.models.export`.
"""

from keras_vae.models.export import export_serving

__all__ = ["export_serving"]
