"""Augmentation pipelines (albumentations) and the uint8 -> float tensor conversion.

Randomness: albumentations keeps its own RNG, which DataLoader workers would inherit as identical
copies. :func:`apply` therefore reseeds the pipeline from ``torch``'s generator on every call,
and torch is seeded per worker by the DataLoader and per item by the engine, so augmentations are
distinct across workers and reproducible for a given seed.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it checks the network on import otherwise

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..errors import I2IError  # noqa: E402


def _check_sizes(load_size: int | None, crop_size: int | None) -> None:
    for name, value in (("load_size", load_size), ("crop_size", crop_size)):
        if value is not None and value <= 0:
            raise I2IError(f"{name} must be positive, got {value}")
    if load_size and crop_size and load_size < crop_size:
        raise I2IError(f"load_size ({load_size}) must be at least crop_size ({crop_size}): images are resized to "
                       f"load_size and then cropped; use --set load_size={crop_size}")


def square_pipeline(load_size: int, crop_size: int, flip: bool, train: bool,
                    extra_images: tuple[str, ...] = ()) -> A.Compose:
    """The reference's ``resize_and_crop``: train = resize to load_size x load_size (bicubic),
    random crop_size crop, random horizontal flip; eval = resize to crop_size, nothing random.

    ``extra_images`` names further image targets that get exactly the same geometry (the B half).
    """
    _check_sizes(load_size, crop_size)
    if train:
        steps: list[A.BasicTransform] = [A.Resize(load_size, load_size, interpolation=cv2.INTER_CUBIC)]
        if crop_size < load_size:
            steps.append(A.RandomCrop(crop_size, crop_size))
        if flip:
            steps.append(A.HorizontalFlip(p=0.5))
    else:
        steps = [A.Resize(crop_size, crop_size, interpolation=cv2.INTER_CUBIC)]
    return A.Compose(steps, additional_targets={name: "image" for name in extra_images})


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


def apply(pipeline: A.Compose, **images: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``pipeline`` on named uint8 HxWxC images, seeded from torch's RNG (see module doc)."""
    pipeline.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    out = pipeline(**images)
    return {name: out[name] for name in images}


def to_tensor(image: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """uint8 HxWxC -> float32 CxHxW in ``value_range`` (0 -> low, 255 -> high)."""
    if image.ndim == 2:
        image = image[:, :, None]
    low, high = value_range
    chw = np.ascontiguousarray(image.transpose(2, 0, 1))
    chw = torch.from_numpy(chw if chw.flags.writeable else chw.copy())
    return chw.float().mul_((high - low) / 255.0).add_(low)


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of a uint8 HxWxC image (keeps the channel axis for 1-channel images)."""
    out = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)
    return out[:, :, None] if out.ndim == 2 else out
