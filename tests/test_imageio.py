"""i2i.imageio: every odd image a user may hand us comes out as uint8 HxWxC, or as a clear error."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, features

from i2i import imageio
from i2i.errors import I2IError
from i2i.imageio import (
    PNG_COMPRESS_LEVEL,
    BadImageError,
    ImageTooLargeError,
    decode_image,
    encode_image,
    list_images,
    read_image,
    split_alpha,
    to_channels,
    write_image,
)

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
    # PA (palette + alpha): TIFF keeps it
    pa = Image.new("PA", (2, 2))
    pa.putpalette([255, 0, 0] * 256)
    pa.putpixel((0, 0), (0, 0))  # fully transparent
    pa.putpixel((1, 1), (0, 255))  # opaque red
    pa.save(tmp_path / "pa.tif")
    with Image.open(tmp_path / "pa.tif") as im:
        assert im.mode == "PA"
    flat = read_image(tmp_path / "pa.tif")
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


@pytest.mark.skipif(not FACADE.is_file(), reason="../shared/datasets/facades not present")
def test_truncated_jpeg_names_the_file(tmp_path: Path) -> None:
    data = FACADE.read_bytes()
    bad = tmp_path / "x.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as info:
        read_image(bad)
    msg = str(info.value)
    assert str(bad) in msg and "truncated" in msg and "remove or replace it" in msg
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


# --- decode_image: one decoder for files and bytes ---------------------------------------------


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes | None = None) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour, nor a huge image without holding
    it): ``rows`` are the raw scanlines without filter bytes; None = all zero (compressed in
    chunks, so a 20000x20000 image costs little memory)."""
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    stride = (width * samples * bit_depth + 7) // 8

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    if rows is None:
        zero_rows = b"\x00" * ((1 + stride) * 256)
        idat = b"".join(z.compress(zero_rows[: (1 + stride) * min(256, height - y)]) for y in range(0, height, 256))
    else:
        assert len(rows) == stride * height
        idat = z.compress(b"".join(b"\x00" + rows[y * stride:(y + 1) * stride] for y in range(height)))
    idat += z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _build_corpus(folder: Path) -> dict[str, Path]:
    """One file for each kind of image a user may hand us."""
    rng = np.random.default_rng(1)
    files: dict[str, Path] = {}

    def save(name: str, img: Image.Image, **kwargs: object) -> None:
        img.save(folder / name, **kwargs)
        files[name] = folder / name

    def write(name: str, data: bytes) -> None:
        (folder / name).write_bytes(data)
        files[name] = folder / name

    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    rgba[0, :, 3], rgba[1, :, 3] = 0, 255  # fully transparent and opaque rows, the rest partial
    la = rng.integers(0, 256, (9, 13, 2), dtype=np.uint8)
    la[0, :, 1] = 0
    save("rgb.png", Image.fromarray(rgb))
    save("grey.png", Image.fromarray(rgb[..., 0]))
    save("rgba.png", Image.fromarray(rgba))
    save("la.png", Image.fromarray(la))
    save("rgba.webp", Image.fromarray(rgba), lossless=True)
    save("rgb.bmp", Image.fromarray(rgb))
    save("rgb.ppm", Image.fromarray(rgb))
    palette = Image.fromarray(rng.integers(0, 6, (9, 13), dtype=np.uint8), mode="L").convert("P")
    palette.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    save("p.png", palette)
    save("p_transparent.png", palette, transparency=2)
    save("p_alpha_palette.png", palette, transparency=bytes([0, 60, 128, 200, 255, 10]))
    save("p_transparent.gif", palette, transparency=3)
    grey_palette = Image.fromarray(rgb[..., 1]).convert("P")  # a palette of greys
    save("p_grey.png", grey_palette)
    pa = Image.new("PA", (13, 9))
    pa.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tolist())
    pa.putdata([(int(i), int(a)) for i, a in zip(rng.integers(0, 256, 117), rng.integers(0, 256, 117))])
    save("pa.tif", pa)
    save("grey_trns.png", Image.fromarray(rgb[..., 0]), transparency=int(rgb[0, 0, 0]))  # ignored
    save("rgb_trns.png", Image.fromarray(rgb), transparency=tuple(int(v) for v in rgb[0, 0]))  # ignored
    gradient = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    save("grey16.png", Image.fromarray(gradient))
    rgb16 = rng.integers(0, 65536, (5, 7, 3), dtype=np.uint16)
    write("rgb16.png", _png(7, 5, 16, 2, rgb16.astype(">u2").tobytes()))
    la16 = rng.integers(0, 65536, (5, 7, 2), dtype=np.uint16)
    la16[0, :, 1] = 0
    write("la16.png", _png(7, 5, 16, 4, la16.astype(">u2").tobytes()))
    rgba16 = rng.integers(0, 65536, (5, 7, 4), dtype=np.uint16)
    write("rgba16.png", _png(7, 5, 16, 6, rgba16.astype(">u2").tobytes()))
    save("int32.tif", Image.fromarray(rng.integers(-1000, 70000, (5, 7), dtype=np.int32)))
    save("float01.tif", Image.fromarray(rng.random((5, 7), dtype=np.float32)))
    save("float255.tif", Image.fromarray((rng.random((5, 7)) * 300 - 20).astype(np.float32)))
    cmyk = Image.fromarray(rgb).convert("CMYK")
    save("cmyk.jpg", cmyk, quality=95)
    save("cmyk.tif", cmyk)
    save("ycbcr.tif", Image.fromarray(rgb).convert("YCbCr"))
    save("lab.tif", Image.fromarray(rgb).convert("LAB"))
    save("bilevel.png", Image.fromarray(rng.integers(0, 2, (9, 13), dtype=np.uint8) * 255).convert("1"))
    for orientation in range(1, 9):  # 1 = as stored; 2..8 every flip and rotation
        save(f"exif{orientation}.jpg", Image.fromarray(rgb), exif=_exif(orientation), quality=95)
    save("exif6_rgba.png", Image.fromarray(rgba), exif=_exif(6))
    save("exif8_grey.jpg", Image.fromarray(rgb[..., 2]), exif=_exif(8), quality=95)
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _build_corpus(tmp_path_factory.mktemp("corpus"))


