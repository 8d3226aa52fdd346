"""Image similarity for the evaluation: PSNR and SSIM of reconstructions.

Images are float tensors in [0, 1] of shape (N, C, H, W). SSIM is Wang et
al.'s (2004): an 11x11 Gaussian window of sigma 1.5, K1 0.01, K2 0.03,
population statistics, the mean of the map over the positions where the
window lies whole, averaged over channels: what skimage's
structural_similarity computes with gaussian_weights=True,
use_sample_covariance=False and data_range=1 (eval/test_metrics.py checks
it against skimage).
"""
import torch
import torch.nn.functional as F


def psnr(x, y, data_range=1.0):
    """Per image, in dB (inf where the two are equal)."""
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)


def _window(channels, size=11, sigma=1.5):
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    w = torch.outer(g, g)
    return w.expand(channels, 1, size, size).contiguous()


def ssim(x, y, data_range=1.0):
    """Per image, in [-1, 1]."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    w = _window(c)
    mu_x, mu_y = F.conv2d(x, w, groups=c), F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x ** 2
    syy = F.conv2d(y * y, w, groups=c) - mu_y ** 2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    m = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return m.flatten(1).mean(1)


def summary(values):
    """Mean and standard deviation of a list or tensor, as a pair of floats."""
    t = torch.as_tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0

