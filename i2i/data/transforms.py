"""Augmentation: the square layouts' random geometry (drawn here, applied batched on the device by
:mod:`i2i.data.batch`), and the albumentations pipeline of plain image folders (one call per item).

Randomness: albumentations keeps its own RNG, which DataLoader workers would inherit as identical
copies. :func:`apply` therefore reseeds the pipeline from ``torch``'s generator on every call,
and torch is seeded per worker by the DataLoader and per item by the engine, so augmentations are
distinct across workers and reproducible for a given seed.

Each transform draws from its own stream (:func:`transform_seed`): albumentations'
``Compose.set_random_seed`` gives every transform the *same* seed, so RandomCrop's first draw and
HorizontalFlip's draw were one number and images were flipped only with crops in the upper half of
the range (measured here with albumentations 2.0.8).
"""

from __future__ import annotations

import functools
import os
import random
import zlib

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks the network on import otherwise

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..errors import I2IError  # noqa: E402
from .batch import geometry  # noqa: E402


def _check_sizes(load_size: int | None, crop_size: int | None) -> None:
    for name, value in (("load_size", load_size), ("crop_size", crop_size)):
        if value is not None and value <= 0:
            raise I2IError(f"{name} must be positive, got {value}")
    if load_size and crop_size and load_size < crop_size:
        raise I2IError(f"load_size ({load_size}) must be at least crop_size ({crop_size}): images are resized to "
                       f"load_size and then cropped; use --set load_size={crop_size}")


def check_square(load_size: int, crop_size: int) -> None:
    """The sizes of :func:`square_geometry`; an I2IError saying what to set when they do not fit."""
    _check_sizes(load_size, crop_size)


def draw_seed() -> int:
    """One augmentation seed from torch's RNG (see the module doc): every image's geometry takes one."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


def transform_seed(seed: int, transform: str) -> int:
    """The seed of one transform (by class name, e.g. "RandomCrop") for an item's ``seed``, independent
    of the transform's place in the pipeline: ``seed`` and the name's CRC-32 as the two 32-bit words
    of one key, so each transform's Mersenne Twister (``random.Random`` seeds from every word of an
    int) and numpy generator start from a key of its own. Cheap: one per transform per item."""
    return (seed << 32) | _name_key(transform)


@functools.lru_cache(maxsize=None)
def _name_key(transform: str) -> int:
    return zlib.crc32(transform.encode())


def square_params(load_size: int, crop_size: int, flip: bool,
                  train: bool) -> tuple[int, int, int, int, int, int, bool]:
    """The reference's ``resize_and_crop`` as the arguments of :func:`i2i.data.batch.geometry`:
    train = resize to load_size x load_size (bicubic), random crop_size crop, random horizontal
    flip; eval = resize to crop_size, nothing random. Draws one seed from torch's RNG.

    The draws are exactly those of the albumentations pipeline this replaces
    (``Compose([Resize, RandomCrop, HorizontalFlip])`` seeded per call by :func:`seed_pipeline`), so
    a seed gives the crop and flip albumentations would: RandomCrop's ``random.Random`` gives
    ``u1, u2`` (rows, columns; offset ``int((load - crop + 1) * u)``), HorizontalFlip's own stream
    flips when its first draw is below 0.5.
    """
    seed = draw_seed()
    if not train:
        return crop_size, crop_size, 0, 0, crop_size, crop_size, False
    crop = random.Random(transform_seed(seed, "RandomCrop"))
    u1, u2 = crop.random(), crop.random()
    top = left = 0
    if crop_size < load_size:
        top, left = int((load_size - crop_size + 1) * u1), int((load_size - crop_size + 1) * u2)
    flipped = random.Random(transform_seed(seed, "HorizontalFlip")).random() < 0.5
    return load_size, load_size, top, left, crop_size, crop_size, flip and flipped


def square_geometry(load_size: int, crop_size: int, flip: bool, train: bool) -> torch.Tensor:
    """:func:`square_params` as a geometry tensor (one image of the whole source)."""
    return geometry(*square_params(load_size, crop_size, flip, train))


def folder_pipeline(load_size: int | None, crop_size: int | None, flip: bool, train: bool) -> A.Compose:
    """For plain image folders (super-resolution, inpainting): keep the aspect ratio.

    ``load_size`` resizes the shorter side; ``crop_size`` crops a square (random when training,
    centred otherwise), reflect-padding images that are smaller; with neither, images pass at
    full size (use batch size 1 then).
    """
    _check_sizes(load_size, crop_size)
    steps: list[A.BasicTransform] = []
    if load_size:
        steps.append(A.SmallestMaxSize(max_size=load_size, interpolation=cv2.INTER_CUBIC))
    if crop_size:
        steps.append(A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_REFLECT_101))
        steps.append(A.RandomCrop(crop_size, crop_size) if train else A.CenterCrop(crop_size, crop_size))
    if train and flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps)


def seed_pipeline(pipeline: A.Compose, seed: int) -> None:
    """Seed ``pipeline`` for one item, each transform with its own :func:`transform_seed` (see the
    module doc: albumentations' own ``set_random_seed`` gives them all the same one)."""
    pipeline.set_random_seed(seed)
    for transform in pipeline.transforms:
        transform.set_random_seed(transform_seed(seed, type(transform).__name__))


def apply(pipeline: A.Compose, **images: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``pipeline`` on named uint8 HxWxC images, seeded from torch's RNG (see module doc)."""
    seed_pipeline(pipeline, draw_seed())
    out = pipeline(**images)
    return {name: out[name] for name in images}


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a uint8 HxWxC image (keeps the channel axis for 1-channel images)."""
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 else out
