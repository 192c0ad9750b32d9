"""PSNR and SSIM of uint8 images as the SR papers report them, for ``i2i eval sr``.

Thin numpy adapters over the metrics of the ``i2i_metrics`` plugin (built through
:func:`i2i.metrics.create`, the one implementation; see ``i2i_metrics.pixel`` for the conventions):
BT.601 Y in [16, 235] kept in float, ``crop_border`` pixels removed per side, valid-window SSIM
(11x11 Gaussian, sigma 1.5), and a greyscale image (HxW or HxWx1) measured on its own channel
without any Y conversion, so its "Y" and "RGB" figures are the same. Images are 0..255.
"""

from __future__ import annotations

import numpy as np


def _batch(image: np.ndarray):
    """HxW or HxWxC 0..255 -> float64 1xCxHxW in [0, 1] (one channel kept as one: grey scored as is)."""
    import torch

    a = np.asarray(image, dtype=np.float64)
    a = a[..., None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None] / 255.0


def _score(name: str, a: np.ndarray, b: np.ndarray, crop_border: int) -> float:
    from i2i.metrics import create

    if np.shape(a) != np.shape(b):
        raise ValueError(f"{name}: shapes differ {np.shape(a)} vs {np.shape(b)}")
    m = create(name, crop_border=crop_border)
    m.update(_batch(a), _batch(b))
    return m.compute()


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """uint8 (or 0..255 float) HxWx3 RGB -> float64 HxW luma in [16, 235] (``i2i_metrics.pixel.to_y``)."""
    from i2i_metrics.pixel import to_y

    return to_y(_batch(image)).numpy()[0, 0]


def psnr(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """PSNR in dB of two 0..255 images (any channels); ``inf`` when identical."""
    return _score("psnr", a, b, crop_border)


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int = 0) -> float:
    """SSIM of two 0..255 images, HxW or HxWxC (mean over channels)."""
    return _score("ssim", a, b, crop_border)


def sr_metrics(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> dict[str, float]:
    """PSNR/SSIM on the Y channel and on RGB for uint8 HxWx3 images of equal size; for grey images
    (HxW or HxWx1) both on the grey channel itself."""
    if sr.shape != hr.shape:
        raise ValueError(f"output {sr.shape} and ground truth {hr.shape} differ in size")
    return {
        "psnr_y": _score("psnr_y", sr, hr, crop_border),
        "ssim_y": _score("ssim_y", sr, hr, crop_border),
        "psnr_rgb": _score("psnr", sr, hr, crop_border),
        "ssim_rgb": _score("ssim", sr, hr, crop_border),
    }


__all__ = ["rgb_to_y", "psnr", "ssim", "sr_metrics"]
