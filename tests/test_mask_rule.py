"""Masks as users save them: one rule (i2i.translate.mask_plane / hole_mask) for `i2i translate`,
`i2i serve` and `i2i eval inpaint`'s mask folders.

Transparency: opaque = hole. Otherwise (L, 1-bit, grey RGB): non-zero = hole. A mask that marks more
than half of the image is taken as inverted, a mask of another size (same shape) is resized nearest
neighbour, and both are said.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.errors import I2IError
from i2i.translate import MaskWarning, hole_mask, read_mask

H, W = 24, 30
NVIDIA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "inpaint" / "masks"


def strokes() -> np.ndarray:
    hole = np.zeros((H, W), bool)
    hole[3:9, 4:20] = True
    hole[15:20, 22:29] = True
    return hole


def saved_as_users_save_them(d: Path) -> dict[str, Path]:
    """The same strokes in every mode an editor or a script writes."""
    hole = strokes()
    grey = np.where(hole, 255, 0).astype(np.uint8)
    files: dict[str, Path] = {}

    def save(name: str, image: Image.Image) -> None:
        files[name] = d / f"{name}.png"
        image.save(files[name])

    save("L", Image.fromarray(grey))
    save("L_soft", Image.fromarray(np.where(hole, 3, 0).astype(np.uint8)))  # any non-zero value
    save("1bit", Image.fromarray(grey).convert("1"))
    save("RGB", Image.fromarray(np.repeat(grey[..., None], 3, axis=2)))
    for under in (0, 255):  # what lies under the transparent pixels says nothing
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., :3] = under
        rgba[hole, :3] = (20, 20, 20)  # dark opaque strokes, as a brush in an editor paints them
        rgba[hole, 3] = 255
        save(f"RGBA_strokes_on_{under}", Image.fromarray(rgba))
    save("LA", Image.fromarray(np.stack([np.full((H, W), 128, np.uint8), grey], axis=2), "LA"))
    save("RGBA_opaque_grey", Image.fromarray(np.concatenate(
        [np.repeat(grey[..., None], 3, axis=2), np.full((H, W, 1), 255, np.uint8)], axis=2)))
    pal = Image.fromarray(grey).convert("P")
    pal.info["transparency"] = 0  # palette index 0 (black) transparent
    save("P_transparency", pal)
    return files


def test_every_mode_gives_the_same_hole(tmp_path: Path) -> None:
    want = strokes().astype(np.float32)
    for name, path in saved_as_users_save_them(tmp_path).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing to say about any of them
            got = read_mask(str(path), (H, W))
        assert got.dtype == np.float32 and np.array_equal(got, want), name


def test_strokes_on_a_transparent_layer_are_the_hole_not_all_hole(tmp_path: Path) -> None:
    """The fault: transparency composited on white made such a mask "all hole ... is it inverted?"."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[5:10, 5:12, 3] = 255
    hole = hole_mask(rgba, (H, W))
    assert hole.sum() == 5 * 7 and hole[5:10, 5:12].all()


def test_an_inverted_mask_is_detected_by_the_documented_rule_and_said() -> None:
    keep_white = np.where(strokes(), 0, 255).astype(np.uint8)  # 1 = valid pixels (partial-conv style)
    notes: list[str] = []
    hole = hole_mask(keep_white, (H, W), "mask m.png", note=notes.append)
    assert np.array_equal(hole, strokes().astype(np.float32))
    assert len(notes) == 1 and "taken as inverted (more than half is hole" in notes[0] and "m.png" in notes[0]
    with pytest.warns(MaskWarning, match="taken as inverted"):  # said by default as a warning
        hole_mask(keep_white, (H, W))
    assert hole_mask(keep_white, (H, W), invert=False).mean() > 0.5  # the caller may decide
    # up to half of the image is a hole as drawn
    half = np.zeros((H, W), np.uint8)
    half[:, : W // 2] = 255
    assert hole_mask(half, (H, W), note=notes.append).mean() == 0.5 and len(notes) == 1


def test_another_size_is_resized_nearest_and_said_another_shape_is_refused() -> None:
    big = np.kron(strokes(), np.ones((3, 3), bool)).astype(np.uint8) * 255  # 3x the image, same strokes
    notes: list[str] = []
    hole = hole_mask(big, (H, W), "mask big.png", note=notes.append)
    assert np.array_equal(hole, strokes().astype(np.float32))
    assert notes == [f"mask big.png is {3 * W}x{3 * H}, the image {W}x{H}: resized it (nearest neighbour)"]
    with pytest.raises(I2IError, match=f"is {W}x{H - 4} but the image is {W}x{H}, another shape"):
        hole_mask(big[: 3 * (H - 4), : 3 * W][::3, ::3], (H, W))


def test_mistakes_stay_one_line_errors() -> None:
    colour = np.zeros((H, W, 3), np.uint8)
    colour[..., 0] = np.arange(W, dtype=np.uint8) * 8
    for mask, message in [(colour, "is a colour image"), (np.zeros((H, W), np.uint8), "marks no hole"),
                          (np.full((H, W), 9, np.uint8), "all hole")]:
        with pytest.raises(I2IError, match=message):
            hole_mask(mask, (H, W))


def test_translate_and_serve_read_a_resized_rgba_mask_alike(tmp_path: Path) -> None:
    from i2i_export.server import mask_from_upload

    rgba = np.zeros((2 * H, 2 * W, 4), np.uint8)
    rgba[6:18, 8:40, 3] = 255
    path = tmp_path / "m.png"
    Image.fromarray(rgba).save(path)
    with pytest.warns(MaskWarning, match="resized"):
        served = mask_from_upload(path.read_bytes(), (H, W), 10**6)
    with pytest.warns(MaskWarning, match="resized"):
        assert np.array_equal(served, read_mask(str(path), (H, W)))


# --------------------------------------------------------------------------- mask folders (eval inpaint)


def test_a_folder_of_transparent_masks_is_read_by_the_same_rule(tmp_path: Path) -> None:
    from i2i_inpaint.masks import Files, mask_rng

    for i in range(4):
        rgba = np.zeros((H, W, 4), np.uint8)
        rgba[..., :3] = 255
        rgba[2 + i : 8 + i, 3:15, 3] = 255
        Image.fromarray(rgba).save(tmp_path / f"{i}.png")
    gen = Files(tmp_path, augment=False)
    assert not gen.invert
    mask = gen(mask_rng(0, 0), (H, W))
    assert 0 < mask.mean() < 0.2  # the strokes, not everything


def test_an_inverted_folder_is_detected_and_said(tmp_path: Path) -> None:
    from i2i_inpaint.masks import Files, mask_rng

    for i in range(4):
        keep = np.full((H, W), 255, np.uint8)
        keep[2 + i : 8 + i, 3:15] = 0  # white = keep, black strokes = hole
        Image.fromarray(keep).save(tmp_path / f"{i}.png")
    with pytest.warns(MaskWarning, match="taken as inverted"):
        gen = Files(tmp_path, augment=False)
    assert gen.invert and 0 < gen(mask_rng(0, 0), (H, W)).mean() < 0.2
    assert not Files(tmp_path, augment=False, invert=False).invert


@pytest.mark.skipif(not NVIDIA.is_dir(), reason="needs ../shared/datasets/inpaint/masks")
def test_the_nvidia_masks_are_not_taken_as_inverted() -> None:
    from i2i_inpaint.masks import Files

    with warnings.catch_warnings():
        warnings.simplefilter("error", MaskWarning)
        assert not Files(NVIDIA).invert
