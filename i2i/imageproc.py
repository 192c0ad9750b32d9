"""Pre- and post-processing around a generator, torch-free (numpy only).

The PyTorch path (`i2i translate --checkpoint`) and the onnxruntime path (`i2i serve`, `.onnx`
models) share these functions, so both produce the same pixels. ``translate_array`` takes any
callable mapping a float32 NCHW batch (plus extra inputs such as a mask) to its output.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .artifact import GeneratorMeta

#: fn(image_batch, *extras) -> output batch, all float32 NCHW
GeneratorFn = Callable[..., np.ndarray]


def to_range(image: np.ndarray, value_range: Sequence[float]) -> np.ndarray:
    """uint8 HxWxC -> float32 CxHxW in ``value_range`` (e.g. [-1, 1])."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if image.ndim == 2:
        image = image[:, :, None]
    x = image.astype(np.float32).transpose(2, 0, 1) / 255.0
    return x * (hi - lo) + lo


def from_range(chw: np.ndarray, value_range: Sequence[float]) -> np.ndarray:
    """float CxHxW in ``value_range`` -> uint8 HxWxC (rounded, clipped)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = (np.asarray(chw, dtype=np.float32) - lo) / (hi - lo)
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0)


def pad_to_multiple(chw: np.ndarray, multiple: int, fill: float | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad bottom/right so H and W are multiples; returns (padded, (h, w)) to crop back.

    Reflection keeps borders natural; when the pad is larger than the image (a 100 px image into a
    256 multiple) reflection is impossible and the edge is repeated instead. ``fill`` pads with a
    constant (masks: 0 = known).
    """
    h, w = chw.shape[-2:]
    ph, pw = (-h) % max(multiple, 1), (-w) % max(multiple, 1)
    if ph == 0 and pw == 0:
        return chw, (h, w)
    widths = [(0, 0)] * (chw.ndim - 2) + [(0, ph), (0, pw)]
    if fill is not None:
        return np.pad(chw, widths, mode="constant", constant_values=fill), (h, w)
    mode = "reflect" if ph < h and pw < w else "edge"
    return np.pad(chw, widths, mode=mode), (h, w)


def _run_padded(fn: GeneratorFn, x: np.ndarray, extras: list[np.ndarray], meta: GeneratorMeta) -> np.ndarray:
    """Run fn on one CxHxW input (plus extras), padding to the size multiple and cropping back."""
    xp, (h, w) = pad_to_multiple(x, meta.size_multiple)
    ep = [pad_to_multiple(e, meta.size_multiple, fill=0.0)[0] for e in extras]
    out = fn(xp[None].astype(np.float32), *[e[None].astype(np.float32) for e in ep])[0]
    return out[:, : h * meta.scale, : w * meta.scale]


def translate_chw(
    fn: GeneratorFn,
    x: np.ndarray,
    meta: GeneratorMeta,
    extras: Sequence[np.ndarray] = (),
    tile: int = 0,
    overlap: int = 32,
) -> np.ndarray:
    """Translate one CxHxW float image; with ``tile`` > 0, in tiles of that side.

    Each tile is run with ``overlap`` pixels of real context on every side and only its core is
    kept, so for networks whose receptive field fits in the overlap (and without image-wide
    normalisation) the result equals the untiled one.
    """
    extras = list(extras)
    h, w = x.shape[-2:]
    if tile <= 0 or (h <= tile and w <= tile):
        return _run_padded(fn, x, extras, meta)
    s = meta.scale
    out = np.zeros((meta.out_channels, h * s, w * s), dtype=np.float32)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, yb = max(y0 - overlap, 0), min(y1 + overlap, h)
            xa, xb = max(x0 - overlap, 0), min(x1 + overlap, w)
            part = _run_padded(fn, x[:, ya:yb, xa:xb], [e[:, ya:yb, xa:xb] for e in extras], meta)
            out[:, y0 * s : y1 * s, x0 * s : x1 * s] = part[:, (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s]
    return out


def translate_array(
    fn: GeneratorFn,
    image: np.ndarray,
    meta: GeneratorMeta,
    mask: np.ndarray | None = None,
    tile: int = 0,
    overlap: int = 32,
) -> np.ndarray:
    """uint8 HxWxC image (+ HxW mask in {0, 1}, 1 = hole) -> translated uint8 image."""
    x = to_range(image, meta.value_range)
    extras: list[np.ndarray] = []
    if meta.extra_inputs:
        if mask is None:
            names = ", ".join(i["name"] for i in meta.extra_inputs)
            from .errors import I2IError

            raise I2IError(f"this model needs extra inputs ({names}); pass --mask FILE")
        extras.append(np.asarray(mask, dtype=np.float32).reshape(1, *mask.shape[-2:]))
    out = translate_chw(fn, x, meta, extras, tile=tile, overlap=overlap)
    return from_range(out, meta.value_range)
