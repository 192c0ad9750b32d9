"""i2i.data datasets: layouts, shared geometry of paired crops, bad files, real data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from i2i.data import AlignedDataset, ImageFolderDataset, SkippedImageWarning, UnalignedDataset
from i2i.errors import I2IError
from i2i.imageio import write_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def needs(sub: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED / sub).is_dir(), reason=f"../shared/datasets/{sub} not present")


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ab_folder(root: Path, n: int = 3, size: int = 40, same: bool = True) -> Path:
    """root/train/i.png: A|B side by side; A == B when ``same``."""
    for i in range(n):
        a = _noise(size, size, i)
        b = a if same else 255 - a
        write_image(root / "train" / f"{i}.png", np.concatenate([a, b], axis=1))
    return root


# -- aligned ---------------------------------------------------------------------------------------

def test_aligned_pairs_share_crop_and_flip(tmp_path: Path) -> None:
    ds = AlignedDataset(_ab_folder(tmp_path), load_size=36, crop_size=24)
    seen = []
    for seed in range(12):
        torch.manual_seed(seed)
        item = ds[0]
        assert item["A"].shape == (3, 24, 24) and item["A"].dtype == torch.float32
        assert torch.equal(item["A"], item["B"]), f"A and B got different geometry (seed {seed})"
        seen.append(item["A"])
    # the augmentation is really random (crops/flips differ between seeds) and reproducible
    assert len({t.numpy().tobytes() for t in seen}) > 3
    torch.manual_seed(5)
    assert torch.equal(ds[0]["A"], seen[5])


def test_aligned_flip_is_applied_to_both(tmp_path: Path) -> None:
    ds = AlignedDataset(_ab_folder(tmp_path, n=1), load_size=24, crop_size=24)  # no crop: only the flip varies
    items = []
    for seed in range(10):
        torch.manual_seed(seed)
        items.append(ds[0])
    flipped = [i for i in items if not torch.equal(i["A"], items[0]["A"])]
    assert flipped and all(torch.equal(i["A"].flip(-1), items[0]["A"]) for i in flipped)
    assert all(torch.equal(i["A"], i["B"]) for i in items)


def test_aligned_direction_range_channels_and_eval(tmp_path: Path) -> None:
    black, white = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    write_image(tmp_path / "train" / "x.png", np.concatenate([black, white], axis=1))
    item = AlignedDataset(tmp_path, load_size=16, crop_size=8)[0]
    assert item["A"].max() == -1 and item["B"].min() == 1
    item = AlignedDataset(tmp_path, direction="BtoA", load_size=16, crop_size=8, value_range=(0, 1), out_channels=1)[0]
    assert item["A"].min() == 1 and item["B"].max() == 0 and item["B"].shape == (1, 8, 8)
    ds = AlignedDataset(_ab_folder(tmp_path / "n"), crop_size=32, train=False)
    torch.manual_seed(0)
    first = ds[1]["A"]
    torch.manual_seed(1)
    assert first.shape == (3, 32, 32) and torch.equal(ds[1]["A"], first)  # eval: nothing random
    with pytest.raises(I2IError, match="direction must be AtoB or BtoA"):
        AlignedDataset(tmp_path, direction="A2B")


def test_aligned_two_folders_matched_by_name(tmp_path: Path) -> None:
    for name in ["a", "b", "c"]:
        write_image(tmp_path / "train" / "A" / f"{name}.jpg", _noise(20, 20))
    for name in ["a", "b", "d"]:
        write_image(tmp_path / "train" / "B" / f"{name}.png", _noise(30, 24))  # other size and suffix
    with pytest.warns(UserWarning, match="2 images .* have no partner"):
        ds = AlignedDataset(tmp_path, load_size=16, crop_size=16)
    assert len(ds) == 2
    item = ds[1]
    assert Path(item["A_path"]).name == "b.jpg" and Path(item["B_path"]).name == "b.png"
    assert item["A"].shape == item["B"].shape == (3, 16, 16)
    # root/A + root/B without a phase folder works too
    (tmp_path / "train").rename(tmp_path / "flat")
    with pytest.warns(UserWarning, match="no partner"):
        assert len(AlignedDataset(tmp_path / "flat", load_size=16, crop_size=16)) == 2


def test_aligned_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="does not exist"):
        AlignedDataset(tmp_path / "missing")
    (tmp_path / "other").mkdir()
    with pytest.raises(I2IError, match=r"no paired images in .*expected train/.*found: other"):
        AlignedDataset(tmp_path)
    _ab_folder(tmp_path)
    with pytest.raises(I2IError, match=r"load_size \(16\) must be at least crop_size \(32\)"):
        AlignedDataset(tmp_path, load_size=16, crop_size=32)


def test_dataloader_workers_get_different_crops(tmp_path: Path) -> None:
    _ab_folder(tmp_path, n=1)
    ds = AlignedDataset(tmp_path, load_size=40, crop_size=16)
    ds.pairs = ds.pairs * 8  # the same image eight times: only the augmentation differs
    torch.manual_seed(0)
    batches = [b["A"] for b in DataLoader(ds, batch_size=1, num_workers=2)]
    assert len({b.numpy().tobytes() for b in batches}) > 4  # workers must not replay one RNG stream


# -- bad files -------------------------------------------------------------------------------------

def _with_bad_file(root: Path) -> Path:
    _ab_folder(root, n=2)
    data = (root / "train" / "0.png").read_bytes()
    (root / "train" / "0.png").write_bytes(data[: len(data) // 3])  # truncated
    (root / "train" / "5.jpg").write_text("not an image")
    return root


def test_bad_image_is_an_error_naming_it(tmp_path: Path) -> None:
    ds = AlignedDataset(_with_bad_file(tmp_path), load_size=32, crop_size=32)
    with pytest.raises(I2IError, match=r"cannot read image .*0\.png: .*skip_bad_images=true"):
        ds[0]


def test_skip_bad_skips_and_reports_once(tmp_path: Path) -> None:
    ds = AlignedDataset(_with_bad_file(tmp_path), load_size=32, crop_size=32, skip_bad=True)
    assert len(ds) == 3
    with pytest.warns(SkippedImageWarning, match=r"skipping unreadable image .*0\.png"):
        item = ds[0]
    assert item["A_path"].endswith("1.png")  # the next readable item
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same file is not reported again
        assert ds[0]["A_path"].endswith("1.png")
    with pytest.warns(SkippedImageWarning, match=r"5\.jpg"):
        assert ds[2]["A_path"].endswith("1.png")  # wraps around
    assert sorted(Path(p).name for p in ds.bad_files) == ["0.png", "5.jpg"]


# -- unaligned -------------------------------------------------------------------------------------

def test_unaligned_trainA_trainB(tmp_path: Path) -> None:
    for i in range(2):
        write_image(tmp_path / "trainA" / f"a{i}.png", _noise(20, 20, i))
    for i in range(5):
        write_image(tmp_path / "trainB" / f"b{i}.png", _noise(24, 30, 10 + i))
    ds = UnalignedDataset(tmp_path, load_size=20, crop_size=16)
    assert len(ds) == 5
    torch.manual_seed(0)
    items = [ds[i] for i in range(5)]
    assert [Path(i["A_path"]).name for i in items] == ["a0.png", "a1.png", "a0.png", "a1.png", "a0.png"]
    assert len({i["B_path"] for i in items}) > 1 and items[0]["B"].shape == (3, 16, 16)
    serial = UnalignedDataset(tmp_path, load_size=20, crop_size=16, serial=True)
    assert [Path(serial[i]["B_path"]).name for i in range(5)] == [f"b{i}.png" for i in range(5)]
    swapped = UnalignedDataset(tmp_path, load_size=20, crop_size=16, direction="BtoA", in_channels=1)
    assert swapped.dir_A.name == "trainB" and swapped[0]["A"].shape == (1, 16, 16)
    with pytest.raises(I2IError, match=r"no unpaired image sets .*expected folders testA and testB"):
        UnalignedDataset(tmp_path, phase="test")
    with pytest.raises(I2IError, match="does not exist"):
        UnalignedDataset(tmp_path, a_dir="trainA", b_dir="nope")
    explicit = UnalignedDataset(tmp_path, a_dir="trainB", b_dir="trainA", load_size=16, crop_size=16)
    assert explicit.dir_A.name == "trainB" and len(explicit) == 5


@needs("monet2photo")
def test_unaligned_monet2photo_two_folders() -> None:
    ds = UnalignedDataset(SHARED / "monet2photo", load_size=64, crop_size=32, max_items=20)
    assert (ds.dir_A.name, ds.dir_B.name) == ("monet", "photo")  # x2y: A is x
    assert len(ds) == 20
    full = UnalignedDataset(SHARED / "monet2photo")
    assert (len(full.paths_A), len(full.paths_B), len(full)) == (300, 1000, 1000)
    item = ds[0]
    assert item["A"].shape == item["B"].shape == (3, 32, 32)
    assert -1 <= item["A"].min() < item["A"].max() <= 1
    assert "/monet/" in item["A_path"] and "/photo/" in item["B_path"]


# -- real paired data and plain folders ------------------------------------------------------------

@needs("facades")
def test_real_facades() -> None:
    ds = AlignedDataset(SHARED / "facades", phase="train")
    assert len(ds) == 400
    torch.manual_seed(0)
    item = ds[0]
    assert item["A"].shape == item["B"].shape == (3, 256, 256)
    assert -1 <= item["A"].min() < item["A"].max() <= 1
    assert item["A_path"] == item["B_path"] and item["A_path"].endswith(".jpg")
    # B is the right half, the label map, mostly saturated blue; A is the (greyish) photo
    assert item["B"][2].mean() - item["B"][0].mean() > 0.5
    assert abs(item["A"][2].mean() - item["A"][0].mean()) < 0.2
    test = AlignedDataset(SHARED / "facades", phase="test", crop_size=256, train=False, max_items=2)
    assert len(test) == 2 and test[1]["A"].shape == (3, 256, 256)


@needs("sr/Set5")
def test_image_folder_set5() -> None:
    ds = ImageFolderDataset(SHARED / "sr" / "Set5", crop_size=48)  # no train/ folder: root is used
    assert len(ds) == 5
    item = ds[4]
    assert item["image"].shape == (3, 48, 48) and item["path"].endswith("woman.png")
    full = ImageFolderDataset(SHARED / "sr" / "Set5", train=False, channels=1, value_range=(0, 1))
    assert full[4]["image"].shape == (1, 344, 228) and 0 <= full[4]["image"].min() <= full[4]["image"].max() <= 1
    padded = ImageFolderDataset(SHARED / "sr" / "Set5", crop_size=256, train=False)
    assert padded[4]["image"].shape == (3, 256, 256)  # 344x228: reflect-padded up to the crop
    resized = ImageFolderDataset(SHARED / "sr" / "Set5", load_size=64, train=False)
    assert resized[4]["image"].shape == (3, 97, 64)  # shorter side to load_size, aspect kept


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(I2IError, match="no images in"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(I2IError, match="channels must be 1 or 3"):
        ImageFolderDataset(tmp_path, channels=4)
