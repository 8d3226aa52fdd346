"""PSNR and SSIM (eval/metrics.py) against skimage's, on fixed images.

Usage: /usr/bin/python3 eval/test_metrics.py   (exit 0, 1 on a mismatch,
77 when torch or skimage is not installed: scripts/deps.sh --eval)
"""
import sys

try:
    import numpy as np
    import torch
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
except ImportError as e:
    print(f"SKIP: {e} (scripts/deps.sh --eval installs it)")
    sys.exit(77)

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from metrics import psnr, ssim  # noqa: E402

g = torch.Generator().manual_seed(5)
fail = 0
cases = [
    ("noise", torch.rand(3, 1, 28, 28, generator=g), 0.1),
    ("colour 32x32", torch.rand(2, 3, 32, 32, generator=g), 0.3),
    ("near", torch.rand(2, 1, 28, 28, generator=g), 0.01),
]
for name, x, amount in cases:
    y = (x + amount * torch.randn(x.shape, generator=g)).clamp(0, 1)
    p, s = psnr(x, y), ssim(x, y)
    for i in range(x.shape[0]):
        a, b = x[i].permute(1, 2, 0).numpy().astype(np.float64), y[i].permute(1, 2, 0).numpy().astype(np.float64)
        rp = peak_signal_noise_ratio(a, b, data_range=1.0)
        rs = structural_similarity(a, b, data_range=1.0, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False)
        if abs(float(p[i]) - rp) > 1e-9 * abs(rp) or abs(float(s[i]) - rs) > 1e-9:
            print(f"FAIL: {name} {i}: psnr {float(p[i])} vs {rp}, ssim {float(s[i])} vs {rs}")
            fail += 1
# Equal images: PSNR infinite, SSIM 1.
x = cases[0][1]
if not (torch.isinf(psnr(x, x)).all() and torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))):
    print("FAIL: equal images")
    fail += 1
print(f"metrics: {'ok' if not fail else f'{fail} failed'} (PSNR and SSIM against skimage)")
sys.exit(1 if fail else 0)
