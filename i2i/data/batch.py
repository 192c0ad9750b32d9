"""Raw items and their finishing: images stay uint8 until the device, where they are resized,
cropped, flipped and normalised a whole batch at a time.

Why: one DataLoader worker decodes a 512x256 facades JPEG in ~0.56 ms, but the old per-item
pipeline then spent as long again resizing 256 -> 286 (bicubic), cropping, flipping and converting
to float32 (4x the bytes to copy into the batch, pin and send). A GPU step at batch 32 wants
thousands of items per second, so a worker now decodes, draws the random crop and flip, and hands
over the decoded uint8 pixels; the device does the arithmetic (``bench/data_loader.py`` measures
both halves).

The protocol, used by the training engine (:func:`i2i.engine.data.make_loader`):

- A dataset may offer ``raw_item(index) -> dict``: images as **uint8** ``H x W x C`` tensors
  (0..255; decoded arrays as they are, so collation is a plain copy of rows), and for an image
  ``key`` whose geometry is still to be applied, ``key + "_geometry"``: an int64 tensor
  ``[load_h, load_w, top, left, crop_h, crop_w, flip, x0, x1]`` (:func:`geometry`). The image may
  be columns ``x0:x1`` of another tensor, named by the string ``key + "_source"`` (a side-by-side
  A|B file is sent once, whole: one contiguous copy into the batch instead of two strided halves);
  such a source tensor is gone from the finished batch. Float tensors (an inpainting mask,
  ``C x H x W``) and other values pass through unchanged.
- :func:`collate` batches raw items; an image whose sources differ in size across the batch (a
  folder of photos of many sizes) gets its geometry applied per item first, on the CPU in the
  worker, since such images cannot be stacked.
- :func:`finish_batch` (called by :meth:`i2i.method.Method.to_device` after the move) applies the
  geometry and maps every uint8 image to float32 ``N x C x H x W`` in the method's ``data_range``.

A dataset's own ``__getitem__`` returns the same item finished (float32 ``C x H x W`` in its
``value_range``) through the very same functions on a batch of one, so a training batch and a
hand-loaded item hold identical numbers.

Geometry (:func:`apply_geometry`) reproduces the reference's ``resize_and_crop`` as the
albumentations/OpenCV pipeline did it (``cv2.resize(..., INTER_CUBIC)``: Keys' cubic with
a = -0.75, half-pixel centres, edge pixels replicated; then a crop and a horizontal flip) with
``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)``, which uses the same
kernel, centres and edge handling, rounded back to uint8. The one difference is OpenCV's 11-bit
fixed-point weights: on 80 facades halves 0.007% of the pixels differ, each by one level
(``tests/test_loader_pipeline.py`` pins it).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

#: suffix of the key that carries an image's pending geometry in a raw item or batch
GEOMETRY = "_geometry"
#: suffix of the key that names the tensor an image is columns of (see the module docstring)
SOURCE = "_source"


def geometry(load_h: int, load_w: int, top: int, left: int, crop_h: int, crop_w: int, flip: bool,
             columns: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """The pending geometry of one image: take ``columns`` ``(x0, x1)`` of the source ((0, 0): all
    of it), resize to ``load_h x load_w``, crop ``crop_h x crop_w`` at (``top``, ``left``) of the
    resized image, then flip horizontally when ``flip``. int64 tensor of 9 values."""
    return torch.tensor([load_h, load_w, top, left, crop_h, crop_w, int(flip), *columns], dtype=torch.int64)


def hwc_uint8(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x C`` (or ``H x W``) array -> uint8 ``H x W x C`` tensor sharing its memory when
    the strides allow (a half of a decoded A|B image does): collation copies it into the batch."""
    if image.ndim == 2:
        image = image[:, :, None]
    if any(s < 0 for s in image.strides) or not image.flags.writeable:
        image = image.copy()
    return torch.from_numpy(image)


