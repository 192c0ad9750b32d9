"""The inpainting data's files: which images, which are held aside for evaluation, crop boxes.

Torch-free, so ``i2i eval inpaint``'s command (and ``i2i --help``) load without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from i2i.errors import I2IError
from i2i.imageio import list_images

#: Evaluation images held aside by default (the last files of the sorted list).
DEFAULT_HOLDOUT = 8

def image_files(root: str | Path) -> list[Path]:
    """Images under ``root`` (recursively, sorted by path); in the pairs layout, ``root/images``."""
    root = Path(root)
    folder = root / "images" if (root / "images").is_dir() and (root / "masks").is_dir() else root
    files = list_images(folder, recursive=True)
    if not files:
        raise I2IError(f"no images found in {folder}; expected a folder of .jpg/.png images")
    return files


def split_files(files: Sequence[Path], holdout: int = DEFAULT_HOLDOUT) -> tuple[list[Path], list[Path]]:
    """(train, eval): the last ``holdout`` files (in the given sorted order) are the eval set.

    Deterministic and independent of the machine: adding files at the end of the sort order moves
    the eval set, so keep a dataset folder fixed while comparing models.
    """
    files = list(files)
    if holdout < 0:
        raise I2IError(f"holdout must be >= 0, got {holdout}")
    if holdout >= len(files):
        raise I2IError(f"only {len(files)} images: cannot hold {holdout} aside for evaluation and still train; lower --set holdout")
    cut = len(files) - holdout
    return files[:cut], files[cut:]


def pair_mask_file(root: Path, image: Path) -> Path | None:
    """The mask of ``image`` in the pairs layout (same relative stem under ``root/masks``)."""
    masks = root / "masks"
    if not masks.is_dir():
        return None
    rel = image.relative_to(root / "images").with_suffix("")
    for cand in sorted(masks.joinpath(rel.parent).glob(rel.name + ".*")):
        return cand
    raise I2IError(f"no mask for {image} in {masks}: expected {masks / rel}.png (same name as the image)")


def resize_crop_box(h: int, w: int, load_size: int, crop_size: int, rng: np.random.Generator | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """((new_h, new_w), (top, left)): resize the short side to ``load_size``, then crop
    ``crop_size`` at random (``rng``) or in the centre (``rng=None``)."""
    scale = load_size / min(h, w)
    nh, nw = max(crop_size, round(h * scale)), max(crop_size, round(w * scale))
    if rng is None:
        return (nh, nw), ((nh - crop_size) // 2, (nw - crop_size) // 2)
    return (nh, nw), (int(rng.integers(0, nh - crop_size + 1)), int(rng.integers(0, nw - crop_size + 1)))
