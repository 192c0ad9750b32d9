"""The fast loader (uint8 until the device, geometry and normalisation there) gives the items the old
per-item pipeline gave, for the same seed, on every dataset layout.

The old pipeline is kept below, verbatim in substance, as the reference: an albumentations
``Compose([Resize(INTER_CUBIC), RandomCrop, HorizontalFlip])`` reseeded from torch per call, then
uint8 -> float. The new one draws the same crop and flip and resizes with torch's bicubic, which
differs from OpenCV's only by OpenCV's 11-bit fixed-point weights: at most one level (of 255), on a
tiny fraction of pixels. Layouts whose maths did not move must be bit for bit equal (SR,
inpainting), or equal up to the float32 rounding of one conversion formula for all (plain folders).
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from i2i.config import TrainConfig  # noqa: E402
from i2i.data import AlignedDataset, ImageFolderDataset, UnalignedDataset  # noqa: E402
from i2i.data.batch import apply_geometry, collate, finish_batch, geometry  # noqa: E402
from i2i.data.transforms import folder_pipeline, seed_pipeline, square_params  # noqa: E402
from i2i.engine.data import SeededItems  # noqa: E402
from i2i.imageio import read_image, to_channels, write_image  # noqa: E402
from i2i.method import Method  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SEEDS = range(8)
LEVEL = 2 / 255  # one uint8 level in [-1, 1]


def needs(sub: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (SHARED / sub).is_dir(), reason=f"../shared/datasets/{sub} not present")


# -- the old pipeline (the reference) --------------------------------------------------------------

def old_square(load: int, crop: int, flip: bool, train: bool, extra: tuple[str, ...] = ()) -> A.Compose:
    steps: list = [A.Resize(load, load, interpolation=cv2.INTER_CUBIC)] if train else \
        [A.Resize(crop, crop, interpolation=cv2.INTER_CUBIC)]
    if train and crop < load:
        steps.append(A.RandomCrop(crop, crop))
    if train and flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps, additional_targets={n: "image" for n in extra})


def old_apply(pipeline: A.Compose, **images: np.ndarray) -> dict[str, np.ndarray]:
    seed_pipeline(pipeline, int(torch.randint(0, 2**31 - 1, ()).item()))  # each transform its own stream
    out = pipeline(**images)
    return {k: out[k] for k in images}


def old_tensor(image: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    low, high = value_range
    image = image[:, :, None] if image.ndim == 2 else image
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().mul_((high - low) / 255.0).add_(low)


def old_aligned(ds: AlignedDataset, index: int, load: int, crop: int, train: bool) -> dict[str, torch.Tensor]:
    path, _ = ds.pairs[index]
    ab = read_image(path)
    half = ab.shape[1] // 2
    a, b = ab[:, :half], ab[:, half:2 * half]
    if ds.direction == "BtoA":
        a, b = b, a
    a, b = to_channels(a, ds.in_channels), to_channels(b, ds.out_channels)
    out = old_apply(old_square(load, crop, True, train, ("B",)), image=a, B=b)
    return {"A": old_tensor(out["image"]), "B": old_tensor(out["B"])}


def old_unaligned(ds: UnalignedDataset, index: int, load: int, crop: int, train: bool) -> dict[str, torch.Tensor]:
    a_path = ds.paths_A[index % len(ds.paths_A)]
    b_path = ds.paths_B[int(torch.randint(len(ds.paths_B), ()).item())]
    b, a = read_image(b_path), read_image(a_path)
    pipeline = old_square(load, crop, True, train)
    out_a, out_b = old_apply(pipeline, image=a)["image"], old_apply(pipeline, image=b)["image"]
    return {"A": old_tensor(out_a), "B": old_tensor(out_b), "B_path": str(b_path)}


def close_to_old(new: torch.Tensor, old: torch.Tensor) -> None:
    """Equal up to OpenCV's fixed-point rounding: one level at most, on < 0.1% of the values (a
    different crop or flip would differ by tens of levels almost everywhere)."""
    assert new.shape == old.shape and new.dtype == torch.float32
    diff = (new - old).abs()
    assert diff.max() <= LEVEL * 1.001, f"max difference {diff.max() / LEVEL:.2f} levels"
    assert (diff > 1e-6).float().mean() < 1e-3


# -- square layouts: same crops and flips as before ------------------------------------------------

@needs("facades")
@pytest.mark.parametrize("train", [True, False])
def test_facades_items_equal_the_old_pipeline(train: bool) -> None:
    ds = AlignedDataset(SHARED / "facades", train=train, max_items=4)
    flips = set()
    for seed in SEEDS:
        index = seed % len(ds)
        torch.manual_seed(seed)
        new = ds[index]
        torch.manual_seed(seed)
        old = old_aligned(ds, index, 286, 256, train)
        close_to_old(new["A"], old["A"])
        close_to_old(new["B"], old["B"])
        torch.manual_seed(seed)
        flips.add(int(ds.raw_item(index)["A_geometry"][6]))
    assert flips == ({0, 1} if train else {0})  # both branches of the flip were compared


def test_crop_and_flip_are_drawn_independently() -> None:
    """albumentations' Compose.set_random_seed seeds every transform alike, which made the flip the
    crop's first draw again (flips only with crops in the upper half); each now has its own stream."""
    torch.manual_seed(0)
    combos = set()
    for _ in range(200):
        _, _, top, left, _, _, flipped = square_params(286, 256, True, True)
        combos.add((top > 15, flipped))
    assert combos == {(False, False), (False, True), (True, False), (True, True)}
    pipeline = folder_pipeline(None, 8, True, True)  # RandomCrop then HorizontalFlip, as SR and inpaint use
    rows, cols = np.mgrid[0:16, 0:16]
    image = np.stack([rows * 10, cols * 10, rows * 0], -1).astype(np.uint8)  # each pixel says where it was
    combos = set()
    for seed in range(200):
        seed_pipeline(pipeline, seed)
        out = pipeline(image=image)["image"].astype(int)
        top, flipped = out[0, 0, 0] // 10, out[0, 0, 1] > out[0, 1, 1]
        combos.add((top > 4, bool(flipped)))
    assert combos == {(False, False), (False, True), (True, False), (True, True)}