CORPUS_NAMES = sorted([  # the names _build_corpus writes
    "rgb.png", "grey.png", "rgba.png", "la.png", "rgba.webp", "rgb.bmp", "rgb.ppm", "p.png",
    "p_transparent.png", "p_alpha_palette.png", "p_transparent.gif", "p_grey.png", "pa.tif",
    "grey_trns.png", "rgb_trns.png", "grey16.png", "rgb16.png", "la16.png", "rgba16.png",
    "int32.tif", "float01.tif", "float255.tif", "cmyk.jpg", "cmyk.tif", "ycbcr.tif", "lab.tif",
    "bilevel.png", *[f"exif{o}.jpg" for o in range(1, 9)], "exif6_rgba.png", "exif8_grey.jpg",
])


def test_corpus_names_are_the_built_files(corpus: dict[str, Path]) -> None:
    assert sorted(corpus) == CORPUS_NAMES


#: what decode_image keeps of each file: its channel count
EXPECTED_CHANNELS = {
    "rgb.png": 3, "grey.png": 1, "rgba.png": 4, "la.png": 2, "rgba.webp": 4, "rgb.bmp": 3, "rgb.ppm": 3,
    "p.png": 3, "p_transparent.png": 4, "p_alpha_palette.png": 4, "p_transparent.gif": 4, "p_grey.png": 3,
    "pa.tif": 4, "grey_trns.png": 1, "rgb_trns.png": 3, "grey16.png": 1, "rgb16.png": 3, "la16.png": 2,
    "rgba16.png": 4, "int32.tif": 1, "float01.tif": 1, "float255.tif": 1, "cmyk.jpg": 3, "cmyk.tif": 3,
    "ycbcr.tif": 3, "lab.tif": 3, "bilevel.png": 1, **{f"exif{o}.jpg": 3 for o in range(1, 9)},
    "exif6_rgba.png": 4, "exif8_grey.jpg": 1,
}


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_file_and_bytes_decode_the_same(corpus: dict[str, Path], name: str) -> None:
    if name.endswith(".webp") and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    path = corpus[name]
    from_file = decode_image(path)
    from_bytes = decode_image(path.read_bytes())
    assert from_file.dtype == np.uint8 and from_file.ndim == 3
    assert from_file.shape[2] == EXPECTED_CHANNELS[name]
    assert from_file.flags.c_contiguous and from_file.flags.writeable
    assert from_bytes.flags.c_contiguous and from_bytes.flags.writeable
    np.testing.assert_array_equal(from_file, from_bytes)
    np.testing.assert_array_equal(decode_image(str(path)), from_file)
    np.testing.assert_array_equal(decode_image(bytearray(path.read_bytes())), from_file)


