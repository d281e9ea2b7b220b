"""A VAE on colour photo patches built from keras-hub's Stable-Diffusion VAE.

keras_vae on a network nobody wrote for it: the convolutional encoder and
decoder of keras-hub's `VAEBackbone` (the latent autoencoder of Stable
Diffusion 3, built small here) with keras_vae's latent layers between them:

    x (B, P, P, 3) in [0, 1]
      -> Rescaling to [-1, 1]
      -> backbone.encoder            (B, P/f, P/f, 2C)  keras-hub VAEEncoder
      -> GaussianEncoderHead(C, flatten=False)  (loc, scale), (B, P/f, P/f, C)
      -> KLRegularizer               KL(q || N(0, I)), summed over h, w, C
      -> ReparameterizedSample       z (B, P/f, P/f, C)
      -> backbone.decoder            (B, P, P, F)       keras-hub VAEDecoder
      -> Conv2D 1x1                  discretized logistic mixture params

with f = 2 ** (len(--filters) - 1) and C = --latent-channels. The backbone's
own `distribution_sampler` (split into mean / log-variance, sample) is not
used: keras_vae's head, KL and sampler replace it, and the backbone is built
with `sample_channels=2C` so that its decoder reads a C-channel latent.

Data: 8-bit RGB patches (--patch, default 16x16) cut from the two photos
bundled with scikit-learn (`load_sample_images()`: china.jpg, flower.jpg,
427x640 each, no download). Each photo is split by columns: the left part
(1 - --test-fraction) gives training patches, the right part test patches,
so no test pixel is ever seen in training. Pixels are scaled to
[0, 1] (level / 255), the grid `DiscretizedLogisticMixtureNLL` scores.

It prints one line per epoch, the training time, then the test
log-likelihood (importance sampled, K = --num-samples) in nats and in bits
per dimension,

    bits/dim = -log p(x) / (P * P * 3 * ln 2),

where p(x) is a probability mass over the 256 levels of each subpixel (the
likelihood is discrete, so no change-of-variables term; a uniform model
scores exactly 8 bits/dim). It writes to --out: patches.png (test
patches, their reconstructions and samples from the prior), vae.keras
(reloaded once to check it reconstructs the same), results.json and
saved_model/ (TF Serving; skip with --no-export).

`--recipe ldm` trains the latent-diffusion autoencoder recipe
(`keras_vae.objectives.AutoencoderKL`) against the ELBO, side by side, on
our own small conv autoencoder (32x32 crops -> latent (8, 8, 4), f = 4,
245k weights; the backbone above, filters 32-32-32 at the same size and
weight count, took 217 ms per ELBO step against 56-119 ms here, batch 16,
on a busy 2-core CPU). Four variants
from the same initial weights, on the same random 32x32 crops of the
training columns (a fixed stream), --steps each:

    elbo        objective "elbo" (β = 1), LaplaceNLL(scale="learned_scalar")
                with SharedLogScale (a true ELBO with a learned L1 scale)
    l1_kl       AutoencoderKL(kl_weight=1e-6): L1 (LaplaceNLL(scale=1)) + 1e-6 KL
    perceptual  + perceptual_weight * D * LPIPS on a random VGG-style net
    full        + PatchGAN (2 layers, 32 filters), adaptive weight, from
                step --disc-start * --steps: the whole recipe

Each is scored on the test patches (decoded posterior means, clipped to
[0, 1]): PSNR and SSIM (`keras_vae.evaluate.reconstruction_quality`), the
Fréchet distance between test patches and reconstructions in a fixed
random conv net's pooled features (`keras_vae.evaluate.frechet_distance`;
no ImageNet network is available offline, and this net is not the one the
perceptual term trains with), sharpness (the Laplacian energy of the
reconstructions over the inputs': 1 = as much high-frequency detail), the
mean L1 error, the train time and the steady-state time per step. It
prints the table and writes ldm_recipe.png (test patches, ELBO, full
recipe) and results.json to --out.

Run from the repository root:
    python examples/latent_autoencoder.py              # ~6 min on 2 CPUs
    python examples/latent_autoencoder.py --quick --out /tmp/lae_smoke
    python examples/latent_autoencoder.py --patch 32 --filters 32 32 32 32
    python examples/latent_autoencoder.py --recipe ldm  # ~10 min on 2 CPUs
    python examples/latent_autoencoder.py --recipe ldm --quick --out /tmp/ldm
"""

import argparse
import json
import math
import os
import pathlib
import time

from _quiet_tf import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()  # TF's C++ start-up lines off (see _quiet_tf.py)

import keras  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_vae  # noqa: E402
# Shared with the main example (same directory, so importable when run).
from mnist_vae import EpochTimer, check_finite, positive_int  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

