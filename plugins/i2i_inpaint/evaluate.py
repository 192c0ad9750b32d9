"""``i2i eval inpaint``: L1, PSNR and SSIM of filled images, bucketed by hole ratio.

Every method (the trained model, OpenCV's classical inpainting) fills the same images with the
same masks: for each hole-ratio bucket (0-10%, ..., 50-60%) a fixed, seeded set of masks is drawn
by rejection sampling from a mask generator (:func:`bucketed_masks`). Metrics are computed on the
uint8 result a user gets (composited: known pixels are the input's), over the whole image, as in
the partial-convolution and DeepFill papers; ``hole L1`` is the error inside the hole only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from i2i.errors import I2IError

from .masks import MaskGenerator, mask_rng

#: hole-ratio buckets [lo, hi): the NVIDIA irregular-mask protocol's 10% steps up to 60%
BUCKETS: tuple[tuple[float, float], ...] = tuple((i / 10, (i + 1) / 10) for i in range(6))

#: fill(image uint8 HxWx3, mask float32 HxW, 1 = hole) -> uint8 HxWx3
Inpainter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def bucket_name(bucket: tuple[float, float]) -> str:
    return f"{round(bucket[0] * 100)}-{round(bucket[1] * 100)}%"


def bucketed_masks(gen: MaskGenerator, size_hw: tuple[int, int], count: int, seed: int = 0,
                   buckets: Sequence[tuple[float, float]] = BUCKETS, max_tries: int = 0) -> list[list[np.ndarray]]:
    """``count`` masks per bucket: trial ``t`` draws ``gen(mask_rng(seed, t))`` and keeps it if its
    bucket is not full. Same seed and generator -> the same masks. A bucket the generator cannot
    fill within ``max_tries`` (default 200 per mask) is an error naming it."""
    out: list[list[np.ndarray]] = [[] for _ in buckets]
    max_tries = max_tries or 200 * count * len(buckets)
    for t in range(max_tries):
        if all(len(b) >= count for b in out):
            return out
        mask = gen(mask_rng(seed, t), size_hw)
        ratio = float(mask.mean())
        for i, (lo, hi) in enumerate(buckets):
            if lo <= ratio < hi and ratio > 0 and len(out[i]) < count:
                out[i].append(mask)
                break
    missing = [bucket_name(b) for b, ms in zip(buckets, out) if len(ms) < count]
    if missing:
        raise I2IError(
            f"the mask generator gave too few masks with hole ratios {', '.join(missing)} in {max_tries} tries; "
            "use --masks FOLDER (e.g. the NVIDIA irregular masks) or fewer --buckets"
        )
    return out


# -- metrics on uint8 images ------------------------------------------------------------------


def l1(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """Mean absolute error in [0, 1] units, over all pixels or over ``where`` (HxW bool)."""
    err = np.abs(a.astype(np.float64) - b.astype(np.float64)) / 255.0
    if where is not None:
        err = err[where.astype(bool)]
    return float(err.mean()) if err.size else 0.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB for uint8 images (capped at 100 dB for identical images)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) / 255.0**2
    return 100.0 if mse <= 1e-10 else min(100.0, 10 * math.log10(1.0 / mse))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    return np.outer(g, g)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K = 0.01, 0.03), valid region,
    mean over channels; images in [0, 1]."""
    import cv2

    win = _gaussian_window()
    r = win.shape[0] // 2
    c1, c2 = 0.01**2, 0.03**2
    a = np.atleast_3d(a.astype(np.float64) / 255.0)
    b = np.atleast_3d(b.astype(np.float64) / 255.0)
    if min(a.shape[:2]) <= 2 * r:
        raise I2IError(f"SSIM needs images larger than {2 * r + 1} pixels, got {a.shape[1]}x{a.shape[0]}")

    def filt(x: np.ndarray) -> np.ndarray:
        return cv2.filter2D(x, -1, win, borderType=cv2.BORDER_REFLECT)[r:-r, r:-r]

    vals = []
    for ch in range(a.shape[2]):
        x, y = a[..., ch], b[..., ch]
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx * mx, filt(y * y) - my * my, filt(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


# -- inpainters --------------------------------------------------------------------------------


def opencv_inpainter(method: str = "telea", radius: int = 3) -> Inpainter:
    """OpenCV's classical inpainting (Telea 2004 fast marching, or Navier-Stokes)."""
    import cv2

    flag = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}[method]

    def fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        bgr = np.ascontiguousarray(image[..., ::-1])
        out = cv2.inpaint(bgr, (mask > 0.5).astype(np.uint8) * 255, radius, flag)
        return np.ascontiguousarray(out[..., ::-1])

    return fill