def test_alpha_is_kept_as_stored(corpus: dict[str, Path]) -> None:
    with Image.open(corpus["rgba.png"]) as im:
        np.testing.assert_array_equal(decode_image(corpus["rgba.png"]), np.asarray(im))
    with Image.open(corpus["la.png"]) as im:
        np.testing.assert_array_equal(decode_image(corpus["la.png"]), np.asarray(im))
    with Image.open(corpus["p_transparent.png"]) as im:
        expected = np.asarray(im.convert("RGBA"))
    got = decode_image(corpus["p_transparent.png"])
    np.testing.assert_array_equal(got, expected)
    assert {0, 255} == set(np.unique(got[..., 3]).tolist())  # index 2 transparent, the rest opaque


def test_sixteen_bit_grey_gradient(corpus: dict[str, Path]) -> None:
    got = decode_image(corpus["grey16.png"])[..., 0].astype(np.int64).ravel()
    v = np.arange(65536)
    assert got[65535] == 255 and got[0] == 0
    np.testing.assert_array_equal(got[257 * np.arange(256)], np.arange(256))  # 257 k -> k exactly
    np.testing.assert_array_equal(got, np.rint(v / 257))


def test_sixteen_bit_grey_alpha_is_grey_alpha(corpus: dict[str, Path]) -> None:
    data = corpus["la16.png"].read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "RGBA"  # what Pillow makes of it: the grey three times
        rgba = np.asarray(im)
    got = decode_image(data)
    assert got.shape == (5, 7, 2)
    np.testing.assert_array_equal(got, rgba[..., (0, 3)])
    assert (got[0, :, 1] == 0).all()


def test_cmyk_bilevel_and_exif(corpus: dict[str, Path]) -> None:
    with Image.open(corpus["cmyk.jpg"]) as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(decode_image(corpus["cmyk.jpg"]), np.asarray(im.convert("RGB")))
    bilevel = decode_image(corpus["bilevel.png"])
    assert bilevel.shape == (9, 13, 1) and set(np.unique(bilevel).tolist()) == {0, 255}
    stored = decode_image(corpus["exif1.jpg"])
    assert stored.shape == (9, 13, 3)
    rotated = decode_image(corpus["exif6.jpg"])  # 6: rotate 90 degrees clockwise to display
    assert rotated.shape == (13, 9, 3)
    np.testing.assert_array_equal(rotated, np.rot90(stored, k=-1))  # same JPEG data, so same pixels
    rgba = decode_image(corpus["exif6_rgba.png"])
    np.testing.assert_array_equal(rgba, np.rot90(decode_image(corpus["rgba.png"]), k=-1))


def test_premultiplied_modes_are_unpremultiplied() -> None:
    rgba = np.random.default_rng(3).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba_premult = Image.fromarray(rgba).convert("RGBa")
    got = np.asarray(imageio._stored_mode(rgba_premult))
    np.testing.assert_array_equal(got, np.asarray(rgba_premult.convert("RGBA")))
    la_premult = Image.fromarray(rgba[..., (0, 3)]).convert("La")
    got = imageio._stored_mode(la_premult)
    assert got.mode == "LA"
    np.testing.assert_array_equal(np.asarray(got), np.asarray(la_premult.convert("LA")))