@needs("facades")
def test_aligned_grey_and_btoa_equal_the_old_pipeline() -> None:
    ds = AlignedDataset(SHARED / "facades", direction="BtoA", in_channels=1, load_size=72, crop_size=64, max_items=3)
    for seed in SEEDS:
        torch.manual_seed(seed)
        new = ds[seed % 3]
        torch.manual_seed(seed)
        old = old_aligned(ds, seed % 3, 72, 64, True)
        assert new["A"].shape == (1, 64, 64)
        close_to_old(new["A"], old["A"])
        close_to_old(new["B"], old["B"])


@pytest.mark.parametrize("root", [pytest.param(r, marks=needs(r)) for r in ("horses", "monet2photo")])
def test_unaligned_items_equal_the_old_pipeline(root: str) -> None:
    data = SHARED / root
    ds = UnalignedDataset(data, a_dir=".", b_dir=".", max_items=6) if root == "horses" else \
        UnalignedDataset(data, max_items=6)
    for seed in SEEDS:
        torch.manual_seed(seed)
        new = ds[seed]
        torch.manual_seed(seed)
        old = old_unaligned(ds, seed, 286, 256, True)
        assert new["B_path"] == old["B_path"]  # the B draw still comes first
        close_to_old(new["A"], old["A"])
        close_to_old(new["B"], old["B"])


# -- layouts whose maths did not move: bit for bit -------------------------------------------------

