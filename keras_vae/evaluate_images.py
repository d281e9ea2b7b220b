"""Image metrics: Fréchet distance (FID) and PSNR / SSIM of reconstructions.

Re-exported by `keras_vae.evaluate`.

```none
FD(a, b) = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr (S_a^1/2 S_b S_a^1/2)^1/2
PSNR     = 10 log10(max_val^2 / mean (x - x_hat)^2)          per image
SSIM     = mean over windows of the structural similarity     per image
```
"""

import keras
import numpy as np
import tensorflow as tf


def frechet_distance_from_moments(mu1, sigma1, mu2, sigma2):
    """Fréchet (2-Wasserstein) distance between two Gaussians, squared.

    ```none
    FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr (S1^1/2 S2 S1^1/2)^1/2
    ```

    The trace term tr (S1 S2)^1/2 is computed as the sum of the square
    roots of the eigenvalues of the symmetric matrix S1^1/2 S2 S1^1/2
    (similar to S1 S2, so the same eigenvalues), with S1^1/2 from a
    symmetric eigendecomposition: real arithmetic throughout, negative
    round-off eigenvalues clipped to 0, no `scipy.linalg.sqrtm` (whose
    square root of the non-symmetric S1 S2 picks up imaginary round-off
    and needs an offset when S1 S2 is singular). Computed in float64; a
    result that round-off makes negative is returned as 0.

    Args:
        mu1, mu2: means, shape `(D,)`.
        sigma1, sigma2: covariance matrices (symmetric positive
            semi-definite), shape `(D, D)`.

    Returns:
        float, the squared Fréchet distance.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64))
                      for s in (sigma1, sigma2))
    d = mu1.shape[0]
    for name, value, shape in (("mu1", mu1, (d,)), ("mu2", mu2, (d,)),
                               ("sigma1", sigma1, (d, d)),
                               ("sigma2", sigma2, (d, d))):
        if value.shape != shape:
            raise ValueError(
                f"Invalid value received for argument `{name}`. Expected "
                f"shape {shape} (D = {d} from mu1). Received: {name} of "
                f"shape {value.shape}")
    sigma1 = 0.5 * (sigma1 + sigma1.T)
    sigma2 = 0.5 * (sigma2 + sigma2.T)
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    trace_sqrt = np.sum(np.sqrt(np.clip(eig, 0.0, None)))
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(value, 0.0))


def frechet_distance(a, b):
    """Fréchet distance between the Gaussians fitted to two feature sets.

    FID (Heusel et al. 2017) when `a` and `b` are Inception pool features
    of real and generated images; here any feature model's. Means and
    covariances (unbiased, `np.cov`) of the rows, then
    `frechet_distance_from_moments`. The estimate is biased upwards for
    small N (use the same N to compare models; thousands of rows for D in
    the hundreds).

    Args:
        a: `(N, D)` features (N >= 2), e.g. `feature_model.predict(x)`.
        b: `(M, D)` features (M >= 2).

    Returns:
        float, the squared Fréchet distance.

    Example:

    ```python
    fid = keras_vae.evaluate.frechet_distance(
        features.predict(images), features.predict(vae.reconstruct(images)))
    ```
    """
    moments = []
    for name, x in (("a", a), ("b", b)):
        x = np.asarray(x, np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(
                f"Invalid value received for argument `{name}`. Expected "
                f"features of shape (N, D) with N >= 2. Received: {name} of "
                f"shape {x.shape}")
        moments += [x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))]
    if moments[0].shape != moments[2].shape:
        raise ValueError(
            "frechet_distance: `a` and `b` must have the same feature "
            f"dimension D. Received: a with D={moments[0].shape[0]}, b with "
            f"D={moments[2].shape[0]}")
    return frechet_distance_from_moments(*moments)


def reconstruction_quality(model, images, batch_size=32, max_val=1.0,
                           filter_size=11, filter_sigma=1.5, verbose=1):
    """Mean PSNR and SSIM of a model's reconstructions of `images`.

    Per image, `tf.image.psnr` and `tf.image.ssim` (Wang et al. 2004:
    Gaussian windows of `filter_size` pixels and width `filter_sigma`,
    averaged over windows and channels) between the image and its
    reconstruction; then the means over the images. Identical images have
    an infinite PSNR (and so may the mean).

    Args:
        model: a `VAEModel` (its `reconstruct` is called, the likelihood's
            mean with the latents at their posterior mode) or any callable
            images -> reconstructions of the same shape.
        images: `(N, H, W, C)` array in [0, max_val], or a `tf.data.Dataset`
            of such batches (or of `(images, ...)` tuples).
        batch_size: images per call (arrays only).
        max_val: the dynamic range of the images (1.0 for [0, 1], 255).
        filter_size, filter_sigma: of SSIM's Gaussian window (11, 1.5); the
            images must be at least `filter_size` pixels a side.
        verbose: 1 for a `keras.utils.Progbar`, 0 for silence.

    Returns:
        dict with `psnr` (dB) and `ssim` (at most 1), means over the images
        (floats), and `num_images`.
    """
    if isinstance(images, tf.data.Dataset):
        batches, target = images, None
        cardinality = int(images.cardinality())
        if cardinality >= 0:
            target = cardinality
    else:
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                "Invalid value received for argument `images`. Expected "
                "images of shape (N, H, W, C). Received: images of shape "
                f"{images.shape}")
        starts = range(0, len(images), batch_size)
        batches = (images[i:i + batch_size] for i in starts)
        target = len(starts)
    if hasattr(model, "reconstruct"):
        def reconstruct(x):
            return model.reconstruct(x, batch_size=len(x), verbose=0)
    elif callable(model):
        reconstruct = model
    else:
        raise ValueError(
            "Invalid value received for argument `model`. Expected a "
            "VAEModel or a callable images -> reconstructions. Received: "
            f"model={model!r}")
    bar = keras.utils.Progbar(target) if verbose else None
    psnr, ssim = [], []
    for step, batch in enumerate(batches):
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        x = tf.cast(batch, tf.float32)
        x_hat = tf.cast(tf.convert_to_tensor(reconstruct(np.asarray(x))),
                        tf.float32)
        psnr.append(tf.image.psnr(x, x_hat, max_val=max_val).numpy())
        ssim.append(tf.image.ssim(x, x_hat, max_val=max_val,
                                  filter_size=filter_size,
                                  filter_sigma=filter_sigma).numpy())
        if bar is not None:
            bar.update(step + 1, [("psnr", float(np.mean(psnr[-1]))),
                                  ("ssim", float(np.mean(ssim[-1])))])
    psnr, ssim = np.concatenate(psnr), np.concatenate(ssim)
    return {"psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
            "num_images": int(len(psnr))}