try:  # public in some keras-hub releases, only under src/ in others
    from keras_hub.models import VAEBackbone  # noqa: E402
except ImportError:
    from keras_hub.src.models.vae.vae_backbone import VAEBackbone  # noqa: E402

CHANNELS, NUM_LEVELS = 3, 256  # RGB, 8-bit
LDM_STEPS, LDM_PATCH, LDM_BATCH, LDM_QUICK_STEPS, LDM_QUICK_TEST = (
    1000, 32, 16, 6, 32)
# --recipe ldm: four variants of one small conv autoencoder, trained on the
# same random crops for the same number of steps from the same weights.
LDM_VARIANTS = {
    "elbo": "ELBO (β = 1, learned Laplace scale)",
    "l1_kl": "L1 + 1e-6 KL (recipe, no perceptual / GAN)",
    "perceptual": "+ perceptual (LPIPS on random features)",
    "full": "+ PatchGAN, adaptive weight (full recipe)",
}

GROUPS = 32  # the backbone's GroupNormalization groups: filters % 32 == 0
DEFAULT_EPOCHS = 30
QUICK_EPOCHS, QUICK_TRAIN, QUICK_TEST, QUICK_NUM_SAMPLES = 2, 512, 64, 10
NUM_SHOWN, GRID_COLUMNS, GRID_PAD = 16, 8, 1  # tiles per row of the PNG


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--epochs", type=positive_int,
        help=f"training epochs (default: {DEFAULT_EPOCHS}; {QUICK_EPOCHS} "
        "with --quick)")
    add("--patch", type=positive_int,
        help="patch side P in pixels, a multiple of 2 ** (len(filters) - 1) "
        f"(default: 16; {LDM_PATCH} with --recipe ldm)")
    add("--train-stride", type=positive_int,
        help="step between training patches (default: --patch, no overlap; "
        "smaller overlaps them, more data per epoch)")
    add("--test-fraction", type=float, default=0.2,
        help="right-hand fraction of each photo's columns kept for testing "
        "(default: %(default)s)")
    add("--latent-channels", type=positive_int, default=4,
        help="channels C of the latent map (default: %(default)s, as SD)")
    add("--filters", type=positive_int, nargs="+", default=[32, 32, 32],
        help="encoder filters per resolution, multiples of 32, reversed for "
        "the decoder; f = 2 ** (levels - 1) (default: 32 32 32)")
    add("--blocks", type=positive_int, nargs="+",
        help="ResNet blocks per resolution (default: 1 per level)")
    add("--components", type=positive_int, default=5,
        help="logistic mixture components per subpixel "
        "(default: %(default)s)")
    add("--batch-size", type=positive_int,
        help=f"patches per step (default: 32; {LDM_BATCH} with --recipe ldm)")
    add("--learning-rate", type=float, default=1e-3,
        help="Adam learning rate (default: %(default)s)")
    add("--num-samples", type=positive_int, default=100,
        help="importance samples K for the test log-likelihood "
        "(default: %(default)s)")
    add("--test-examples", type=positive_int,
        help="evaluate on N test patches only (default: all)")
    add("--out", type=pathlib.Path,
        default=pathlib.Path("outputs/latent_autoencoder"),
        help="output directory (default: %(default)s)")
    add("--seed", type=int, default=0,
        help="seed of shuffling, weights and noise (default: 0)")
    # VAEModel compiles with XLA by default. Measured on 2 CPU cores for
    # this conv net (batch 32, 16x16 patches): ~200 patches/s with XLA
    # against ~270 without (TF's oneDNN convolutions beat XLA's on CPU).
    add("--xla", action="store_true", help="XLA-compile the train/test "
        "steps (VAEModel's default; off here: slower on CPU for this conv "
        "net)")
    add("--no-export", action="store_true", help="skip the SavedModel")
    add("--quick", action="store_true", help=f"smoke test: {QUICK_EPOCHS} "
        f"epochs on {QUICK_TRAIN} training patches, {QUICK_TEST} test "
        f"patches, K <= {QUICK_NUM_SAMPLES} (--recipe ldm: {LDM_QUICK_STEPS} "
        f"steps per variant, {LDM_QUICK_TEST} test patches)")
    ldm = p.add_argument_group(
        "--recipe ldm (the latent-diffusion autoencoder recipe, compared "
        "with the ELBO; our own conv autoencoder, Laplace likelihood)")
    ldm.add_argument(
        "--recipe", choices=("elbo", "ldm"), default="elbo",
        help="elbo (default): the keras-hub backbone trained by the ELBO; "
        "ldm: four variants side by side, ELBO / L1 + KL / + perceptual / "
        "+ PatchGAN (the full AutoencoderKL recipe)")
    ldm.add_argument(
        "--steps", type=positive_int,
        help=f"training steps per variant (default: {LDM_STEPS})")
    ldm.add_argument(
        "--ldm-filters", type=positive_int, nargs="+", default=[32, 64],
        help="encoder filters per halving, reversed for the decoder "
        "(default: 32 64, f = 4)")
    ldm.add_argument(
        "--disc-start", type=float, default=0.5,
        help="discriminator_start as a fraction of --steps (default: "
        "%(default)s; the KL-f8 config: 50001 steps)")
    ldm.add_argument(
        "--perceptual-weight", type=float, default=0.5,
        help="per element (default: %(default)s: the reference's 1.0 on "
        "[-1, 1] images, whose L1 is twice ours on [0, 1])")
    ldm.add_argument(
        "--variants", nargs="+", choices=tuple(LDM_VARIANTS),
        default=list(LDM_VARIANTS),
        help="the variants to train (default: all; the picture and the "
        "step-time ratio need elbo and full)")
    ldm.add_argument(
        "--kl-weight", type=float, default=1e-6,
        help="of the recipe variants (default: %(default)s, the KL-f8 "
        "config's)")
    args = p.parse_args(argv)
    if args.recipe == "ldm":
        return _ldm_args(p, args)
    args.patch = args.patch or 16
    args.batch_size = args.batch_size or 32
    args.blocks = args.blocks or [1] * len(args.filters)
    if len(args.blocks) != len(args.filters):
        p.error(f"--blocks needs one value per --filters level "
                f"({len(args.filters)}), got {len(args.blocks)}")
    if any(f % GROUPS for f in args.filters):
        p.error(f"--filters must be multiples of {GROUPS} (the backbone's "
                f"GroupNormalization groups), got {args.filters}")
    factor = 2 ** (len(args.filters) - 1)
    if args.patch % factor:
        p.error(f"--patch {args.patch} is not a multiple of the backbone's "
                f"downsampling factor {factor} ({len(args.filters)} levels)")
    if not 0.0 < args.test_fraction < 1.0:
        p.error(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    args.train_stride = args.train_stride or args.patch
    args.epochs = args.epochs or (QUICK_EPOCHS if args.quick
                                  else DEFAULT_EPOCHS)
    return args


# ------------------------------------------------------------------ data
def cut_patches(image, patch, stride):
    """Square patches of `image` (H, W, 3) on a grid of step `stride`."""
    height, width, _ = image.shape
    return np.stack([image[r:r + patch, c:c + patch]
                     for r in range(0, height - patch + 1, stride)
                     for c in range(0, width - patch + 1, stride)])


def load_patches(patch, train_stride, test_fraction, seed):
    """(x_train, x_test) float32 (N, P, P, 3) in [0, 1] on the 1/255 grid.

    Each photo's left columns give the training patches and its right
    columns the test patches: the two regions do not overlap.
    """
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    train, test, names = [], [], []
    for name, image in zip(photos.filenames, photos.images):
        split = int(round(image.shape[1] * (1.0 - test_fraction)))
        train.append(cut_patches(image[:, :split], patch, train_stride))
        test.append(cut_patches(image[:, split:], patch, patch))
        names.append(f"{os.path.basename(name)} {image.shape[0]}x"
                     f"{image.shape[1]} (train columns < {split})")
    rng = np.random.default_rng(seed)
    # Shuffled once so that any prefix of the test set covers both photos.
    x_train = np.concatenate(train)
    x_test = np.concatenate(test)[rng.permutation(sum(map(len, test)))]
    x_train = x_train.astype(np.float32) / (NUM_LEVELS - 1)
    x_test = x_test.astype(np.float32) / (NUM_LEVELS - 1)
    print(f"Data: scikit-learn sample photos {', '.join(names)}: "
          f"{len(x_train)} train patches (stride {train_stride}) / "
          f"{len(x_test)} test patches, {patch}x{patch}x{CHANNELS}, "
          f"levels / {NUM_LEVELS - 1}")
    return x_train, x_test


def make_dataset(x, batch_size, seed, shuffle):
    ds = tf.data.Dataset.from_tensor_slices(x)
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------- model
def build_backbone(filters, blocks, latent_channels):
    """keras-hub's SD-style VAE, small. Its encoder emits 2C channels (its
    mean / log-variance) and its decoder reads C; F = filters[0] out."""
    return VAEBackbone(
        encoder_num_filters=list(filters),
        encoder_num_blocks=list(blocks),
        decoder_num_filters=list(reversed(filters)),
        decoder_num_blocks=list(reversed(blocks)),
        sample_channels=2 * latent_channels,
        output_channels=filters[0],  # features; our 1x1 conv gives params
        name="sd_vae_backbone",
    )


def build_vae(backbone, patch, latent_channels, likelihood, seed):
    """The backbone's encoder and decoder around keras_vae's latent layers."""
    x_in = keras.Input((patch, patch, CHANNELS), name="x")
    h = keras.layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(x_in)
    h = backbone.encoder(h)  # (B, P/f, P/f, 2C), before its moments split
    q = keras_vae.GaussianEncoderHead(latent_channels, flatten=False,
                                      name="posterior")(h)
    q = keras_vae.KLRegularizer(name="kl")(q)
    z = keras_vae.ReparameterizedSample(seed=seed, name="z")(q)
    h = backbone.decoder(z)  # (B, P, P, filters[0])
    params = keras.layers.Conv2D(likelihood.params_size((CHANNELS,)), 1,
                                 name="likelihood_params")(h)
    return keras_vae.VAEModel(x_in, params, name="sd_latent_vae")


# ----------------------------------------------------------- train, eval
def train(vae, x_train, x_test, args):
    """Fits; returns (epochs run, seconds, patches/s after the first)."""
    timer = EpochTimer()
    start = time.perf_counter()
    history = vae.fit(
        make_dataset(x_train, args.batch_size, args.seed, shuffle=True),
        validation_data=make_dataset(x_test, args.batch_size, args.seed,
                                     shuffle=False),
        epochs=args.epochs, verbose=2, shuffle=False,
        callbacks=[keras.callbacks.TerminateOnNaN(), timer])
    seconds = time.perf_counter() - start
    check_finite(f"the training loss (epoch {history.epoch[-1] + 1})",
                 history.history["loss"][-1])
    steady = timer.times[1:] or timer.times  # without the tracing
    per_second = len(x_train) * len(steady) / sum(steady)
    print(f"Trained {len(history.epoch)} epochs in {seconds:.1f} s (first "
          f"epoch {timer.times[0]:.1f} s with tracing), "
          f"{per_second:,.0f} training patches/s after it")
    return len(history.epoch), seconds, per_second


def bits_per_dim(log_px_nats, num_dims):
    """-log2 p(x) per subpixel, from log p(x) in nats."""
    return -float(log_px_nats) / (num_dims * math.log(2.0))


def evaluate(vae, x_test, num_samples, batch_size):
    """Test log p(x) (K importance samples) and ELBO, nats and bits/dim."""
    num_dims = int(np.prod(x_test.shape[1:]))
    log_px = vae.log_likelihood(x_test, num_samples=num_samples,
                                batch_size=batch_size)
    check_finite("the test log-likelihood", log_px)
    metrics = vae.evaluate(make_dataset(x_test, batch_size, 0, False),
                           verbose=0, return_dict=True)
    log_px, elbo, kl = (float(np.mean(log_px)), float(metrics["elbo"]),
                        float(metrics["kl"]))
    bpd, elbo_bpd = bits_per_dim(log_px, num_dims), bits_per_dim(elbo,
                                                                 num_dims)
    print(f"Test log-likelihood (K={num_samples}): {log_px:.1f} nats = "
          f"{bpd:.3f} bits/dim; test ELBO {elbo:.1f} nats = "
          f"{elbo_bpd:.3f} bits/dim (KL {kl:.1f} nats); {len(x_test)} test "
          f"patches of {num_dims} dims")
    return {"test_log_likelihood": log_px, "test_bits_per_dim": bpd,
            "test_elbo": elbo, "test_elbo_bits_per_dim": elbo_bpd,
            "test_kl": kl}


# ---------------------------------------------------------------- images
def save_pictures(vae, x_test, path, seed):
    """patches.png: test patches, their reconstructions, prior samples."""
    x = x_test[:NUM_SHOWN]
    rows = [("test patches", x),
            ("reconstructions (decoded posterior means)",
             vae.reconstruct(x)),
            ("samples from the prior N(0, I)",
             vae.sample(NUM_SHOWN, seed=seed))]
    canvases = [keras_vae.plotting.image_grid(images, ncols=GRID_COLUMNS,
                                              pad=GRID_PAD, pad_value=1.0)
                for _, images in rows]  # clipped to [0, 1], white padding
    height = 8.0 * canvases[0].shape[0] / canvases[0].shape[1] + 0.4
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, height * len(rows)))
    for ax, (title, _), canvas in zip(axes, rows, canvases):
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_and_reload(vae, x, path):
    """Saves the model (keras-hub layers included) and checks that the
    reloaded copy reconstructs `x` as the original does."""
    vae.save(path)
    reloaded = keras.saving.load_model(path)
    gap = float(np.max(np.abs(reloaded.reconstruct(x) - vae.reconstruct(x))))
    print(f"Saved {path.name} and reloaded it: reconstructions differ by "
          f"at most {gap:.1e}")
    if gap > 1e-4:
        raise SystemExit(f"Error: the reloaded {path.name} reconstructs "
                         f"differently (max abs difference {gap:.3g}).")
    return gap


