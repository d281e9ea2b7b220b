"""TensorBoard pictures of a VAE during training: reconstructions and
samples from the prior."""

import numbers
import os

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from keras_vae import _validation as v
from keras_vae import _images

# The image summary of TensorBoard's "images" plugin, as `tf.summary.image`
# writes it: a string tensor [width, height, png] under this metadata. Written
# with `tf.summary.write` so that writing needs no `tensorboard` package.
_PLUGIN = "images"


def _image_summary(tag, image, step, description):
    """Writes one `(H, W, C)` float image in [0, 1] as an image summary."""
    pixels = np.round(image * 255.0).astype("uint8")
    png = tf.io.encode_png(pixels).numpy()
    tensor = tf.constant([str(image.shape[1]).encode(),
                          str(image.shape[0]).encode(), png])
    metadata = summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=_PLUGIN),
    )
    return tf.summary.write(tag, tensor, step=step, metadata=metadata)


class TensorBoardImages(keras.callbacks.Callback):
    """Writes reconstructions and prior samples to TensorBoard each epoch.

    Two image summaries per written epoch, in `log_dir/images` (a run of
    its own beside the `train` and `validation` runs of
    `keras.callbacks.TensorBoard`, which may share `log_dir`), at step =
    epoch (0-based, as Keras' callback):

    ```none
    reconstructions  rows of `ncols` inputs x, each followed by the row of
                     their reconstructions E[x | z = mode of q(z | x)]
                     (VAEModel.reconstruct)
    samples          `num_samples` draws E[x | z], z ~ p(z)
                     (VAEModel.sample, the same seed each time)
    ```

    The pictures are the likelihood's mean, in the data's units: values are
    mapped from `value_range` (default `(0, 1)`) to [0, 1] and clipped
    there for display (NaN shows as 0). Grey tiles are separated by
    mid-grey padding. The passes run after the epoch, outside the
    (XLA-compiled) train step, through the model's own inference functions,
    on the arrays given here: keep `x` small (8-32 examples). Writing needs
    no `tensorboard` package; viewing does (`tensorboard --logdir
    log_dir`).

    Args:
        log_dir: directory of the logs; the events go to `log_dir/images`.
        x: the examples to reconstruct: `(N, H, W, C)` images with C = 1
            or 3, `(N, H, W)` grey images, or flat `(N, D)` data with
            `image_shape`. For a model with several inputs, a list of
            arrays whose first one is the images (a conditional VAE's
            `[x, label]`).
        every_n_epochs: positive int; writes after epochs 0, n, 2n, ...
        num_samples: prior samples per picture (0: no samples).
        image_shape: `(H, W)` or `(H, W, C)`: the shape of one image, for
            flat data (each example is reshaped to it).
        seed: int seed of the prior draws (the same draws every epoch, so
            the pictures are comparable), or None for new draws each time.
        latent_shape: the shape of one z when the model does not know it
            (a fully convolutional model), passed to `VAEModel.sample`.
        condition: the decoder's other inputs for the samples of a
            conditional VAE (one row, broadcast, or `num_samples` rows),
            passed to `VAEModel.sample`.
        ncols: positive int, images per row of the pictures.
        value_range: `(low, high)` of the data (e.g. `(0, 255)` for
            `CategoricalNLL` levels): low shows black, high white.

    Example:

    ```python
    log_dir = "logs/vae"
    vae.fit(ds, epochs=50, callbacks=[
        keras.callbacks.TensorBoard(log_dir),
        keras_vae.callbacks.TensorBoardImages(log_dir, x_test[:16],
                                              image_shape=(28, 28)),
    ])
    ```
    """

    def __init__(self, log_dir, x, every_n_epochs=1, num_samples=16,
                 image_shape=None, seed=0, latent_shape=None, condition=None,
                 ncols=8, value_range=(0.0, 1.0)):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)):
            raise v.invalid("log_dir", "a directory path (str or "
                            "os.PathLike)", log_dir)
        self.log_dir = os.fspath(log_dir)
        self.every_n_epochs = v.check_positive_int(
            "every_n_epochs", every_n_epochs)
        if (isinstance(num_samples, bool)
                or not isinstance(num_samples, numbers.Integral)
                or num_samples < 0):
            raise v.invalid("num_samples", "a non-negative integer",
                            num_samples)
        self.num_samples = int(num_samples)
        self.image_shape = _images.check_image_shape(image_shape)
        self.seed = v.check_seed("seed", seed)
        self.latent_shape = latent_shape
        self.condition = condition
        self.ncols = v.check_positive_int("ncols", ncols)
        self.value_range = _images.check_value_range(value_range)
        if isinstance(x, dict):
            raise v.invalid("x", "an array, or a list of arrays for a model "
                            "with several inputs", "a dict")
        self.x = ([np.asarray(a) for a in x] if isinstance(x, (list, tuple))
                  else np.asarray(x))
        shown = self.x[0] if isinstance(self.x, list) else self.x
        self._inputs = _images.as_images(shown, self.image_shape, name="x")
        self._writer = None

    @property
    def images_dir(self):
        """The directory of the event files: `log_dir/images`."""
        return os.path.join(self.log_dir, "images")

    def on_train_begin(self, logs=None):
        model = self.model
        if not all(hasattr(model, m) for m in ("reconstruct", "sample")):
            raise TypeError(
                "TensorBoardImages needs a keras_vae.VAEModel (it calls "
                f"`reconstruct` and `sample`). Received a model of type "
                f"{type(model).__name__}: '{model.name}'."
            )
        if self.num_samples:
            # Fail before training, not after the first epoch.
            # The same checks as every epoch's draw (latent_shape,
            # condition), through the public API: one draw now.
            model.sample(self.num_samples, seed=self.seed,
                         condition=self.condition,
                         latent_shape=self.latent_shape)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.images_dir)

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every_n_epochs == 0:
            self.write(epoch)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write(self, step):
        """Writes the pictures now, at `step` (called after each
        `every_n_epochs`-th epoch by `fit`; needs `set_model`)."""
        shape = self.image_shape
        recon = _images.as_images(self.model.reconstruct(self.x), shape,
                                    name="x")
        if recon.shape[1:] != self._inputs.shape[1:]:
            raise ValueError(
                "TensorBoardImages: the reconstructions have image shape "
                f"{recon.shape[1:]}, the inputs {self._inputs.shape[1:]}; "
                "pass `x` whose first array is what the model reconstructs."
            )
        inputs = _images.to_unit(self._inputs, self.value_range)
        recon = _images.to_unit(recon, self.value_range)
        rows = []
        for start in range(0, len(inputs), self.ncols):
            rows += [inputs[start:start + self.ncols],
                     recon[start:start + self.ncols]]
        ncols = min(self.ncols, len(inputs))
        pictures = [(
            "reconstructions",
            _images.tile_rows(rows, ncols, pad=1, pad_value=0.5),
            "Inputs (rows 1, 3, ...) and their reconstructions (rows 2, "
            "4, ...): the likelihood mean at the posterior mode, mapped "
            f"from {self.value_range} to [0, 1] and clipped.",
        )]
        if self.num_samples:
            samples = self.model.sample(
                self.num_samples, seed=self.seed, condition=self.condition,
                latent_shape=self.latent_shape)
            samples = _images.to_unit(
                _images.as_images(samples, shape, name="image_shape"),
                self.value_range)
            n = min(self.ncols, len(samples))
            pictures.append((
                "samples",
                _images.tile_rows(
                    [samples[i:i + n] for i in range(0, len(samples), n)],
                    n, pad=1, pad_value=0.5),
                f"Decoded draws from the prior (seed {self.seed}): the "
                f"likelihood mean, mapped from {self.value_range} to [0, 1] "
                "and clipped.",
            ))
        writer = self._writer
        if writer is None:  # `write` called outside `fit`
            writer = tf.summary.create_file_writer(self.images_dir)
        # record_if(True): keras.callbacks.TensorBoard may have pushed a
        # record_if condition for its batch-level summaries.
        with writer.as_default(), tf.summary.record_if(True):
            for tag, canvas, description in pictures:
                _image_summary(tag, canvas, int(step), description)
        writer.flush()
        if writer is not self._writer:
            writer.close()
