"""The layers that turn a Keras model into a VAE."""

from keras_vae.layers.categorical_sample import CategoricalSample
from keras_vae.layers.finite_scalar_quantizer import FiniteScalarQuantizer
from keras_vae.layers.gaussian_encoder_head import GaussianEncoderHead
from keras_vae.layers.gumbel_softmax_head import GumbelSoftmaxHead
from keras_vae.layers.gumbel_softmax_sample import GumbelSoftmaxSample
from keras_vae.layers.iaf_sample import IAFSample
from keras_vae.layers.kl_regularizer import KLRegularizer
from keras_vae.layers.latent_sample import LatentSample
from keras_vae.layers.reparameterized_sample import ReparameterizedSample
from keras_vae.layers.patchgan_discriminator import PatchGANDiscriminator
from keras_vae.layers.shared_log_scale import SharedLogScale
from keras_vae.layers.residual_vector_quantizer import ResidualVectorQuantizer
from keras_vae.layers.vector_quantizer import VectorQuantizer
from keras_vae.layers.missing_indicator import MissingIndicator

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
    "FiniteScalarQuantizer",
    "ResidualVectorQuantizer",
    "VectorQuantizer",
    "MissingIndicator",
]
