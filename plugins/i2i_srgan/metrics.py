"""PSNR and SSIM as the SR papers report them (numpy only, torch-free).

- Y channel: ITU-R BT.601 luma of MATLAB's ``rgb2ycbcr`` on [0, 1] input, in [16, 235]:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` for R, G, B in [0, 1] (kept in float, as basicsr).
- ``crop_border`` pixels (= the scale) are removed on every side before measuring.
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03,
  L = 255, over 'valid' windows only; on RGB the mean over the three channels.
- A greyscale image (``HxW`` or ``HxWx1``) is measured on its own channel, without any Y
  conversion, as the papers' scripts do; its "Y" and "RGB" figures are then the same.
"""

from __future__ import annotations

import numpy as np


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 (or 0..255 float) HxWx3 RGB -> float64 HxW luma in [16, 235]."""
    x = np.asarray(image, dtype=np.float64) / 255.0
    return 16.0 + x[..., 0] * 65.481 + x[..., 1] * 128.553 + x[..., 2] * 24.966


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    return a[border:-border, border:-border] if border > 0 else a


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """PSNR in dB of two 0..255 images (any channels); ``inf`` when identical."""
    a = _crop(np.asarray(a, dtype=np.float64), crop_border)
    b = _crop(np.asarray(b, dtype=np.float64), crop_border)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of an HxW array with the 1-D kernel g along both axes."""
    n = g.size
    h, w = x.shape
    rows = sum(g[k] * x[k : h - n + 1 + k, :] for k in range(n))
    return sum(g[k] * rows[:, k : w - n + 1 + k] for k in range(n))


def _ssim_2d(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    s_aa = _filter_valid(a * a, g) - mu_a**2
    s_bb = _filter_valid(b * b, g) - mu_b**2
    s_ab = _filter_valid(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (s_aa + s_bb + c2))
    return float(ssim_map.mean())


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """SSIM of two 0..255 images, HxW or HxWxC (mean over channels)."""
    a = _crop(np.asarray(a, dtype=np.float64), crop_border)
    b = _crop(np.asarray(b, dtype=np.float64), crop_border)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 after cropping, got {a.shape[:2]}")
    if a.ndim == 2:
        return _ssim_2d(a, b)
    return float(np.mean([_ssim_2d(a[..., c], b[..., c]) for c in range(a.shape[2])]))


def sr_metrics(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> dict[str, float]:
    """PSNR/SSIM on the Y channel and on RGB for uint8 HxWx3 images of equal size; for grey images
    (HxW or HxWx1) both on the grey channel itself."""
    if sr.shape != hr.shape:
        raise ValueError(f"output {sr.shape} and ground truth {hr.shape} differ in size")
    if hr.ndim == 3 and hr.shape[2] == 3:
        y_sr, y_hr = rgb_to_y(sr), rgb_to_y(hr)
    else:  # grayscale: Y is the image itself
        y_sr = np.asarray(sr, dtype=np.float64).reshape(sr.shape[:2])
        y_hr = np.asarray(hr, dtype=np.float64).reshape(hr.shape[:2])
    return {
        "psnr_y": psnr(y_sr, y_hr, crop_border),
        "ssim_y": ssim(y_sr, y_hr, crop_border),
        "psnr_rgb": psnr(sr, hr, crop_border),
        "ssim_rgb": ssim(sr, hr, crop_border),
    }


__all__ = ["rgb_to_y", "psnr", "ssim", "sr_metrics"]
