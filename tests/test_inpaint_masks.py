"""Inpainting masks (generators, seeded sets, NVIDIA mask files, mixtures) and the inpainting data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.errors import I2IError, UnknownNameError
from i2i_inpaint.data import InpaintDataset
from i2i_inpaint.files import image_files, split_files
from i2i_inpaint.evaluate import BUCKETS, bucketed_masks
from i2i_inpaint.masks import (
    Files, FreeForm, Mixture, Rect, Union, create_mask, list_masks, mask_from_spec, mask_rng, mask_set,
    register_mask, unregister_mask,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
NVIDIA = SHARED / "datasets" / "inpaint" / "masks"
CELEBA = SHARED / "datasets" / "inpaint" / "celeba_hq"
needs_nvidia = pytest.mark.skipif(not NVIDIA.is_dir(), reason="../shared/datasets/inpaint/masks not present")
needs_celeba = pytest.mark.skipif(not CELEBA.is_dir(), reason="../shared/datasets/inpaint/celeba_hq not present")


def digest(masks: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for m in masks:
        h.update(np.ascontiguousarray(m, dtype=np.float32).tobytes())
    return h.hexdigest()


SPECS = ["free_form", "free_form_eval", "rect", "free_form:0.7,rect:0.3", "union:free_form+rect"]


@pytest.mark.parametrize("spec", SPECS)
def test_generators_give_binary_masks_of_the_size_asked(spec: str) -> None:
    gen = mask_from_spec(spec)
    for i, hw in enumerate([(64, 64), (48, 80), (33, 17)]):
        m = gen(mask_rng(3, i), hw)
        assert m.shape == hw and m.dtype == np.float32
        assert set(np.unique(m).tolist()) <= {0.0, 1.0}
    ratios = [m.mean() for m in mask_set(gen, 20, (64, 64), seed=1)]
    assert 0 < min(ratios) and max(ratios) < 1 and np.std(ratios) > 0.01  # holes of varied size, never empty/full


@pytest.mark.parametrize("spec", SPECS + ([str(NVIDIA)] if NVIDIA.is_dir() else []))
def test_a_fixed_seed_gives_the_same_mask_set_every_time(spec: str) -> None:
    gen = mask_from_spec(spec)
    a = mask_set(gen, 12, (40, 56), seed=7)
    b = mask_set(mask_from_spec(spec), 12, (40, 56), seed=7)  # a fresh generator: no hidden state
    c = mask_set(gen, 12, (40, 56), seed=8)
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    assert len({digest([m]) for m in a}) > 6  # the set is not one mask repeated


def test_the_same_seed_gives_the_same_masks_in_another_process() -> None:
    """No dependence on hash seeds, global RNG state or import order: a new interpreter agrees."""
    code = ("import hashlib, numpy as np; from i2i_inpaint.masks import mask_from_spec, mask_set;"
            "h = hashlib.sha256();"
            "[h.update(np.ascontiguousarray(m, dtype=np.float32).tobytes()) for m in "
            "mask_set(mask_from_spec('free_form:0.7,rect:0.3'), 12, (40, 56), seed=7)];"
            "print(h.hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert out == digest(mask_set(mask_from_spec("free_form:0.7,rect:0.3"), 12, (40, 56), seed=7))


def test_free_form_strokes_scale_with_the_image() -> None:
    gen = FreeForm()
    small = np.mean([m.mean() for m in mask_set(gen, 40, (64, 64), seed=0)])
    large = np.mean([m.mean() for m in mask_set(gen, 40, (256, 256), seed=0)])
    assert abs(small - large) < 0.05  # same strokes, shrunk: about the same hole ratio


def test_rect_sides_are_within_the_fractions() -> None:
    gen = Rect(min_frac=0.25, max_frac=0.5)
    for m in mask_set(gen, 30, (80, 80), seed=0):
        ys, xs = np.nonzero(m)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert 20 <= h <= 40 and 20 <= w <= 40 and m.sum() == h * w  # one solid box
    with pytest.raises(I2IError, match="min_frac"):
        Rect(min_frac=0.6, max_frac=0.5)


@needs_nvidia
def test_nvidia_mask_files_non_zero_is_hole() -> None:
    files = sorted(NVIDIA.glob("*.png"))
    gen = Files(NVIDIA, augment=False)
    assert len(gen.files) == len(files) == 2000
    # at the file's own size a mask is exactly its non-zero pixels (the file drawn by the rng)
    chosen = files[int(mask_rng(0, 0).integers(0, len(files)))]
    raw = np.asarray(Image.open(chosen))
    assert raw.max() > 0 and set(np.unique(raw).tolist()) != {0, 1}  # a real 8-bit mask file
    expected = (raw > 0).astype(np.float32)
    np.testing.assert_array_equal(gen(mask_rng(0, 0), (512, 512)), expected)
    # resized, the hole ratio is kept
    small = gen(mask_rng(0, 0), (64, 64))
    assert abs(small.mean() - expected.mean()) < 0.03
    # the set is sorted by rising hole ratio: slices select small or large holes
    lo = np.mean([m.mean() for m in mask_set(Files(NVIDIA, last=0.2, augment=False), 10, (64, 64), 0)])
    hi = np.mean([m.mean() for m in mask_set(Files(NVIDIA, first=0.8, augment=False), 10, (64, 64), 0)])
    assert lo < 0.15 < 0.4 < hi
    # the augmenting generator flips/rotates: same hole ratio, not always the same pixels
    aug = [Files(NVIDIA)(mask_rng(5, i), (64, 64)) for i in range(8)]
    plain = [Files(NVIDIA, augment=False)(mask_rng(5, i), (64, 64)) for i in range(8)]
    assert any(not np.array_equal(a, p) for a, p in zip(aug, plain))
    assert mask_from_spec(str(NVIDIA)).files == gen.files  # a folder path is a spec
    # a seeded mixture of strokes, boxes and NVIDIA files
    mix = mask_from_spec(f"free_form:0.5,rect:0.2,{NVIDIA}:0.3", {str(NVIDIA): {"augment": False}})
    assert isinstance(mix.gens[2], Files) and not mix.gens[2].augment and np.allclose(mix.probs, [0.5, 0.2, 0.3])
    picks = [int(mask_rng(9, i).choice(3, p=mix.probs)) for i in range(300)]
    assert abs(picks.count(2) / 300 - 0.3) < 0.08
    assert digest(mask_set(mix, 10, (32, 32), 9)) == digest(mask_set(mask_from_spec(f"free_form:0.5,rect:0.2,{NVIDIA}:0.3", {str(NVIDIA): {"augment": False}}), 10, (32, 32), 9))


def test_files_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="does not exist"):
        Files(tmp_path / "nope")
    with pytest.raises(I2IError, match="no mask images"):
        Files(tmp_path)


def test_mixture_follows_its_probabilities() -> None:
    ones = lambda rng, hw: np.ones(hw, np.float32)  # noqa: E731 - distinguishable components
    zeros = lambda rng, hw: np.zeros(hw, np.float32)  # noqa: E731
    mix = Mixture([(ones, 0.8), (zeros, 0.2)])
    picks = [mix(mask_rng(1, i), (4, 4)).mean() for i in range(2000)]
    assert abs(np.mean(picks) - 0.8) < 0.03
    never = Mixture([(ones, 1.0), (zeros, 0.0)])
    assert all(never(mask_rng(2, i), (4, 4)).all() for i in range(200))
    with pytest.raises(I2IError, match="probabilities"):
        Mixture([(ones, -1.0), (zeros, 0.5)])


def test_specs_parse_into_mixtures_and_unions() -> None:
    mix = mask_from_spec("free_form:3,rect:1")
    assert isinstance(mix, Mixture) and np.allclose(mix.probs, [0.75, 0.25])
    assert isinstance(mix.gens[1], Rect)
    mix = mask_from_spec("free_form:0.5,rect:0.5", {"rect": {"min_frac": 0.9, "max_frac": 0.9}})
    assert mix.gens[1].min_frac == 0.9  # per-component kwargs
    union = mask_from_spec("union:free_form+rect")
    assert isinstance(union, Union)
    parts = [g(mask_rng(4, 0), (64, 64)) for g in union.gens]
    np.testing.assert_array_equal(union(mask_rng(4, 0), (64, 64)) >= parts[0], True)
    with pytest.raises(UnknownNameError, match="did you mean: free_form"):
        mask_from_spec("free_from")
    with pytest.raises(I2IError, match="not a probability"):
        mask_from_spec("free_form:x,rect:1")
    with pytest.raises(I2IError, match="mask generator 'rect'"):
        create_mask("rect", bogus=1)


def test_a_plugin_adds_a_mask_generator() -> None:
    """Third-party masks: register_mask, then usable by name in specs (training config, eval)."""

    def make_border(width: int = 2):
        def gen(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
            m = np.zeros(hw, np.float32)
            m[:width], m[-width:] = 1, 1
            return m
        return gen

    register_mask("test_border", make_border, plugin="my_plugin", description="top and bottom rows")
    try:
        assert "test_border" in [s.name for s in list_masks("test_*")]
        assert [s.plugin for s in list_masks("test_border")] == ["my_plugin"]
        m = mask_from_spec("test_border", {"width": 3})(mask_rng(0, 0), (10, 10))
        assert m.sum() == 60
        mix = mask_from_spec("test_border:1,rect:0")
        assert mix(mask_rng(0, 1), (10, 10)).sum() == 40
        with pytest.raises(I2IError, match="registered twice: by plugin 'my_plugin' and by plugin 'other'"):
            register_mask("test_border", make_border, plugin="other")
    finally:
        unregister_mask("test_border")
    with pytest.raises(UnknownNameError):
        create_mask("test_border")


def test_a_plugin_registers_masks_through_the_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    """The register_masks hook: a third-party plugin's generator is listed and usable by name."""
    import sys
    import types

    from click.testing import CliRunner

    import i2i
    from i2i import plugins
    from i2i.cli import cli

    def make_left(width: int = 1):
        def gen(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
            m = np.zeros(hw, np.float32)
            m[:, :width] = 1
            return m
        return gen

    module = types.ModuleType("fake_mask_plugin")
    module.register_masks = i2i.hookimpl(lambda register: register("left_band", make_left, description="left columns"))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_mask_plugin", module)
    monkeypatch.setitem(plugins.BUILTIN_PLUGINS, "maskplug", "fake_mask_plugin")
    plugins.reset()
    try:
        listing = CliRunner().invoke(cli, ["list", "masks", "left*"])
        assert listing.exit_code == 0 and "left_band" in listing.output and "maskplug" in listing.output
        assert mask_from_spec("left_band", {"width": 2})(mask_rng(0, 0), (4, 5)).sum() == 8
        assert "free_form" in [s.name for s in list_masks()]  # the built-ins come through the same hook
    finally:
        monkeypatch.undo()
        plugins.reset()
    with pytest.raises(UnknownNameError, match="left_band"):
        create_mask("left_band")


def test_bucketed_masks_are_fixed_and_in_their_buckets() -> None:
    gen = mask_from_spec("free_form_eval")
    a = bucketed_masks(gen, (32, 32), 3, seed=0)
    b = bucketed_masks(gen, (32, 32), 3, seed=0)
    assert [len(x) for x in a] == [3] * len(BUCKETS)
    for (lo, hi), ms in zip(BUCKETS, a):
        assert all(lo <= m.mean() < hi for m in ms)
    assert digest([m for ms in a for m in ms]) == digest([m for ms in b for m in ms])
    with pytest.raises(I2IError, match="too few masks"):
        bucketed_masks(Rect(0.1, 0.1), (32, 32), 1, seed=0, max_tries=50)


@needs_celeba
def test_celeba_split_holds_the_src_folder_aside() -> None:
    files = image_files(CELEBA)
    train, held = split_files(files, 10)
    assert len(files) == 56 and len(train) == 46
    assert all(f.relative_to(CELEBA).parts[0] == "src" for f in held)
    assert not any(f.relative_to(CELEBA).parts[0] == "src" for f in train)
    with pytest.raises(I2IError, match="lower --set holdout"):
        split_files(files, 56)


def _faces(tmp_path: Path, n: int = 4) -> list[Path]:
    out = []
    for i, f in enumerate(sorted(CELEBA.rglob("*.jpg"))[:n]):
        p = tmp_path / f"face{i}.png"
        Image.open(f).resize((48, 40)).save(p)
        out.append(p)
    return out


@needs_celeba
def test_dataset_folder_with_generated_masks(tmp_path: Path) -> None:
    import torch

    root = tmp_path / "faces"
    root.mkdir()
    files = _faces(root)
    ds = InpaintDataset(root, files, mask_from_spec("free_form"), crop_size=32, train=False, eval_seed=3)
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert -1 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    again = InpaintDataset(root, files, mask_from_spec("free_form"), crop_size=32, train=False, eval_seed=3)[1]
    assert torch.equal(item["mask"], again["mask"]) and torch.equal(item["image"], again["image"])
    torch.manual_seed(0)
    train = InpaintDataset(root, files, mask_from_spec("free_form"), crop_size=32, train=True)
    masks = [train[1]["mask"] for _ in range(4)]
    assert any(not torch.equal(masks[0], m) for m in masks[1:])  # training draws new masks


@needs_celeba
def test_dataset_image_mask_pairs(tmp_path: Path) -> None:
    root = tmp_path / "pairs"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    files = _faces(root / "images", 2)
    for i, f in enumerate(files):
        m = np.zeros((40, 48), np.uint8)
        m[5 + i : 20, 10:30] = 7  # any non-zero value is a hole
        Image.fromarray(m).save(root / "masks" / f.name)
    found = image_files(root)
    assert found == files
    ds = InpaintDataset(root, found, mask_from_spec("rect"), crop_size=40, load_size=40, train=False)
    mask = ds[0]["mask"][0].numpy()
    # 48x40 centre-cropped to 40x40: columns 4..43 of the file
    expected = np.zeros((40, 48), np.float32)
    expected[5:20, 10:30] = 1
    np.testing.assert_array_equal(mask, expected[:, 4:44])
    (root / "masks" / files[1].name).unlink()
    with pytest.raises(I2IError, match="no mask for"):
        ds[1]