@needs("sr/Set5")
def test_image_folder_items_equal_the_old_ones() -> None:
    ds = ImageFolderDataset(SHARED / "sr" / "Set5", load_size=96, crop_size=64)
    pipeline = ds.transform
    for seed in SEEDS:
        torch.manual_seed(seed)
        new = ds[seed % 5]["image"]
        torch.manual_seed(seed)
        old = old_tensor(old_apply(pipeline, image=read_image(ds.paths[seed % 5]))["image"])
        # the same pixels; x / 127.5 - 1 (the one conversion now) vs the old x * (2 / 255) - 1: 1-2 float32 ulps
        assert new.shape == old.shape and torch.allclose(new, old, rtol=0, atol=3e-7)
        assert torch.equal(((new + 1) * 127.5).round(), ((old + 1) * 127.5).round())


@needs("sr/Set5")
def test_sr_items_are_bitwise_the_old_ones() -> None:
    from i2i_srgan.data import SRDataset, augment, lr_crop

    ds = SRDataset(SHARED / "sr" / "Set5", scale=4, crop_size=48)
    import random

    for seed in SEEDS:
        random.seed(seed)
        new = ds[seed % 5]
        random.seed(seed)
        hr, _ = ds._load(seed % 5)
        size = 12
        top, left = random.randint(0, hr.shape[0] // 4 - size), random.randint(0, hr.shape[1] // 4 - size)
        lr_c, hr_c = augment([lr_crop(hr, 4, top, left, size), hr[top * 4:(top + size) * 4, left * 4:(left + size) * 4]])
        for key, img in (("lr", lr_c), ("hr", hr_c)):  # the old _to_tensor
            old = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
            assert torch.equal(new[key], old), key


@needs("inpaint/celeba_hq/src")
def test_inpaint_items_are_bitwise_the_old_ones() -> None:
    from i2i_inpaint.data import InpaintDataset
    from i2i_inpaint.masks import mask_from_spec

    files = sorted((SHARED / "inpaint" / "celeba_hq" / "src").rglob("*.jpg"))[:3]
    for train in (True, False):
        ds = InpaintDataset(SHARED / "inpaint" / "celeba_hq", files, mask_from_spec("free_form"), crop_size=64,
                            load_size=80, train=train)
        for seed in range(4):
            torch.manual_seed(seed)
            raw = ds.raw_item(seed % 3)
            torch.manual_seed(seed)
            new = ds[seed % 3]
            old = np.asarray(raw["image"], dtype=np.float32) / 127.5 - 1.0  # the old conversion
            assert raw["image"].dtype == torch.uint8 and torch.equal(new["mask"], raw["mask"])
            assert torch.equal(new["image"], torch.from_numpy(np.ascontiguousarray(old.transpose(2, 0, 1))))


# -- the engine's path equals the hand-loaded item -------------------------------------------------

@needs("facades")
def test_to_device_finishes_raw_batches_like_items() -> None:
    """SeededItems reads raw_item; collate + Method.to_device give exactly the stacked ``ds[i]``."""
    ds = AlignedDataset(SHARED / "facades", max_items=4)
    seeded = SeededItems(ds)
    keys = [(i, 100 + i) for i in range(4)]
    raw = [seeded[k] for k in keys]
    # the A|B file as decoded, sent once (HWC, no resize); A and B are its halves' columns
    assert raw[0]["AB"].dtype == torch.uint8 and raw[0]["AB"].shape == (256, 512, 3) and "A" not in raw[0]
    assert raw[0]["A_geometry"][7:].tolist() == [0, 256] and raw[0]["B_geometry"][7:].tolist() == [256, 512]
    batch = Method(TrainConfig()).to_device(collate(raw))
    assert not {"A_geometry", "A_source", "AB"} & set(batch) and batch["A"].dtype == torch.float32
    as_uint8 = AlignedDataset(SHARED / "facades", max_items=4, value_range=None)
    finished = []
    for index, seed in keys:
        torch.manual_seed(seed)
        finished.append(as_uint8[index]["A"])
    assert finished[0].dtype == torch.uint8 and finished[0].shape == (3, 256, 256)  # value_range=None: uint8
    assert torch.equal(batch["A"], torch.stack(finished).float().div_(127.5).sub_(1))
    items = []
    for index, seed in keys:  # the items as a user gets them (float, finished one by one)
        torch.manual_seed(seed)
        items.append(ds[index])
    assert torch.equal(batch["A"], torch.stack([it["A"] for it in items]))
    assert torch.equal(batch["B"], torch.stack([it["B"] for it in items]))


def test_collate_finishes_mixed_sizes_in_the_worker(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(20, 20), (30, 24), (20, 20)]):
        write_image(tmp_path / "trainA" / f"{i}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        write_image(tmp_path / "trainB" / f"{i}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    ds = UnalignedDataset(tmp_path, load_size=20, crop_size=16, serial=True)
    torch.manual_seed(0)
    raw = [ds.raw_item(i) for i in range(3)]
    batch = collate(raw)
    assert "A_geometry" not in batch and batch["A"].shape == (3, 16, 16, 3)  # finished per item (sizes differ)
    assert batch["B_geometry"].shape == (3, 9) and batch["B"].shape == (3, 20, 20, 3)  # left to the device
    torch.manual_seed(0)
    items = [ds[i] for i in range(3)]
    out = finish_batch(batch, (-1.0, 1.0))
    assert torch.equal(out["A"], torch.stack([it["A"] for it in items]))
    assert torch.equal(out["B"], torch.stack([it["B"] for it in items]))


def test_collate_finishes_side_by_side_files_of_two_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i, w in enumerate([20, 24, 20]):
        write_image(tmp_path / "train" / f"{i}.png", rng.integers(0, 256, (w // 2 + 4, w * 2, 3), dtype=np.uint8))
    ds = AlignedDataset(tmp_path, load_size=18, crop_size=16, direction="BtoA")
    torch.manual_seed(3)
    batch = collate([ds.raw_item(i) for i in range(3)])
    assert set(batch) == {"A", "B", "A_path", "B_path"} and batch["A"].shape == (3, 16, 16, 3)
    torch.manual_seed(3)
    items = [ds[i] for i in range(3)]
    out = finish_batch(batch, (-1.0, 1.0))
    assert torch.equal(out["A"], torch.stack([it["A"] for it in items]))
    assert torch.equal(out["B"], torch.stack([it["B"] for it in items]))


def test_sr_method_range_is_div_255() -> None:
    class SR(Method):
        data_range = (0.0, 1.0)

    x = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16, 1)  # raw images are N x H x W x C
    out = SR(TrainConfig()).to_device({"hr": x, "mask": torch.ones(1, 1, 2, 2), "path": ["p"]})
    assert torch.equal(out["hr"], x.permute(0, 3, 1, 2).float().div_(255.0)) and out["hr"].is_contiguous() and out["mask"].dtype == torch.float32 and out["path"] == ["p"]


def test_geometry_crop_flip_and_checks() -> None:
    x = torch.arange(2 * 1 * 4 * 5, dtype=torch.uint8).reshape(2, 1, 4, 5)
    out = apply_geometry(x, torch.stack([geometry(4, 5, 1, 2, 2, 3, False), geometry(4, 5, 0, 0, 2, 3, True)]))
    assert torch.equal(out[0, 0], x[0, 0, 1:3, 2:5]) and torch.equal(out[1, 0], x[1, 0, 0:2, 0:3].flip(-1))
    cols = apply_geometry(x, torch.stack([geometry(4, 2, 0, 0, 4, 2, True, (3, 5))] * 2))  # columns 3:5, flipped
    assert torch.equal(cols, x[:, :, :, 3:5].flip(-1))
    with pytest.raises(ValueError, match="share load and crop sizes"):
        apply_geometry(x, torch.stack([geometry(4, 5, 0, 0, 2, 3, False), geometry(4, 5, 0, 0, 3, 3, False)]))
