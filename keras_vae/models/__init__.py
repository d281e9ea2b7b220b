from keras_vae.models.vae_model import VAEModel

__all__ = ["VAEModel"]
