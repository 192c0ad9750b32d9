"""``i2i eval inpaint``: L1, PSNR, SSIM, LPIPS and FID of filled images, bucketed by hole ratio.

Every method (the trained model, OpenCV's classical inpainting) fills the same images with the
same masks: for each hole-ratio bucket (0-10%, ..., 50-60%) a fixed, seeded set of masks is drawn
by rejection sampling from a mask generator (:func:`bucketed_masks`). Metrics are computed on the
uint8 result a user gets (composited: known pixels are the input's), over the whole image, as in
the partial-convolution and DeepFill papers; ``hole L1`` is the error inside the hole only. LPIPS and
FID per bucket follow LaMa (Suvorov et al. 2022): FID between the filled images and the originals.
Every figure comes from the metric plugins (:func:`i2i.metrics.create`): PSNR capped at 100 dB per
image, SSIM over valid 11x11 Gaussian windows, L1 in [0, 1] units.
"""

from __future__ import annotations

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


# -- metrics ------------------------------------------------------------------------------------

#: what the table reports, in order: name -> (metric plugin name, its kwargs)
METRICS: dict[str, tuple[str, dict]] = {
    "l1": ("masked_l1", {"where": "all"}),
    "hole_l1": ("masked_l1", {}),
    "psnr": ("psnr", {"max_db": 100.0}),
    "ssim": ("ssim", {}),
    "lpips": ("lpips", {}),
    "fid": ("fid", {}),
}
#: always measured; lpips and fid only when asked (their feature networks need weights)
BASIC = ("l1", "hole_l1", "psnr", "ssim")


def measure(outputs: Sequence[np.ndarray], originals: Sequence[np.ndarray], masks: Sequence[np.ndarray],
            names: Sequence[str], metric_kwargs: dict[str, dict] | None = None, device: str = "cpu") -> dict[str, float]:
    """The ``names`` (keys of :data:`METRICS`) of uint8 HxWx3 ``outputs`` against ``originals``, with
    float HxW ``masks`` (1 = hole): per-image means, FID over the whole set."""
    import torch

    from i2i.metrics import create, images_to_tensor

    built = {name: create(METRICS[name][0], device=device, **METRICS[name][1], **(metric_kwargs or {}).get(name, {}))
             for name in names}
    for start in range(0, len(outputs), 16):  # bounded memory for LPIPS and Inception
        part = slice(start, start + 16)
        # float64: 8-bit values stay exact, so PSNR matches the uint8 formula to 1e-9 dB
        out_t = images_to_tensor(list(outputs[part]), dtype=torch.float64)
        ref_t = images_to_tensor(list(originals[part]), dtype=torch.float64)
        mask_t = torch.from_numpy(np.stack([np.asarray(m, np.float32) for m in masks[part]]))[:, None]
        for m in built.values():
            m.update(out_t, ref_t, mask_t)
    return {name: m.compute() for name, m in built.items()}


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


def generator_inpainter(source: str | Path, device: str = "cpu", weights: str | None = None) -> tuple[Inpainter, dict]:
    """A trained inpainting generator opened by :func:`i2i.load` (an i2i checkpoint, an exported
    ``.onnx`` file ...), run exactly as ``i2i translate --mask`` runs it."""
    from i2i.loader import load

    g = load(source, weights=weights, device=device)
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
    #: None when not measured (no --metrics lpips/fid)
    lpips: float | None = None
    fid: float | None = None


def evaluate(images: Sequence[np.ndarray], masks: Sequence[Sequence[np.ndarray]], methods: dict[str, Inpainter],
             buckets: Sequence[tuple[float, float]] = BUCKETS, metrics: Sequence[str] = BASIC,
             metric_kwargs: dict[str, dict] | None = None, device: str = "cpu") -> list[Row]:
    """Rows per (method, bucket) and an "all" row per method. Image ``i`` gets masks
    ``[i * k, (i + 1) * k)`` of every bucket, where ``k = len(masks[b]) // len(images)``.
    ``metrics``: keys of :data:`METRICS` (the basic four are always measured)."""
    k = min(len(ms) for ms in masks) // max(len(images), 1)
    if k < 1:
        raise I2IError("need at least one mask per image and bucket")
    names = list(dict.fromkeys([*BASIC, *metrics]))
    rows: list[Row] = []
    for name, fill in methods.items():
        pooled: tuple[list, list, list] = ([], [], [])
        for bucket, bucket_masks in zip(buckets, masks):
            outs, refs, holes = [], [], []
            for i, image in enumerate(images):
                for mask in bucket_masks[i * k : (i + 1) * k]:
                    out = fill(image, mask)
                    if out.shape != image.shape:
                        raise I2IError(f"{name} returned {out.shape} for an image of {image.shape}")
                    outs.append(out)
                    refs.append(image)
                    holes.append(mask)
            for into, items in zip(pooled, (outs, refs, holes)):
                into.extend(items)
            rows.append(Row(name, bucket_name(bucket), len(outs), **measure(outs, refs, holes, names, metric_kwargs, device)))
        rows.append(Row(name, "all", len(pooled[0]), **measure(*pooled, names, metric_kwargs, device)))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table, buckets grouped so the methods compare line by line (LPIPS and FID columns
    when they were measured)."""
    order = list(dict.fromkeys(r.holes for r in rows))
    extra = [c for c in ("lpips", "fid") if any(getattr(r, c) is not None for r in rows)]
    head = "| holes | method | n | L1 (%) | hole L1 (%) | PSNR (dB) | SSIM |" + "".join(f" {c.upper()} |" for c in extra)
    lines = [head, "|---|---|--:|--:|--:|--:|--:|" + "--:|" * len(extra)]
    for holes in order:
        for r in rows:
            if r.holes == holes:
                cells = "".join(f" {getattr(r, c):.4f} |" if c == "lpips" else f" {getattr(r, c):.2f} |" for c in extra)
                lines.append(f"| {r.holes} | {r.method} | {r.n} | {100 * r.l1:.2f} | {100 * r.hole_l1:.2f} | "
                             f"{r.psnr:.2f} | {r.ssim:.4f} |{cells}")
    return "\n".join(lines)


def rows_to_json(rows: Sequence[Row]) -> list[dict]:
    return [asdict(r) for r in rows]
