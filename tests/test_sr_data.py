"""SR data: HR folders (LR by bicubic on the fly) and paired HR/LR folders."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from i2i.errors import I2IError
from i2i.imageio import write_image
from i2i_srgan.data import SRDataset
from i2i_srgan.imresize import downscale


def _images(folder: Path, names: list[str], size: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        write_image(folder / name, img)
        out.append(img)
    return out


def test_hr_folder_gives_aligned_crops_with_bicubic_lr(tmp_path: Path) -> None:
    hr = _images(tmp_path, ["a.png", "b.png"], (50, 66))  # not multiples of 4: modcropped to 48x64
    ds = SRDataset(tmp_path, scale=4, crop_size=16, repeat=3, augment=False)
    assert len(ds) == 6
    random.seed(3)
    item = ds[1]
    assert item["lr"].shape == (3, 4, 4) and item["hr"].shape == (3, 16, 16)
    # find the crop in the HR image, and check its LR is the same region of the full-image LR
    full_hr, full_lr = hr[1][:48, :64], downscale(hr[1], 4)
    crop = (item["hr"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    hits = [(t, l) for t in range(0, 48 - 15, 4) for l in range(0, 64 - 15, 4) if (full_hr[t:t + 16, l:l + 16] == crop).all()]
    assert len(hits) == 1
    t, l = hits[0]
    lr = (item["lr"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(lr, full_lr[t // 4 : t // 4 + 4, l // 4 : l // 4 + 4])
    whole = SRDataset(tmp_path, scale=4, train=False)[0]
    assert whole["hr"].shape == (3, 48, 64) and whole["lr"].shape == (3, 12, 16)


def test_paired_folders_match_by_name_and_div2k_suffix(tmp_path: Path) -> None:
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    _images(tmp_path / "HR", ["0001.png", "0002.png"], (32, 40))
    lr = _images(tmp_path / "LR", ["0001x4.png", "0002.png"], (8, 10), seed=1)
    for i in range(2):  # the given LR files, not bicubic ones
        item = SRDataset(tmp_path, scale=4, train=False)[i]
        np.testing.assert_array_equal((item["lr"].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), lr[i])
    crop = SRDataset(tmp_path, scale=4, crop_size=32)[1]
    assert crop["lr"].shape == (3, 8, 8) and crop["hr"].shape == (3, 32, 32)


def test_data_errors_are_clear(tmp_path: Path) -> None:
    (tmp_path / "HR").mkdir()
    (tmp_path / "LR").mkdir()
    _images(tmp_path / "HR", ["a.png"], (32, 40))
    _images(tmp_path / "LR", ["b.png"], (8, 10))
    with pytest.raises(I2IError, match="no LR image for a.png"):
        SRDataset(tmp_path, scale=4)
    with pytest.raises(I2IError, match="multiple of the scale"):
        SRDataset(tmp_path / "HR", scale=4, crop_size=30)
    _images(tmp_path / "LR", ["a.png"], (9, 10))
    with pytest.raises(I2IError, match="expected 10x8"):
        SRDataset(tmp_path, scale=4, crop_size=16)[0]
    with pytest.raises(I2IError, match="smaller than crop_size"):
        SRDataset(tmp_path / "HR", scale=4, crop_size=64)[0]
    with pytest.raises(I2IError, match="does not exist"):
        SRDataset(tmp_path / "nothing", scale=4)
