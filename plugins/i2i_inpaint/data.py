"""Inpainting data: a folder of images (masks generated on the fly) or image/mask pairs.

Layouts of ``root``:

- any folder of images (sub-folders included): a mask is generated for every item by the mask
  generator (``--set mask=...``);
- ``root/images/`` + ``root/masks/`` with the same file stems: the given masks, read as every mask
  file is (:func:`i2i.translate.mask_plane`: non-zero = hole, or opaque = hole with transparency; a
  folder that marks more than half as hole on average is taken as inverted).

The last ``holdout`` images in sorted order are held aside for evaluation (:func:`i2i_inpaint.files.split_files`):
training never sees them, and ``i2i eval inpaint --data root`` scores exactly those.

Training items draw their crop, flip and mask from a per-item seed taken from torch's RNG, which
the DataLoader seeds per epoch and worker from the global seed: a run is reproducible, and every
epoch sees new masks. Evaluation items use ``mask_rng(eval_seed, index)``: the same masks always.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from i2i.data.batch import finish_item, hwc_uint8
from i2i.errors import I2IError
from i2i.imageio import read_image

from .files import pair_mask_file, resize_crop_box
from .masks import MaskGenerator, _mask_files, _read_mask_file, _resize_mask, folder_inverted, mask_rng

#: Keep resized training images in memory when they fit in this many bytes (see InpaintDataset).
CACHE_BYTES = 256 * 2**20


class InpaintDataset(Dataset):
    """Items: ``{"image": 3xSxS in [-1, 1], "mask": 1xSxS in {0, 1} (1 = hole), "path": str}``; the
    engine reads :meth:`raw_item`, with the image as uint8 (0..255), mapped to [-1, 1] on the device
    by ``to_device`` (``x / 127.5 - 1``, bit for bit as here)."""

    def __init__(
        self,
        root: str | Path,
        files: Sequence[Path],
        mask_gen: MaskGenerator,
        crop_size: int = 256,
        load_size: int = 0,
        train: bool = True,
        flip: bool = True,
        eval_seed: int = 0,
    ) -> None:
        if crop_size < 1:
            raise I2IError(f"crop_size must be positive, got {crop_size}")
        self.root = Path(root)
        self.files = list(files)
        self.mask_gen = mask_gen
        self.crop_size = crop_size
        self.load_size = max(load_size, crop_size) if load_size else crop_size
        self.train = train
        self.flip = flip
        self.eval_seed = eval_seed
        self.paired = (self.root / "images").is_dir() and (self.root / "masks").is_dir()
        masks = self.root / "masks"
        self.invert = self.paired and folder_inverted(_mask_files(str(masks)), str(masks))
        # Decoding a large photo dominates a small-crop step (a 1024 px JPEG for a 64 px crop), so
        # resized images are kept in memory when they all fit in CACHE_BYTES (per worker process).
        self.cache = len(self.files) * self.load_size**2 * 3 * 2 <= CACHE_BYTES
        self._cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.files)

    def _rng(self, index: int) -> np.random.Generator:
        if self.train:  # torch's RNG is seeded per epoch and worker by the DataLoader
            return mask_rng(int(torch.randint(0, 2**62, ()).item()), index)
        return mask_rng(self.eval_seed, index)

    def _resized(self, index: int) -> Image.Image:
        """The image with its short side resized to ``load_size`` (deterministic, so cacheable)."""
        img = self._cache.get(index)
        if img is None:
            array = read_image(self.files[index], channels=3)
            h, w = array.shape[:2]
            (nh, nw), _ = resize_crop_box(h, w, self.load_size, self.crop_size, None)
            img = Image.fromarray(array)
            if (nh, nw) != (h, w):
                img = img.resize((nw, nh), Image.Resampling.BICUBIC)
            if self.cache:
                self._cache[index] = img
        return img

    def __getitem__(self, index: int) -> dict[str, Any]:
        return finish_item(self.raw_item(index), (-1.0, 1.0))

    def raw_item(self, index: int) -> dict[str, Any]:
        """The item with a uint8 image (0..255) and the float mask."""
        path = self.files[index]
        rng = self._rng(index)
        img = self._resized(index)
        nw, nh = img.size
        s = self.crop_size
        _, (top, left) = resize_crop_box(nh, nw, self.load_size, s, rng if self.train else None)
        img = img.crop((left, top, left + s, top + s))
        flip = self.train and self.flip and rng.random() < 0.5
        image = np.asarray(img)
        if self.paired:
            mfile = pair_mask_file(self.root, path)
            mask = _resize_mask(_read_mask_file(str(mfile), self.invert), (nh, nw))[top : top + s, left : left + s]
        else:
            mask = self.mask_gen(rng, (s, s))
        if flip:
            image, mask = image[:, ::-1], mask[:, ::-1]
        return {
            "image": hwc_uint8(image),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None],
            "path": str(path),
        }
