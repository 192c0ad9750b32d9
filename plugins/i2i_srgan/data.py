"""SR datasets: HR images with their LR made on the fly by MATLAB bicubic, or paired HR/LR folders.

Layouts of a data folder:

- HR only (``Set5/``, ``DIV2K_train_HR/``): every image is HR; LR = ``imresize(HR, 1/scale)``.
- Paired: ``HR/`` and ``LR/`` sub-folders (or an explicit ``lr_dir``). LR files are matched to HR
  files by name, also when the LR name carries DIV2K's ``x4`` suffix (``0001.png`` <- ``0001x4.png``).

Training items are random aligned crops (``crop_size`` HR pixels) with flips and 90-degree
rotations; the RNGs are the ``random`` module's, which the engine seeds per item. The LR of a crop
is computed from the crop plus a margin of real context, so it equals the same region of the
full-image LR exactly (bicubic downscaling is local).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from i2i.data.batch import finish_item, hwc_uint8
from i2i.errors import I2IError
from i2i.imageio import list_images, read_image

from .imresize import downscale, modcrop

#: LR context around a crop, in LR pixels: the x1/s bicubic kernel reaches 2 LR pixels each way.
MARGIN = 3


def find_pairs(root: Path, scale: int, lr_dir: str | None = None) -> tuple[list[Path], list[Path] | None]:
    """(HR files, matching LR files or None) for a data folder (see the module docstring)."""
    root = Path(root)
    if not root.exists():
        raise I2IError(f"SR data folder {root} does not exist")
    lr_root: Path | None = Path(lr_dir) if lr_dir else None
    hr_root = root
    if lr_root is None and (root / "HR").is_dir() and (root / "LR").is_dir():
        hr_root, lr_root = root / "HR", root / "LR"
    hr_files = list_images(hr_root)
    if not hr_files:
        raise I2IError(f"no images in {hr_root}; an SR data folder holds HR images (or HR/ and LR/ sub-folders)")
    if lr_root is None:
        return hr_files, None
    by_stem = {p.stem: p for p in list_images(lr_root)}
    lr_files = []
    for hr in hr_files:
        lr = by_stem.get(hr.stem) or by_stem.get(f"{hr.stem}x{scale}") or by_stem.get(f"{hr.stem}_x{scale}")
        if lr is None:
            raise I2IError(f"no LR image for {hr.name} in {lr_root} (expected {hr.stem}.png or {hr.stem}x{scale}.png)")
        lr_files.append(lr)
    return hr_files, lr_files


def lr_crop(hr: np.ndarray, scale: int, top: int, left: int, size: int) -> np.ndarray:
    """The ``size x size`` LR crop at LR position (top, left) of ``downscale(hr, scale)``,
    computed from an HR window with ``MARGIN`` LR pixels of context (exactly equal, much faster)."""
    hr = modcrop(hr, scale)
    h, w = hr.shape[0] // scale, hr.shape[1] // scale
    t0, l0 = max(top - MARGIN, 0), max(left - MARGIN, 0)
    t1, l1 = min(top + size + MARGIN, h), min(left + size + MARGIN, w)
    # Where the window ends inside the image, its own mirrored border only touches the margin,
    # which is cut off; where it ends at the image border, it mirrors exactly as the full image.
    lr = downscale(hr[t0 * scale : t1 * scale, l0 * scale : l1 * scale], scale)
    return lr[top - t0 : top - t0 + size, left - l0 : left - l0 + size]


def augment(images: list[np.ndarray]) -> list[np.ndarray]:
    """The same random horizontal flip, vertical flip and transpose for every image in the list."""
    hflip, vflip, rot = random.random() < 0.5, random.random() < 0.5, random.random() < 0.5
    out = []
    for img in images:
        if hflip:
            img = img[:, ::-1]
        if vflip:
            img = img[::-1]
        if rot:
            img = img.transpose(1, 0, 2)
        out.append(img)
    return out


class SRDataset(Dataset):
    """Items ``{"lr": 3xhxw, "hr": 3x(h*s)x(w*s)`` float in [0, 1], ``"path": str}``; the engine
    reads :meth:`raw_item`, the same as uint8 (0..255), and its ``to_device`` divides by 255 there.

    ``train``: random crops of ``crop_size`` HR pixels (``repeat`` crops per image and epoch, since
    SR sets are few, large images) with flips/rotations. Otherwise whole images (modcropped).
    """

    def __init__(self, root: str | Path, scale: int = 4, crop_size: int = 96, train: bool = True,
                 lr_dir: str | None = None, repeat: int = 1, augment: bool = True, channels: int = 3,
                 cache_mb: int = 512) -> None:
        if crop_size % scale:
            raise I2IError(f"crop_size {crop_size} must be a multiple of the scale {scale}")
        self.scale, self.crop_size, self.train = scale, crop_size, train
        self.repeat = max(int(repeat), 1) if train else 1
        self.augment, self.channels = augment, channels
        self.hr_files, self.lr_files = find_pairs(Path(root), scale, lr_dir)
        # Decoding a large PNG costs far more than cropping it, and every image is cropped many
        # times per epoch: keep decoded images (per worker process) up to this budget.
        self.cache_bytes = max(int(cache_mb), 0) << 20
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
        self._cached = 0

    def __len__(self) -> int:
        return len(self.hr_files) * self.repeat

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if i in self._cache:
            return self._cache[i]
        hr = modcrop(read_image(self.hr_files[i], self.channels), self.scale)
        lr_full = read_image(self.lr_files[i], self.channels) if self.lr_files else None
        size = hr.nbytes + (lr_full.nbytes if lr_full is not None else 0)
        if self._cached + size <= self.cache_bytes:
            self._cache[i] = (hr, lr_full)
            self._cached += size
        return hr, lr_full

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finish_item(self.raw_item(index), (0.0, 1.0))

    def raw_item(self, index: int) -> dict[str, Any]:
        """The item with uint8 ``lr`` and ``hr`` (0..255): the LR made from HR in uint8 as always."""
        i = index % len(self.hr_files)
        path = self.hr_files[i]
        hr, lr_full = self._load(i)
        s = self.scale
        h, w = hr.shape[0] // s, hr.shape[1] // s
        if lr_full is not None and lr_full.shape[:2] != (h, w):
            raise I2IError(f"{self.lr_files[i]} is {lr_full.shape[1]}x{lr_full.shape[0]}, expected {w}x{h} "  # type: ignore[index]
                           f"(HR {path.name} / {s})")
        if not self.train:
            lr = lr_full if lr_full is not None else downscale(hr, s)
            return {"lr": hwc_uint8(lr), "hr": hwc_uint8(hr), "path": str(path)}
        size = self.crop_size // s
        if h < size or w < size:
            raise I2IError(f"{path} ({hr.shape[1]}x{hr.shape[0]}) is smaller than crop_size {self.crop_size}")
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        hr_c = hr[top * s : (top + size) * s, left * s : (left + size) * s]
        lr_c = lr_full[top : top + size, left : left + size] if lr_full is not None else lr_crop(hr, s, top, left, size)
        if self.augment:
            lr_c, hr_c = augment([lr_c, hr_c])
        return {"lr": hwc_uint8(lr_c), "hr": hwc_uint8(hr_c), "path": str(path)}


__all__ = ["SRDataset", "find_pairs", "lr_crop", "augment", "MARGIN"]