# ------------------------------------------------ --recipe ldm: the recipe
LDM_EPOCHS = 10  # the steps are split in epochs for progress and timing
LDM_SHOWN = 8  # test patches in the picture


def _ldm_args(parser, args):
    args.patch = args.patch or LDM_PATCH
    args.batch_size = args.batch_size or LDM_BATCH
    factor = 2 ** len(args.ldm_filters)
    if args.patch % factor:
        parser.error(f"--patch {args.patch} is not a multiple of the "
                     f"autoencoder's downsampling factor {factor}")
    if not 0.0 < args.test_fraction < 1.0:
        parser.error(f"--test-fraction must be in (0, 1), got "
                     f"{args.test_fraction}")
    if not 0.0 <= args.disc_start <= 1.0:
        parser.error(f"--disc-start must be in [0, 1], got {args.disc_start}")
    if args.perceptual_weight < 0 or args.kl_weight < 0:
        parser.error("--perceptual-weight and --kl-weight must be >= 0")
    args.steps = args.steps or (LDM_QUICK_STEPS if args.quick else LDM_STEPS)
    args.epochs = min(LDM_EPOCHS, args.steps)
    return args


def load_photo_regions(test_fraction):
    """The two scikit-learn photos in [0, 1], each split by columns into a
    training region (left) and a test region (right)."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images()
    train, test = [], []
    for image in photos.images:
        split = int(round(image.shape[1] * (1.0 - test_fraction)))
        image = image.astype(np.float32) / (NUM_LEVELS - 1)
        train.append(image[:, :split])
        test.append(image[:, split:])
    return train, test


def crop_stream(regions, patch, batch_size, seed):
    """An endless `tf.data` stream of random `patch` x `patch` crops of the
    training regions (the photos in turn, a uniform position in each),
    a fixed function of `seed`: every variant trains on the same crops."""
    height = min(r.shape[0] for r in regions)
    width = min(r.shape[1] for r in regions)
    stacked = tf.constant(np.stack([r[:height, :width] for r in regions]))

    def crop(i):
        u = tf.random.stateless_uniform((2,), tf.stack([seed, i]))
        row = tf.cast(u[0] * (height - patch + 1), tf.int32)
        col = tf.cast(u[1] * (width - patch + 1), tf.int32)
        image = tf.gather(stacked, tf.cast(i % len(regions), tf.int32))
        return tf.slice(image, [row, col, 0], [patch, patch, CHANNELS])

    ds = tf.data.Dataset.counter().map(crop, num_parallel_calls=2)
    return ds.batch(batch_size, drop_remainder=True).prefetch(2)


def build_ldm_vae(patch, filters, latent_channels, learned_scale, seed):
    """x in [0, 1] -> [-1, 1] -> (conv stride 2, conv) per level ->
    Gaussian latent (P/f, P/f, C) -> mirrored decoder -> `conv_out`, the
    Laplace location (+ `SharedLogScale` for a learned scale)."""
    act = "silu"
    x_in = keras.Input((patch, patch, CHANNELS), name="x")
    h = keras.layers.Rescaling(2.0, offset=-1.0, name="to_pm1")(x_in)
    h = keras.layers.Conv2D(filters[0], 3, padding="same", activation=act)(h)
    for f in filters:
        h = keras.layers.Conv2D(f, 4, strides=2, padding="same",
                                activation=act)(h)
        h = keras.layers.Conv2D(f, 3, padding="same", activation=act)(h)
    q = keras_vae.GaussianEncoderHead(latent_channels, flatten=False,
                                      name="posterior")(h)
    q = keras_vae.KLRegularizer(name="kl")(q)
    z = keras_vae.ReparameterizedSample(seed=seed, name="z")(q)
    h = keras.layers.Conv2D(filters[-1], 3, padding="same", activation=act)(z)
    for f in reversed(filters):
        h = keras.layers.Conv2DTranspose(f, 4, strides=2, padding="same",
                                         activation=act)(h)
        h = keras.layers.Conv2D(f, 3, padding="same", activation=act)(h)
    out = keras.layers.Conv2D(CHANNELS, 3, padding="same", name="conv_out")(h)
    if learned_scale:
        out = keras_vae.SharedLogScale(name="log_scale")(out)
    return keras_vae.VAEModel(x_in, out, name="ldm_autoencoder")


def random_conv_features(patch, widths, seed, pooled, name):
    """A frozen conv net with random He-normal weights (no ImageNet
    weights offline): two 3x3 ReLU convs per stage, 2x2 max-pooling
    between stages. Outputs each stage's last activation (`pooled=False`:
    LPIPS' feature maps) or their global means concatenated (`pooled=True`:
    an (N, sum(widths)) embedding for the Fréchet distance)."""
    x = keras.Input((patch, patch, CHANNELS))
    h = keras.layers.Rescaling(2.0, offset=-1.0)(x)
    outputs = []
    for i, width in enumerate(widths):
        if i:
            h = keras.layers.MaxPooling2D()(h)
        for j in range(2):
            h = keras.layers.Conv2D(
                width, 3, padding="same", activation="relu",
                kernel_initializer=keras.initializers.HeNormal(
                    seed=seed + 10 * i + j))(h)
        outputs.append(keras.layers.GlobalAveragePooling2D()(h)
                       if pooled else h)
    if pooled:
        outputs = keras.layers.Concatenate()(outputs)
    model = keras.Model(x, outputs, name=name)
    model.trainable = False
    return model


def ldm_objective(variant, args, perceptual_model):
    """The compiled objective and likelihood of a variant."""
    if variant == "elbo":
        return "elbo", keras_vae.losses.LaplaceNLL(scale="learned_scalar")
    full = variant == "full"
    return keras_vae.objectives.AutoencoderKL(
        kl_weight=args.kl_weight,
        perceptual=(perceptual_model if variant in ("perceptual", "full")
                    else None),
        perceptual_weight=args.perceptual_weight,
        discriminator=(keras_vae.PatchGANDiscriminator(num_layers=2,
                                                       filters=32)
                       if full else None),
        discriminator_start=int(round(args.disc_start * args.steps)),
        discriminator_learning_rate=args.learning_rate,
    ), keras_vae.losses.LaplaceNLL(scale=1.0)


class _EpochLine(keras.callbacks.Callback):
    """One short line per epoch: the terms each variant trains on."""

    KEYS = ("loss", "reconstruction", "kl", "perceptual", "generator_loss",
            "adaptive_weight", "discriminator_loss")

    def __init__(self, variant, epochs):
        super().__init__()
        self.variant, self.epochs = variant, epochs

    def on_epoch_end(self, epoch, logs=None):
        shown = ", ".join(f"{k} {logs[k]:.4g}" for k in self.KEYS
                          if k in (logs or {}))
        print(f"  [{self.variant}] epoch {epoch + 1}/{self.epochs}: {shown}")


def laplacian_energy(images):
    """Σ (∇² x)², the 3x3 Laplacian of each channel (valid positions)."""
    kernel = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32)
    kernel = np.tile(kernel[:, :, None, None], (1, 1, CHANNELS, 1))
    lap = tf.nn.depthwise_conv2d(tf.constant(images, tf.float32), kernel,
                                 [1, 1, 1, 1], "VALID")
    return float(tf.reduce_sum(tf.square(lap)))


def evaluate_ldm(vae, x_test, fd_model, batch_size):
    """PSNR, SSIM, Fréchet distance, sharpness and L1 of the test
    reconstructions (decoded posterior means, clipped to [0, 1])."""
    def reconstruct(x):
        return np.clip(vae.reconstruct(x), 0.0, 1.0)

    quality = keras_vae.evaluate.reconstruction_quality(
        reconstruct, x_test, batch_size=batch_size, verbose=0)
    recon = np.concatenate([reconstruct(x_test[i:i + batch_size])
                            for i in range(0, len(x_test), batch_size)])
    fd = keras_vae.evaluate.frechet_distance(
        fd_model.predict(x_test, verbose=0), fd_model.predict(recon,
                                                              verbose=0))
    return recon, {
        "psnr": quality["psnr"], "ssim": quality["ssim"],
        "frechet": fd,
        "sharpness": laplacian_energy(recon) / laplacian_energy(x_test),
        "l1": float(np.mean(np.abs(recon - x_test))),
    }


def train_variant(variant, args, stream, x_test, perceptual_model, fd_model):
    """Builds (the same initial weights for every variant), trains
    `args.steps` steps and evaluates one variant."""
    keras.utils.set_random_seed(args.seed)
    objective, likelihood = ldm_objective(variant, args, perceptual_model)
    vae = build_ldm_vae(args.patch, args.ldm_filters, args.latent_channels,
                        variant == "elbo", args.seed)
    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate,
                                                beta_1=0.5, beta_2=0.9),
                loss=likelihood, objective=objective, jit_compile=args.xla)
    timer = EpochTimer()
    per_epoch = args.steps // args.epochs
    print(f"{LDM_VARIANTS[variant]}: {args.epochs} x {per_epoch} steps")
    start = time.perf_counter()
    vae.fit(stream, steps_per_epoch=per_epoch, epochs=args.epochs,
            verbose=0, shuffle=False,
            callbacks=[timer, _EpochLine(variant, args.epochs)])
    seconds = time.perf_counter() - start
    steady = timer.times[1:] or timer.times  # without the tracing
    step_ms = 1e3 * sum(steady) / (len(steady) * per_epoch)
    recon, scores = evaluate_ldm(vae, x_test, fd_model, args.batch_size)
    state = vae.objective_layer  # feature model, discriminator (not served)
    state_weights = 0 if state is None else state.count_params()
    for key, value in scores.items():
        check_finite(f"{variant} {key}", value)
    scores.update({"train_time_s": round(seconds, 1),
                   "step_ms": round(step_ms, 1),
                   "steps": per_epoch * args.epochs,
                   "weights": vae.count_params() - state_weights,
                   "objective_state_weights": state_weights})
    print(f"  [{variant}] PSNR {scores['psnr']:.2f} dB, SSIM "
          f"{scores['ssim']:.3f}, Fréchet {scores['frechet']:.3g}, "
          f"sharpness {scores['sharpness']:.2f}, {seconds:.0f} s "
          f"({step_ms:.0f} ms/step)")
    return vae, recon, scores


def save_ldm_picture(x, rows, path):
    """ldm_recipe.png: test patches and the reconstructions of each row's
    variant, one labelled strip per row."""
    strips = [("test patches", x)] + rows
    canvases = [keras_vae.plotting.image_grid(images, ncols=len(x),
                                              pad=GRID_PAD, pad_value=1.0)
                for _, images in strips]
    aspect = canvases[0].shape[0] / canvases[0].shape[1]
    fig, axes = plt.subplots(len(strips), 1,
                             figsize=(6, len(strips) * (6 * aspect + 0.3)))
    for ax, (title, _), canvas in zip(axes, strips, canvases):
        ax.imshow(canvas, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def ldm_table(results):
    """The side-by-side table (Markdown)."""
    lines = ["| variant | PSNR (dB) | SSIM | Fréchet (random features) | "
             "sharpness | L1 | train s | ms/step |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, r in results.items():
        lines.append(
            f"| {LDM_VARIANTS[variant]} | {r['psnr']:.2f} | {r['ssim']:.3f} "
            f"| {r['frechet']:.3g} | {r['sharpness']:.2f} | {r['l1']:.4f} | "
            f"{r['train_time_s']:.0f} | {r['step_ms']:.0f} |")
    return "\n".join(lines)


def main_ldm(args):
    """--recipe ldm: the variants side by side."""
    # TF's grappler remapper cannot fuse the discriminator's stateless conv
    # + bias + LeakyReLU inside the train step's gradient graph: it logs
    # "remapper failed" and skips the pass for that graph. Off for every
    # variant alike (the same speed here, measured), and no log line; put
    # back afterwards (main may run inside a test process).
    remapping = tf.config.optimizer.get_experimental_options().get(
        "remapping", True)
    tf.config.optimizer.set_experimental_options({"remapping": args.xla})
    try:
        return _run_ldm(args)
    finally:
        tf.config.optimizer.set_experimental_options(
            {"remapping": remapping})


def _run_ldm(args):
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train_regions, test_regions = load_photo_regions(args.test_fraction)
    x_test = np.concatenate([cut_patches(r, args.patch, args.patch // 2)
                             for r in test_regions])
    x_test = x_test[np.random.default_rng(args.seed).permutation(
        len(x_test))]
    x_test = x_test[:args.test_examples or
                    (LDM_QUICK_TEST if args.quick else None)]
    stream = crop_stream(train_regions, args.patch, args.batch_size,
                         args.seed)
    widths = (16, 32, 64)
    perceptual_model = random_conv_features(args.patch, widths, 100, False,
                                            "lpips_features")
    fd_model = random_conv_features(args.patch, widths, 200, True,
                                    "frechet_features")
    print(f"Data: random {args.patch}x{args.patch} crops of the left "
          f"{1 - args.test_fraction:.0%} of scikit-learn's two sample photos"
          f" (batch {args.batch_size}); {len(x_test)} test patches from the "
          f"right part (stride {args.patch // 2}). {args.steps} steps per "
          f"variant, Adam {args.learning_rate} (0.5, 0.9), XLA "
          f"{'on' if args.xla else 'off'}; discriminator from step "
          f"{int(round(args.disc_start * args.steps))}")
    results, recons = {}, {}
    for variant in args.variants:
        _, recons[variant], results[variant] = train_variant(
            variant, args, stream, x_test, perceptual_model, fd_model)
    table = ldm_table(results)
    print(table)
    ratio = None
    if "full" in results and "elbo" in results:
        ratio = results["full"]["step_ms"] / results["elbo"]["step_ms"]
        print(f"Step time: full recipe {results['full']['step_ms']:.0f} ms, "
              f"ELBO {results['elbo']['step_ms']:.0f} ms (x{ratio:.2f})")
        ratio = round(ratio, 2)
    shown = slice(0, LDM_SHOWN)  # the test set is shuffled: a random 8
    save_ldm_picture(x_test[shown],
                     [(LDM_VARIANTS[v], recons[v][shown]) for v in
                      ("elbo", "full") if v in recons]
                     or [(LDM_VARIANTS[v], r[shown]) for v, r in
                         recons.items()],
                     args.out / "ldm_recipe.png")
    summary = {
        "recipe": "ldm", "patch": args.patch, "filters": args.ldm_filters,
        "latent_channels": args.latent_channels,
        "test_patches": len(x_test), "steps": args.steps,
        "batch_size": args.batch_size, "learning_rate": args.learning_rate,
        "kl_weight": args.kl_weight,
        "perceptual_weight": args.perceptual_weight,
        "discriminator_start": int(round(args.disc_start * args.steps)),
        "xla": args.xla, "variants": {v: LDM_VARIANTS[v] for v in results},
        "results": results, "step_time_ratio_full_vs_elbo": ratio,
        "table": table,
    }
    (args.out / "results.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False))
    print(f"Wrote ldm_recipe.png, results.json to {args.out}")
    return summary


# ------------------------------------------------------------------ main
def main(argv=None):
    args = parse_args(argv)
    if args.recipe == "ldm":
        return main_ldm(args)
    keras.utils.set_random_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    x_train, x_test = load_patches(args.patch, args.train_stride,
                                   args.test_fraction, args.seed)
    num_samples = args.num_samples
    if args.quick:
        num_samples = min(num_samples, QUICK_NUM_SAMPLES)
        x_train = x_train[np.random.default_rng(args.seed).permutation(
            len(x_train))[:QUICK_TRAIN]]
        x_test = x_test[:QUICK_TEST]
    x_test = x_test[:args.test_examples]

    likelihood = keras_vae.losses.DiscretizedLogisticMixtureNLL(
        num_components=args.components, num_bins=NUM_LEVELS)
    backbone = build_backbone(args.filters, args.blocks, args.latent_channels)
    vae = build_vae(backbone, args.patch, args.latent_channels, likelihood,
                    args.seed)
    latent_shape = tuple(vae.get_layer("z").output.shape[1:])
    print(f"Model: keras-hub {type(backbone).__name__} encoder "
          f"({backbone.encoder.count_params():,} weights) and decoder "
          f"({backbone.decoder.count_params():,}), filters {args.filters}, "
          f"blocks {args.blocks}; latent {latent_shape} = "
          f"{int(np.prod(latent_shape))} dims for {args.patch}x{args.patch}"
          f"x{CHANNELS} = {args.patch ** 2 * CHANNELS} pixels; "
          f"{vae.count_params():,} weights in all; likelihood: mixture of "
          f"{args.components} discretized logistics per subpixel")
    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                loss=likelihood, jit_compile=args.xla)
    print(f"Training {args.epochs} epochs, batch {args.batch_size}, "
          f"Adam {args.learning_rate}, XLA {'on' if args.xla else 'off'}")
    epochs_run, seconds, per_second = train(vae, x_train, x_test, args)
    scores = evaluate(vae, x_test, num_samples, args.batch_size)

    save_pictures(vae, x_test, args.out / "patches.png", args.seed)
    reload_gap = save_and_reload(vae, x_test[:NUM_SHOWN],
                                 args.out / "vae.keras")
    written = ["patches.png", "vae.keras", "results.json"]
    if not args.no_export:
        vae.export_serving(str(args.out / "saved_model"))
        written.append("saved_model/")
    results = {
        "backbone": f"{VAEBackbone.__module__}.{VAEBackbone.__name__}",
        "patch": args.patch, "train_patches": len(x_train),
        "test_patches": len(x_test), "filters": args.filters,
        "blocks": args.blocks, "latent_shape": list(latent_shape),
        "components": args.components, "weights": vae.count_params(),
        "epochs": epochs_run, "batch_size": args.batch_size,
        "train_time_s": round(seconds, 2),
        "patches_per_s": round(per_second, 1), "num_samples": num_samples,
        **scores, "reload_max_abs_diff": reload_gap,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"Wrote {', '.join(written)} to {args.out}")
    print(f"Summary: keras-hub VAEBackbone + keras_vae latent, "
          f"{args.patch}x{args.patch} RGB patches: test "
          f"{scores['test_bits_per_dim']:.3f} bits/dim (K={num_samples}), "
          f"{epochs_run} epochs in {seconds:.1f} s")
    return results


if __name__ == "__main__":
    main()
