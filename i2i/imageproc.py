"""Pre- and post-processing around a generator, torch-free (numpy only).

Every generator that :func:`i2i.load` opens (PyTorch or onnxruntime) runs through these
functions, so all doors give the same pixels. ``translate_array`` takes any
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


def pad_to(chw: np.ndarray, h: int, w: int, fill: float | None = None) -> np.ndarray:
    """Pad the last two axes bottom/right to ``h`` x ``w`` (any leading axes: CHW or NCHW).

    Reflection keeps borders natural; when the pad is larger than the image (a 100 px image into a
    256 multiple) reflection is impossible and the edge is repeated instead. ``fill`` pads with a
    constant (masks: 0 = known).
    """
    ph, pw = h - chw.shape[-2], w - chw.shape[-1]
    if ph == 0 and pw == 0:
        return chw
    widths = [(0, 0)] * (chw.ndim - 2) + [(0, ph), (0, pw)]
    if fill is not None:
        return np.pad(chw, widths, mode="constant", constant_values=fill)
    mode = "reflect" if ph < chw.shape[-2] and pw < chw.shape[-1] else "edge"
    return np.pad(chw, widths, mode=mode)


def pad_to_multiple(chw: np.ndarray, multiple: int, fill: float | None = None,
                    min_size: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """Pad bottom/right (:func:`pad_to`) so H and W are multiples of ``multiple`` and at least
    ``min_size``; returns (padded, (h, w)) to crop back."""
    h, w = chw.shape[-2:]
    m = max(multiple, 1)
    th, tw = max(h, min_size), max(w, min_size)
    return pad_to(chw, th + (-th) % m, tw + (-tw) % m, fill), (h, w)


def _run_padded(fn: GeneratorFn, x: np.ndarray, extras: list[np.ndarray], meta: GeneratorMeta) -> np.ndarray:
    """Run fn on one CxHxW input (plus extras), padding to the size multiple and cropping back."""
    xp, (h, w) = pad_to_multiple(x, meta.size_multiple, min_size=meta.min_size)
    ep = [pad_to_multiple(e, meta.size_multiple, fill=0.0, min_size=meta.min_size)[0] for e in extras]
    out = fn(xp[None].astype(np.float32), *[e[None].astype(np.float32) for e in ep])[0]
    return out[:, : h * meta.scale, : w * meta.scale]


#: put(y, x, tile): write a uint8 HxWxC tile at output row y, column x
Sink = Callable[[int, int, np.ndarray], None]


def translate_array(
    fn: GeneratorFn,
    image: np.ndarray,
    meta: GeneratorMeta,
    mask: np.ndarray | None = None,
    tile: int = 0,
    overlap: int = 32,
    sink: Sink | None = None,
) -> np.ndarray | None:
    """uint8 HxWxC image (C = ``meta.in_channels``) + HxW mask in {0, 1} (1 = hole) -> uint8 output.

    The output is (H*scale)x(W*scale)x``meta.out_channels``. With ``tile`` > 0 the image is run in
    tiles of that side, each with ``overlap`` pixels of real context on every side of which only the
    core is kept: for networks whose receptive field fits in the overlap (and without image-wide
    normalisation, see ``GeneratorMeta.tiling``) the result equals the untiled one. Each tile is
    converted from and to 8 bits on its own and written straight into the output, so memory is the
    8-bit output plus one tile. ``sink(y, x, tile)`` receives the tiles instead of a new array being
    returned (e.g. to write them into an output that also holds an alpha channel).
    """
    if image.ndim == 2:
        image = image[:, :, None]
    h, w = image.shape[:2]
    s = meta.scale
    if meta.extra_inputs and mask is None:
        from .errors import I2IError

        names = ", ".join(i["name"] for i in meta.extra_inputs)
        raise I2IError(f"this model needs extra inputs ({names}); pass --mask FILE")
    hole = None if mask is None else np.asarray(mask, dtype=np.float32).reshape(1, h, w)
    out = None
    if sink is None:
        out = np.empty((h * s, w * s, meta.out_channels), dtype=np.uint8)

        def sink(y: int, x: int, part: np.ndarray) -> None:
            out[y : y + part.shape[0], x : x + part.shape[1]] = part

    step = tile if tile > 0 else max(h, w)
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            y1, x1 = min(y0 + step, h), min(x0 + step, w)
            ya, yb = max(y0 - overlap, 0), min(y1 + overlap, h)
            xa, xb = max(x0 - overlap, 0), min(x1 + overlap, w)
            x_in = to_range(image[ya:yb, xa:xb], meta.value_range)
            extras = [hole[:, ya:yb, xa:xb]] if hole is not None else []
            part = _run_padded(fn, x_in, extras, meta)
            core = part[:, (y0 - ya) * s : (y1 - ya) * s, (x0 - xa) * s : (x1 - xa) * s]
            sink(y0 * s, x0 * s, from_range(core, meta.value_range))
    return out