# --- max_pixels: refused from the header ---------------------------------------------------------


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, decoding any pixel fails the test: the header must be enough."""

    def load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_max_pixels_is_checked_before_decoding(tmp_path: Path, no_pixel_decoding: None) -> None:
    data = _png(8000, 6000, 1, 0)  # 48 Mpx, under Pillow's own limit; ~6 kB on disk
    assert len(data) < 100_000
    (tmp_path / "big.png").write_bytes(data)
    for source, label in ((data, "the uploaded image"), (tmp_path / "big.png", str(tmp_path / "big.png"))):
        start = time.perf_counter()
        with pytest.raises(ImageTooLargeError) as info:
            decode_image(source, max_pixels=1_000_000)
        assert time.perf_counter() - start < 1.0
        exc = info.value
        assert (exc.width, exc.height, exc.max_pixels, exc.pixels) == (8000, 6000, 1_000_000, 48_000_000)
        assert str(exc).startswith(f"{label} is 8000x6000 = 48000000 pixels, more than the limit of 1000000")
        assert isinstance(exc, BadImageError) and isinstance(exc, I2IError)
        assert exc.label == label
    with pytest.raises(ImageTooLargeError, match="the upload is 8000x6000"):
        read_image(data, max_pixels=47_999_999, name="the upload")


def test_max_pixels_at_the_limit_decodes(tmp_path: Path) -> None:
    data = _png(40, 25, 8, 0)
    assert decode_image(data, max_pixels=1000).shape == (25, 40, 1)
    with pytest.raises(ImageTooLargeError):
        decode_image(data, max_pixels=999)
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(data, max_pixels=0)


def test_pillow_bomb_limit_is_an_image_too_large_error(tmp_path: Path, no_pixel_decoding: None) -> None:
    data = _png(20000, 20000, 1, 0)  # 400 Mpx: past Pillow's decompression-bomb limit
    pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError) as info:
        decode_image(data)
    assert time.perf_counter() - start < 2.0
    exc = info.value
    assert (exc.width, exc.height, exc.pixels, exc.max_pixels) == (20000, 20000, 400_000_000, pillow_limit)
    assert str(exc).startswith(f"the uploaded image is 20000x20000 = 400000000 pixels, more than the limit of {pillow_limit}")
    assert "decompression-bomb" in str(exc)
    with pytest.raises(ImageTooLargeError) as info:  # the caller's limit is the one reported
        decode_image(data, max_pixels=1_000_000)
    assert info.value.max_pixels == 1_000_000 and "decompression" not in str(info.value)
    (tmp_path / "bomb.png").write_bytes(data)
    with pytest.raises(ImageTooLargeError) as info:  # the training data path: names the file, hints
        read_image(tmp_path / "bomb.png")
    assert info.value.path == tmp_path / "bomb.png" and "remove or replace it" in str(info.value)


# --- bad bytes -----------------------------------------------------------------------------------


def test_bad_bytes_name_the_label() -> None:
    with pytest.raises(BadImageError) as info:
        decode_image(b"")
    assert info.value.reason == "empty" and info.value.path is None
    assert str(info.value) == "cannot read the uploaded image: empty"
    with pytest.raises(BadImageError, match=r"^cannot read cat\.png: not an image") as info:
        decode_image(b"this is not an image\n", name="cat.png")
    assert info.value.label == "cat.png" and info.value.path is None
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        Image.fromarray(_rgb(64, 64)).save(buf, format=fmt)
        data = buf.getvalue()
        with pytest.raises(BadImageError) as info:
            read_image(data[: len(data) // 2])
        assert info.value.reason == "truncated file", fmt
        assert str(info.value) == "cannot read the uploaded image: truncated file"


def test_empty_file_says_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        decode_image(tmp_path / "empty.png")
    assert info.value.reason == "empty" and info.value.path == tmp_path / "empty.png"
    assert info.value.label == str(tmp_path / "empty.png")


def test_bad_image_error_labels_and_pickling(tmp_path: Path) -> None:
    exc = BadImageError(str(tmp_path / "a.png"), "truncated file")  # a str is a path, as before
    assert exc.path == tmp_path / "a.png" and exc.label == str(tmp_path / "a.png")
    upload = BadImageError(None, "empty", label="the mask")
    assert upload.path is None and str(upload) == "cannot read the mask: empty"
    big = ImageTooLargeError(None, 30, 20, 100, label="the image")
    for original in (exc, upload, big):  # across processes (a DataLoader worker, a server pool)
        copy = pickle.loads(pickle.dumps(original))
        assert type(copy) is type(original) and str(copy) == str(original)
        assert copy.__dict__ == original.__dict__


# --- read_image on top of decode_image -----------------------------------------------------------


def test_read_image_takes_bytes(corpus: dict[str, Path]) -> None:
    for name in ("rgba.png", "la.png", "p_transparent.png", "cmyk.jpg", "exif6.jpg"):
        for channels in (1, 3):
            from_file = read_image(corpus[name], channels)
            assert from_file.shape[2] == channels and from_file.flags.c_contiguous
            np.testing.assert_array_equal(read_image(corpus[name].read_bytes(), channels), from_file)


def test_read_image_composites_what_decode_image_keeps(corpus: dict[str, Path]) -> None:
    rgba = decode_image(corpus["rgba.png"]).astype(np.float64)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(read_image(corpus["rgba.png"]) - expected).max() <= 1


# --- split_alpha ---------------------------------------------------------------------------------


def test_split_alpha_shapes() -> None:
    rng = np.random.default_rng(2)
    for c, colour_c in ((1, 1), (2, 1), (3, 3), (4, 3)):
        image = rng.integers(0, 256, (5, 6, c), dtype=np.uint8)
        colour, alpha = split_alpha(image)
        assert colour.shape == (5, 6, colour_c) and colour.flags.c_contiguous
        np.testing.assert_array_equal(colour, image[..., :colour_c])
        if c in (2, 4):
            assert alpha is not None and alpha.shape == (5, 6) and alpha.flags.c_contiguous
            np.testing.assert_array_equal(alpha, image[..., -1])
        else:
            assert alpha is None
    colour, alpha = split_alpha(np.zeros((5, 6), np.uint8))
    assert colour.shape == (5, 6, 1) and alpha is None
    for bad in (np.zeros((5, 6, 5), np.uint8), np.zeros(5, np.uint8)):
        with pytest.raises(ValueError, match="split_alpha"):
            split_alpha(bad)


# --- encode_image and write_image ----------------------------------------------------------------


@pytest.mark.parametrize("shape", [(7, 9), (7, 9, 1), (7, 9, 2), (7, 9, 3), (7, 9, 4)])
def test_encode_png_round_trips(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    data = encode_image(array)
    assert data.startswith(b"\x89PNG")
    back = decode_image(data)
    expected = array[:, :, None] if array.ndim == 2 else array
    assert back.shape == expected.shape
    np.testing.assert_array_equal(back, expected)
    assert encode_image(array, "PNG") == data  # deterministic, any case


def test_png_uses_the_one_compress_level() -> None:
    array = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    data = encode_image(array, "png")
    idat = data.index(b"IDAT") + 4
    # the zlib header's FLEVEL bits: 0 = fastest (level 1), the server's and the CLI's one setting
    assert PNG_COMPRESS_LEVEL == 1 and data[idat] == 0x78 and data[idat + 1] >> 6 == 0


def test_encode_jpeg_drops_alpha_and_webp() -> None:
    rgba = np.full((8, 8, 4), 90, np.uint8)
    rgba[..., 3] = 0
    data = encode_image(rgba, "jpg", quality=90)
    assert data.startswith(b"\xff\xd8")
    back = decode_image(data)
    assert back.shape == (8, 8, 3) and np.abs(back.astype(int) - 90).max() <= 2  # not composited
    assert decode_image(encode_image(rgba[..., (0, 3)], "jpeg")).shape == (8, 8, 1)
    noise = np.random.default_rng(6).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert len(encode_image(noise, "jpeg", quality=10)) < len(encode_image(noise, "jpeg", quality=95))
    if features.check("webp"):
        webp = encode_image(rgba, ".webp")
        assert webp[8:12] == b"WEBP" and decode_image(webp).shape == (8, 8, 4)


def test_encode_errors() -> None:
    arr = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(I2IError, match="png, jpeg, jpg, webp"):
        encode_image(arr, "gif")
    with pytest.raises(ValueError, match="uint8"):
        encode_image(arr.astype(np.float32))
    with pytest.raises(ValueError, match="C in 1, 2, 3, 4"):
        encode_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="quality"):
        encode_image(arr, "jpeg", quality=101)


def test_write_image_is_encode_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for c in (1, 2, 3, 4):
        array = rng.integers(0, 256, (6, 5, c), dtype=np.uint8)
        path = write_image(tmp_path / f"c{c}.png", array)
        assert path.read_bytes() == encode_image(array, "png")
        np.testing.assert_array_equal(decode_image(path), array)
    jpeg = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    assert write_image(tmp_path / "x.jpeg", jpeg, quality=80).read_bytes() == encode_image(jpeg, "jpeg", 80)
    write_image(tmp_path / "x.bmp", jpeg)  # the other suffixes still work
    np.testing.assert_array_equal(decode_image(tmp_path / "x.bmp"), jpeg)


def test_write_image_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"old contents")
    first = np.full((4, 4, 3), 10, np.uint8)
    write_image(target, first)  # a pre-existing file is replaced whole
    np.testing.assert_array_equal(decode_image(target), first)
    assert os.listdir(tmp_path) == ["out.png"]  # no temporary file left behind
    if os.name == "posix":
        umask = os.umask(0)
        os.umask(umask)
        assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plainly opened file would be

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(I2IError, match="cannot write image .*out.png: .*No space left"):
        write_image(target, np.full((4, 4, 3), 200, np.uint8))
    np.testing.assert_array_equal(decode_image(target), first)  # the old file is untouched
    assert os.listdir(tmp_path) == ["out.png"]


def test_write_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(I2IError, match=r"cannot write image .*x.png: File exists \(.*file\): check the path"):
        write_image(tmp_path / "file" / "x.png", np.zeros((2, 2), np.uint8))  # parent is a file: said in words
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(I2IError, match="cannot write image"):
        write_image(tmp_path / "dir.png", np.zeros((2, 2), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["dir.png", "file"]


# --- read_image is byte-identical to the implementation before decode_image ----------------------
# The reference below is read_image as it was (commit b0ba171), frozen: it normalised straight to
# L or RGB. The new read_image goes through decode_image (alpha kept) and composites afterwards.


def _legacy_to_8bit(img: Image.Image) -> Image.Image:
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        finite_max = float(np.nanmax(arr)) if arr.size else 0.0
        scale = 255.0 if finite_max <= 1.0 else 1.0
        arr = np.nan_to_num(arr * scale)
    else:
        arr = arr.astype(np.float64) / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _legacy_flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    return flat.convert("L") if img.mode == "LA" else flat


def _legacy_normalise_mode(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        return _legacy_flatten_alpha(img) if has_alpha else img
    if mode in ("RGBA", "LA", "RGBa", "La"):
        return _legacy_flatten_alpha(img)
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return _legacy_to_8bit(img)
    return img.convert("RGB")


def _legacy_read_image(path: Path, channels: int) -> np.ndarray:
    with Image.open(path) as img:
        img.load()
        img = ImageOps.exif_transpose(img) or img
        img = _legacy_normalise_mode(img)
        img = img.convert("L" if channels == 1 else "RGB")
        array = np.array(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_read_image_is_byte_identical_to_before(corpus: dict[str, Path], name: str, channels: int) -> None:
    if name.endswith(".webp") and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    expected = _legacy_read_image(corpus[name], channels)
    got = read_image(corpus[name], channels)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(read_image(corpus[name].read_bytes(), channels), expected)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 257)])
def test_png_writer_round_trips_through_pillow(channels: int, shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    # strips of a few rows: the zlib stream and the Sub filter must carry across strip borders
    import i2i.imageio as imageio

    monkeypatch.setattr(imageio, "_PNG_STRIP_BYTES", 100)
    rng = np.random.default_rng(channels)
    array = rng.integers(0, 256, (*shape, channels), dtype=np.uint8)
    array[:, : shape[1] // 2] = 200  # flat regions too
    data = encode_image(array if channels > 1 else array[:, :, 0])
    with Image.open(io.BytesIO(data)) as im:
        im.verify()  # chunk CRCs and structure
    assert np.array_equal(decode_image(data), array)
    path = write_image(tmp_path / "x.png", array)
    assert path.read_bytes() == data  # a file and the bytes of the server are one encoding
    assert encode_image(Image.fromarray(array if channels > 1 else array[:, :, 0])) == data  # PIL in: same bytes


def test_an_animated_image_gives_its_first_frame_and_says_so(tmp_path: Path) -> None:
    from i2i.imageio import ImageFramesWarning, decode_image

    frames = [Image.new("RGB", (8, 6), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(ImageFramesWarning, match=r"clip.gif has 3 frames; only the first is used"):
        first = decode_image(gif)
    assert first.shape == (6, 8, 3) and tuple(first[0, 0]) == (255, 0, 0)
    still = tmp_path / "still.gif"
    frames[1].save(still)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageFramesWarning)
        assert tuple(decode_image(still)[0, 0]) == (0, 0, 255)
