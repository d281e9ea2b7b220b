import numpy as np
import pytest
import tensorflow as tf

from keras_vae import evaluate


def random_rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_frechet_distance_of_commuting_covariances_is_closed_form():
    # S1 = Q D1 Q^T, S2 = Q D2 Q^T commute: tr (S1 S2)^1/2 = sum sqrt(d1 d2),
    # FD = |mu1 - mu2|^2 + sum (sqrt d1 - sqrt d2)^2.
    rng = np.random.default_rng(0)
    d1, d2 = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    q = random_rotation(6, 1)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    got = evaluate.frechet_distance_from_moments(
        mu1, q @ np.diag(d1) @ q.T, mu2, q @ np.diag(d2) @ q.T)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_frechet_distance_of_non_commuting_2x2_is_closed_form():
    # For 2 x 2 PSD-similar M = S1 S2 with eigenvalues l1, l2:
    # tr M^1/2 = sqrt(l1) + sqrt(l2) = sqrt(tr M + 2 sqrt(det M)).
    s1 = np.array([[2.0, 0.8], [0.8, 1.0]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    assert not np.allclose(s1 @ s2, s2 @ s1)
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, -1.0])
    want = 5.0 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    got = evaluate.frechet_distance_from_moments(mu1, s1, mu2, s2)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # Symmetric in its two Gaussians, 0 between a Gaussian and itself,
    # finite and >= 0 with a singular covariance.
    np.testing.assert_allclose(
        evaluate.frechet_distance_from_moments(mu2, s2, mu1, s1), want,
        rtol=1e-10)
    assert evaluate.frechet_distance_from_moments(mu1, s1, mu1, s1) < 1e-12
    singular = np.array([[1.0, 1.0], [1.0, 1.0]])
    value = evaluate.frechet_distance_from_moments(mu1, singular, mu2, s2)
    assert np.isfinite(value) and value >= 0


def test_frechet_distance_of_samples_approaches_the_gaussians():
    rng = np.random.default_rng(2)
    n = 200_000
    v1, v2 = np.array([1.0, 2.0, 0.5, 1.0]), np.array([2.0, 1.0, 0.5, 0.25])
    mu2 = np.array([1.0, 0.0, 0.5, 0.0])
    a = rng.normal(size=(n, 4)) * np.sqrt(v1)
    b = mu2 + rng.normal(size=(n, 4)) * np.sqrt(v2)
    want = 1.25 + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)  # 1.50
    np.testing.assert_allclose(evaluate.frechet_distance(a, b), want,
                               atol=0.02)
    # Same distribution: close to 0.
    assert evaluate.frechet_distance(a[: n // 2], a[n // 2:]) < 0.01


def test_frechet_distance_bad_shapes():
    with pytest.raises(ValueError, match=r"argument `a`.*\(N, D\)"):
        evaluate.frechet_distance(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same feature dimension"):
        evaluate.frechet_distance(np.zeros((5, 3)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"argument `sigma2`"):
        evaluate.frechet_distance_from_moments(np.zeros(2), np.eye(2),
                                               np.zeros(2), np.eye(3))


# ------------------------------------------------------------- PSNR / SSIM
def psnr_numpy(x, y, max_val):
    mse = ((x - y) ** 2).reshape(len(x), -1).mean(-1)
    return 10 * np.log10(max_val ** 2 / mse)


def ssim_numpy(x, y, max_val, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Wang et al. 2004 SSIM: Gaussian windows (valid positions only),
    local means, variances and covariance, averaged over windows and
    channels."""
    coords = np.arange(size) - (size - 1) / 2
    g = np.exp(-coords ** 2 / (2 * sigma ** 2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def local_mean(a):  # (B, H, W, C) -> (B, H', W', C)
        patches = np.lib.stride_tricks.sliding_window_view(
            a, (size, size), axis=(1, 2))
        return np.einsum("bhwcij,ij->bhwc", patches, window)

    x, y = x.astype(np.float64), y.astype(np.float64)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    mx, my = local_mean(x), local_mean(y)
    vx, vy = local_mean(x * x) - mx ** 2, local_mean(y * y) - my ** 2
    cxy = local_mean(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / (
        (mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return ssim.reshape(len(x), -1).mean(-1)


def test_reconstruction_quality_matches_psnr_and_ssim_by_hand(capsys):
    x = np.random.default_rng(0).uniform(0, 1, (5, 16, 16, 3))
    x = x.astype("float32")

    def reconstruct(images):  # a deterministic "model", batch by batch
        return np.clip(images + 0.1 * np.sin(40 * images), 0, 1)

    recon = reconstruct(x)

    got = evaluate.reconstruction_quality(reconstruct, x, batch_size=2)
    np.testing.assert_allclose(got["psnr"], psnr_numpy(x, recon, 1.0).mean(),
                               rtol=1e-4)
    np.testing.assert_allclose(got["ssim"], ssim_numpy(x, recon, 1.0).mean(),
                               rtol=1e-4)
    assert got["num_images"] == 5
    assert "psnr" in capsys.readouterr().out  # the progress bar
    # A tf.data.Dataset of (images, labels) batches gives the same; and a
    # model with `reconstruct` (a VAEModel) is called through it.
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(5))).batch(3)
    assert evaluate.reconstruction_quality(
        reconstruct, ds, verbose=0) == pytest.approx(got)

    class Model:
        calls = []

        def reconstruct(self, images, batch_size, verbose=0):
            self.calls.append((len(images), batch_size, verbose))
            return reconstruct(images)

    model = Model()
    assert evaluate.reconstruction_quality(
        model, x, batch_size=4, verbose=0) == pytest.approx(got)
    assert model.calls == [(4, 4, 0), (1, 1, 0)]
    # Scale-aware: the same images in 0..255.
    scaled = evaluate.reconstruction_quality(
        lambda im: reconstruct(im / 255.0) * 255.0, x * 255.0,
        max_val=255.0, verbose=0)
    np.testing.assert_allclose(scaled["psnr"], got["psnr"], rtol=1e-4)


def test_reconstruction_quality_bad_input():
    with pytest.raises(ValueError, match="argument `images`"):
        evaluate.reconstruction_quality(lambda x: x, np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="argument `model`"):
        evaluate.reconstruction_quality("vae", np.zeros((2, 16, 16, 1)))