def _nchw(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``N x H x W x C`` -> the same as ``N x C x H x W`` (a view)."""
    return images.permute(0, 3, 1, 2)


def resize_uint8(images: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize of uint8 ``N x C x H x W`` -> uint8 ``N x C x height x width``, as OpenCV's
    ``INTER_CUBIC`` does it (see the module docstring); the same size is returned unchanged."""
    if tuple(images.shape[-2:]) == (height, width):
        return images
    # contiguous N x C x H x W first: torch's CPU bicubic is ~1.4x slower on channels-last input
    out = F.interpolate(images.to(dtype=torch.float32, memory_format=torch.contiguous_format), size=(height, width),
                        mode="bicubic", align_corners=False)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def apply_geometry(images: torch.Tensor, geom: torch.Tensor | Sequence[Sequence[int]]) -> torch.Tensor:
    """uint8 ``N x C x H x W`` (any device) and ``N x 9`` geometries (:func:`geometry`, read on the
    host: keep them on the CPU, so that no device sync happens) -> uint8 ``N x C x crop_h x crop_w``.

    All rows must share the load and crop sizes and the columns (one dataset's items of one source
    size do); ValueError otherwise.
    """
    rows = geom.tolist() if isinstance(geom, torch.Tensor) else [list(g) for g in geom]
    if not rows:
        return images
    load_h, load_w, _, _, crop_h, crop_w, _, x0, x1 = rows[0]
    if any((r[0], r[1], r[4], r[5], r[7], r[8]) != (load_h, load_w, crop_h, crop_w, x0, x1) for r in rows):
        raise ValueError("the items of one batch must share load and crop sizes and columns")
    if x1:
        images = images[..., x0:x1]
    resized = resize_uint8(images, load_h, load_w)
    n, c = resized.shape[:2]
    if (crop_h, crop_w) == (load_h, load_w) and not any(r[6] for r in rows):
        return resized
    # One gather per axis for the whole batch (a per-item slice loop launches 2N small kernels);
    # the flip is the column index run backwards.
    ys = torch.tensor([list(range(r[2], r[2] + crop_h)) for r in rows], dtype=torch.int64)
    xs = torch.tensor([list(range(r[3] + crop_w - 1, r[3] - 1, -1)) if r[6] else list(range(r[3], r[3] + crop_w))
                       for r in rows], dtype=torch.int64)
    ys, xs = ys.to(resized.device, non_blocking=True), xs.to(resized.device, non_blocking=True)
    out = resized.gather(2, ys[:, None, :, None].expand(n, c, crop_h, load_w))
    return out.gather(3, xs[:, None, None, :].expand(n, c, crop_h, crop_w))


def to_range(images: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    """uint8 ``N x C x H x W`` (0..255; any strides) -> contiguous float32 in ``value_range``
    (0 -> low, 255 -> high), computed as ``x / (255 / (high - low)) + low``: for [0, 1] and [-1, 1]
    that is bit for bit what the SR (``x / 255``) and inpainting (``x / 127.5 - 1``) datasets always
    computed (the square layouts' ``x * (2 / 255) - 1`` differs by a float32 rounding)."""
    low, high = float(value_range[0]), float(value_range[1])
    out = images.to(dtype=torch.float32, memory_format=torch.contiguous_format).div_(255.0 / (high - low))
    return out.add_(low) if low else out


def _source_key(batch: dict[str, Any], key: str) -> str:
    """The key of the tensor that image ``key`` is (columns of): ``key`` itself, or its ``_source``."""
    source = batch.get(key + SOURCE, key)
    return source[0] if isinstance(source, (list, tuple)) else source  # collated: one name per item


def _finish_images(batch: dict[str, Any]) -> dict[str, Any]:
    """Raw batch -> uint8 ``N x C x h x w`` images with every pending geometry applied."""
    out = dict(batch)
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.ndim == 4:
            out[key] = _nchw(value)
    sources = set()
    for key in [k for k in batch if k.endswith(GEOMETRY)]:
        image_key = key[: -len(GEOMETRY)]
        source = _source_key(batch, image_key)
        out[image_key] = apply_geometry(out[source], out.pop(key))
        if source != image_key:
            sources.add(source)
            out.pop(image_key + SOURCE, None)
    for source in sources:
        out.pop(source, None)
    return out


def finish_batch(batch: dict[str, Any], value_range: Sequence[float]) -> dict[str, Any]:
    """A raw batch (uint8 ``N x H x W x C`` images, pending ``*_geometry``) -> float32
    ``N x C x h x w`` images in ``value_range``; float tensors and other values unchanged.

    Geometry tensors are read where they are (keep them on the CPU: no device sync); images are
    worked on where they are (the device).
    """
    out = _finish_images(batch)
    for key, value in out.items():
        if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:
            out[key] = to_range(value, value_range)
    return out


def finish_item(item: dict[str, Any], value_range: Sequence[float] | None) -> dict[str, Any]:
    """One raw item finished on the CPU (a batch of one): float32 ``C x h x w`` images in
    ``value_range``, or, with ``value_range`` None, uint8 ``C x h x w`` (geometry applied)."""
    batch = {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in item.items()}
    out = finish_batch(batch, value_range) if value_range is not None else _finish_images(batch)
    return {k: v[0].contiguous() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` for raw items: an image whose sources differ in size across the batch
    gets its geometry applied per item first (on the CPU, in the worker), then all are stacked."""
    if items and isinstance(items[0], dict):
        finished_sources = set()
        for key in [k for k in items[0] if k.endswith(GEOMETRY)]:
            image_key = key[: -len(GEOMETRY)]
            source = _source_key(items[0], image_key)
            if len({tuple(it[source].shape) for it in items}) > 1:
                fixed = []
                for it in items:
                    it = dict(it)
                    nchw = apply_geometry(_nchw(it[source][None]), it.pop(key)[None])
                    it[image_key] = nchw[0].permute(1, 2, 0)  # back to H x W x C, as raw images are
                    it.pop(image_key + SOURCE, None)
                    fixed.append(it)
                items = fixed
                if source != image_key:
                    finished_sources.add(source)
        still_used = {_source_key(items[0], k[: -len(SOURCE)]) for k in items[0] if k.endswith(SOURCE)}
        if finished_sources - still_used:
            items = [{k: v for k, v in it.items() if k not in finished_sources - still_used} for it in items]
    return default_collate(items)


__all__ = ["GEOMETRY", "SOURCE", "geometry", "hwc_uint8", "resize_uint8", "apply_geometry", "to_range", "finish_batch",
           "finish_item", "collate"]
