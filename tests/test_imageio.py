"""i2i.imageio: every odd image a user may hand us comes out as uint8 HxWxC, or as a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from i2i.errors import I2IError
from i2i.imageio import BadImageError, _normalise_mode, list_images, read_image, to_channels, write_image

FACADE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades" / "train" / "1.jpg"


def _rgb(h: int = 8, w: int = 12) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_png_roundtrip_and_channels(tmp_path: Path) -> None:
    arr = _rgb()
    path = write_image(tmp_path / "deep" / "x.png", arr)  # parent folders are created
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (8, 12, 3)
    np.testing.assert_array_equal(out, arr)
    gray = read_image(path, channels=1)
    assert gray.shape == (8, 12, 1)
    # our luma matches Pillow's own RGB -> L conversion exactly
    np.testing.assert_array_equal(gray[..., 0], np.asarray(Image.fromarray(arr).convert("L")))
    np.testing.assert_array_equal(to_channels(arr, 1), gray)


def test_grayscale_to_three_channels(tmp_path: Path) -> None:
    g = np.arange(64, dtype=np.uint8).reshape(8, 8)
    write_image(tmp_path / "g.png", g)
    out = read_image(tmp_path / "g.png")
    assert out.shape == (8, 8, 3)
    assert (out[..., 0] == g).all() and (out[..., 1] == g).all() and (out[..., 2] == g).all()
    assert read_image(tmp_path / "g.png", channels=1).shape == (8, 8, 1)


def test_sixteen_bit_png_is_scaled(tmp_path: Path) -> None:
    a16 = np.array([[0, 257, 65535, 32896]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I")
    out = read_image(tmp_path / "d.png", channels=1)[..., 0]
    assert out.tolist() == [[0, 1, 255, 128]]
    assert read_image(tmp_path / "d.png").shape == (1, 4, 3)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red everywhere, but transparent in the bottom half
    rgba[:2, :, 3] = 255
    rgba[2:, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0]
    assert out[3, 3].tolist() == [255, 255, 255]
    assert read_image(tmp_path / "a.png", channels=1)[3, 3, 0] == 255


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 4))
    img.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    px = img.load()
    for x in range(4):
        px[x, 0] = 1  # top row red, the rest blue
    img.save(tmp_path / "p.png")
    out = read_image(tmp_path / "p.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[3, 3].tolist() == [0, 0, 255]
    img.save(tmp_path / "pt.png", transparency=0)  # blue is the transparent colour
    out = read_image(tmp_path / "pt.png")
    assert out[0, 0].tolist() == [255, 0, 0] and out[3, 3].tolist() == [255, 255, 255]
    # PA (palette + alpha) has no file format of its own; check the conversion directly
    pa = Image.new("PA", (2, 2))
    pa.putpalette([255, 0, 0] * 256)
    pa.putpixel((0, 0), (0, 0))  # fully transparent
    pa.putpixel((1, 1), (0, 255))  # opaque red
    flat = np.asarray(_normalise_mode(pa))
    assert flat[0, 0].tolist() == [255, 255, 255] and flat[1, 1].tolist() == [255, 0, 0]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("RGB", (8, 8), (0, 128, 255)).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (8, 8, 3)
    assert np.abs(out[4, 4].astype(int) - [0, 128, 255]).max() <= 4


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :8] = (255, 0, 0)  # stored: left half red, right half blue
    arr[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the stored left edge becomes the top
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "r.jpg")
    assert out.shape == (16, 8, 3)
    assert out[2, 4, 0] > 200 and out[2, 4, 2] < 50  # top: red
    assert out[13, 4, 2] > 200 and out[13, 4, 0] < 50  # bottom: blue


def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    data = FACADE.read_bytes()
    bad = tmp_path / "x.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as info:
        read_image(bad)
    msg = str(info.value)
    assert str(bad) in msg and "truncated" in msg and "skip_bad_images=true" in msg
    assert isinstance(info.value, I2IError) and info.value.path == bad


def test_text_file_named_png(tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image\n")
    with pytest.raises(I2IError, match=r"cannot read image .*notes\.png: not an image"):
        read_image(bad)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="no such file"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(I2IError, match="empty.jpg"):
        read_image(tmp_path / "empty.jpg")


def test_write_jpeg_and_errors(tmp_path: Path) -> None:
    arr = np.full((8, 8, 3), 90, np.uint8)
    write_image(tmp_path / "o.JPG", arr)
    with Image.open(tmp_path / "o.JPG") as im:
        assert im.format == "JPEG"
    write_image(tmp_path / "o4.jpg", np.full((8, 8, 4), 90, np.uint8))  # alpha dropped for JPEG
    assert read_image(tmp_path / "o4.jpg").shape == (8, 8, 3)
    write_image(tmp_path / "o1.png", np.full((8, 8, 1), 7, np.uint8))
    with Image.open(tmp_path / "o1.png") as im:
        assert im.mode == "L"
    with pytest.raises(I2IError, match="unknown image suffix"):
        write_image(tmp_path / "o.xyz", arr)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "o.png", arr.astype(np.float32))


def test_list_images(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "sub/c.jpeg", "._a.jpg", "notes.txt"]:
        p = tmp_path / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.JPG", "b.png", "c.jpeg"]
    assert [p.name for p in list_images(str(tmp_path / "*.png"))] == ["b.png"]
    assert [p.name for p in list_images(str(tmp_path / "**" / "*.jp*g"))] == ["c.jpeg"]
    assert list_images(tmp_path / "b.png") == [tmp_path / "b.png"]
    with pytest.raises(I2IError, match="no such file or folder"):
        list_images(tmp_path / "missing")


def test_imageio_does_not_import_torch() -> None:
    code = "import sys, i2i.imageio; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