def generator_inpainter(source: str | Path, device: str = "cpu") -> tuple[Inpainter, dict]:
    """A trained inpainting generator opened by :func:`i2i.load` (an i2i checkpoint, an exported
    ``.onnx`` file ...), run exactly as ``i2i translate --mask`` runs it."""
    from i2i.loader import load

    g = load(source, device=device)
    if not any(i.get("name") == "mask" for i in g.meta.extra_inputs):
        raise I2IError(f"{source} holds generator {g.meta.name!r}, which takes no mask: it is not an inpainting model")
    config = None
    if not str(source).lower().endswith(".onnx"):
        from i2i.checkpoint import read_meta, resolve

        try:
            config = read_meta(resolve(source)).get("config")
        except I2IError:  # a published weights file: no training config
            config = None

    def fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return g.translate(image, mask)

    return fill, {"generator": g.meta.name, "kwargs": g.meta.kwargs, "info": g.meta.info, "config": config}


# -- the evaluation ----------------------------------------------------------------------------


@dataclass
class Row:
    method: str
    holes: str
    n: int
    l1: float
    hole_l1: float
    psnr: float
    ssim: float


def evaluate(images: Sequence[np.ndarray], masks: Sequence[Sequence[np.ndarray]], methods: dict[str, Inpainter],
             buckets: Sequence[tuple[float, float]] = BUCKETS) -> list[Row]:
    """Rows per (method, bucket) and an "all" row per method. Image ``i`` gets masks
    ``[i * k, (i + 1) * k)`` of every bucket, where ``k = len(masks[b]) // len(images)``."""
    k = min(len(ms) for ms in masks) // max(len(images), 1)
    if k < 1:
        raise I2IError("need at least one mask per image and bucket")
    rows: list[Row] = []
    for name, fill in methods.items():
        per_all: list[tuple[float, float, float, float]] = []
        for bucket, bucket_masks in zip(buckets, masks):
            scores = []
            for i, image in enumerate(images):
                for mask in bucket_masks[i * k : (i + 1) * k]:
                    out = fill(image, mask)
                    if out.shape != image.shape:
                        raise I2IError(f"{name} returned {out.shape} for an image of {image.shape}")
                    scores.append((l1(out, image), l1(out, image, mask > 0.5), psnr(out, image), ssim(out, image)))
            per_all += scores
            rows.append(Row(name, bucket_name(bucket), len(scores), *np.mean(scores, axis=0).tolist()))
        rows.append(Row(name, "all", len(per_all), *np.mean(per_all, axis=0).tolist()))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table, buckets grouped so the methods compare line by line."""
    order = list(dict.fromkeys(r.holes for r in rows))
    lines = ["| holes | method | n | L1 (%) | hole L1 (%) | PSNR (dB) | SSIM |", "|---|---|--:|--:|--:|--:|--:|"]
    for holes in order:
        for r in rows:
            if r.holes == holes:
                lines.append(f"| {r.holes} | {r.method} | {r.n} | {100 * r.l1:.2f} | {100 * r.hole_l1:.2f} | {r.psnr:.2f} | {r.ssim:.4f} |")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
