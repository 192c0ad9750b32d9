"""MATLAB-compatible bicubic ``imresize`` (numpy only, torch-free).

SR papers make their LR images with MATLAB's ``imresize(HR, 1/scale, 'bicubic')`` and report a
bicubic baseline with ``imresize(LR, scale)``; OpenCV and PIL resize differently (no antialiasing
when shrinking, other boundary handling), which moves PSNR by tenths of a dB. This follows
MATLAB's ``imresize.m``:

- Keys' cubic kernel with a = -0.5;
- when shrinking (scale < 1) with antialiasing, the kernel is stretched to ``h(x) = s * k(s * x)``
  with support ``4 / s`` (this is the "antialiasing" of MATLAB's imresize);
- output pixel ``i`` (1-based) maps to input coordinate ``u = i / s + 0.5 * (1 - 1 / s)``;
- borders are handled by symmetric mirroring (``[1:n, n:-1:1]``), weights normalised to sum 1;
- the dimension with the smaller scale is resized first (rows first on ties);
- uint8 input is rounded and saturated to uint8 after *each* dimension, as ``imresizemex`` returns
  the input's class; float input stays float.
"""

from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))


def contributions(in_length: int, out_length: int, scale: float, antialiasing: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(weights, indices), each ``out_length x P``: output ``i`` = sum_j weights[i, j] * input[indices[i, j]]."""
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialiasing
    if shrink_aa:
        kernel_width /= scale
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may fall outside
    distance = u[:, None] - indices
    weights = scale * cubic(distance * scale) if shrink_aa else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric boundary: mirror into [1, n] with the edge sample repeated (MATLAB's aux vector).
    aux = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    idx = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)  # drop all-zero tap columns, as imresize.m does
    return weights[:, keep], idx[:, keep]


def _resize_axis(a: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray, as_uint8: bool) -> np.ndarray:
    moved = np.moveaxis(a, axis, 0).astype(np.float64)  # (L, ...)
    gathered = moved[indices]  # (out, P, ...)
    w = weights.reshape(weights.shape + (1,) * (moved.ndim - 1))
    out = np.sum(gathered * w, axis=1)
    if as_uint8:
        # imresizemex rounds half away from zero and saturates; all values are >= 0 after the clip.
        out = np.floor(np.clip(out, 0, 255) + 0.5)
    return np.moveaxis(out, 0, axis)


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """MATLAB's output size for a scale factor: ``ceil(scale * size)``."""
    return (int(math.ceil(size[0] * scale - 1e-9)), int(math.ceil(size[1] * scale - 1e-9)))


def imresize(image: np.ndarray, scale: float | None = None, size: tuple[int, int] | None = None,
             antialiasing: bool = True) -> np.ndarray:
    """Bicubic resize of an ``HxW`` or ``HxWxC`` array by ``scale`` or to ``size`` = (H, W).

    uint8 in -> uint8 out (rounded per pass, like MATLAB); any float in -> float64 out.
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    a = np.asarray(image)
    as_uint8 = a.dtype == np.uint8
    h, w = a.shape[:2]
    if size is None:
        assert scale is not None
        size = output_size((h, w), scale)
        scales = (float(scale), float(scale))
    else:
        scales = (size[0] / h, size[1] / w)
    out = a.astype(np.float64)
    order = sorted(range(2), key=lambda d: scales[d])  # stable: rows first on ties
    for dim in order:
        weights, indices = contributions(a.shape[dim], size[dim], scales[dim], antialiasing)
        out = _resize_axis(out, dim, weights, indices, as_uint8)
    return out.astype(np.uint8) if as_uint8 else out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop bottom/right so both sides are multiples of ``scale`` (the SR benchmarks' convention)."""
    h, w = image.shape[:2]
    return image[: h - h % scale, : w - w % scale]


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """The LR image of the SR benchmarks: ``imresize(modcrop(HR, s), 1 / s)`` (uint8 stays uint8)."""
    hr = modcrop(hr, scale)
    h, w = hr.shape[:2]
    return imresize(hr, size=(h // scale, w // scale))


__all__ = ["cubic", "contributions", "imresize", "modcrop", "downscale", "output_size"]
