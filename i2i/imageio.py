"""Decoding and encoding images as uint8 numpy arrays (torch-free: numpy + Pillow only).

The serving runtime imports this module, so it must never import torch.

This module is the one decoder and the one encoder of the project: a picture gives the same pixels
whether it arrives as a file (CLI, training) or as bytes (an HTTP upload), and the CLI and the
server write the same bytes for the same result.

- :func:`decode_image` (file or bytes) -> uint8 ``HxWxC``, C = 1, 2, 3 or 4 (L, LA, RGB, RGBA): the
  image as stored, alpha kept. :func:`read_image` builds on it and gives the 1 or 3 channels a
  model takes, transparency composited on white.
- :func:`encode_image` (array -> PNG/JPEG/WebP bytes) and :func:`write_image` (the same bytes to a
  file, written atomically).

Conversions done by :func:`decode_image`:

- EXIF orientation is applied, so a phone photo comes out the way it is displayed.
- 16-bit and 32-bit integer grey images (modes ``I;16*`` and ``I``) are scaled 0..65535 -> 0..255
  (``v / 257`` rounded, so 65535 -> 255 and 257 k -> k); float images (mode ``F``) are taken as 0..1
  when their maximum is at most 1, else as 0..255. Pillow itself reduces 16-bit colour PNGs to
  8 bits (it keeps the high byte) before this module sees them.
- Palette images become RGBA when they have transparency (a transparent colour, or ``PA``), else
  RGB; 1-bit images become L; CMYK, YCbCr, LAB, HSV and RGBX become RGB; premultiplied ``La`` and
  ``RGBa`` become LA and RGBA.
- The single transparent grey or RGB value that a PNG may declare (``tRNS`` outside a palette) is
  ignored, as :func:`read_image` always did; palette transparency is honoured.

Conversions done by :func:`read_image` on top: transparency is composited on **white** (a
transparent logo or line drawing then looks as it does in a browser, whereas dropping the alpha
channel would show whatever colour the transparent pixels happen to hold, often black); colour ->
1 channel uses Pillow's ITU-R 601 luma (L = 0.299 R + 0.587 G + 0.114 B); grey -> 3 channels
repeats the grey.
"""

from __future__ import annotations

import glob
import io
import os
import re
import secrets
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import I2IError, os_error_line


class ImageFramesWarning(UserWarning):
    """An image file holds several frames (animated GIF/PNG/WebP, multi-page TIFF); the first is used."""


#: Suffixes (lower case) that :func:`list_images` picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

#: The hint at the end of every "cannot read image" error about a file.
BAD_IMAGE_HINT = "remove or replace it"

#: What errors call an image given as bytes when the caller gives no ``name``.
BYTES_LABEL = "the uploaded image"

#: zlib level of every PNG written (:func:`encode_image`, :func:`write_image`): 1 is fast, and the
#: HTTP server and the CLI write byte-identical PNGs because both use this one setting.
PNG_COMPRESS_LEVEL = 1

#: The formats :func:`encode_image` writes (lower case); ``jpg`` is ``jpeg``.
ENCODE_FORMATS: tuple[str, ...] = ("png", "jpeg", "jpg", "webp")

_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM"}

_MODE_OF_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def _restore_error(cls: type, args: tuple, state: dict) -> BaseException:
    """Unpickle a :class:`BadImageError` (its ``__init__`` takes other arguments than ``args``)."""
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class BadImageError(I2IError):
    """An image that cannot be read.

    ``BadImageError(path, reason)`` is about a file: ``path`` (a :class:`~pathlib.Path`) is the file
    and the message ends with :data:`BAD_IMAGE_HINT`. ``BadImageError(None, reason, label=...)`` is
    about an image given as bytes (an upload): ``path`` is None and the message names ``label`` as
    is. ``label`` is what the message calls the image (for a file, the path unless given);
    ``reason`` says why it cannot be read ("empty", "truncated file", "not an image, ...").
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str, *, label: str | None = None) -> None:
        self.path: Path | None = None if path is None else Path(path)
        self.label: str = label if label is not None else (BYTES_LABEL if self.path is None else str(self.path))
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        if self.path is None:
            return f"cannot read {self.label}: {self.reason}"
        return f"cannot read image {self.label}: {self.reason}; {BAD_IMAGE_HINT}"

    def __reduce__(self) -> tuple:
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


class ImageTooLargeError(BadImageError):
    """An image with more pixels than allowed: ``width`` x ``height`` = ``pixels`` > ``max_pixels``.

    Raised by :func:`decode_image` from the header, before any pixel is decoded, when the image is
    past the caller's ``max_pixels`` or past Pillow's decompression-bomb limit
    (``2 * PIL.Image.MAX_IMAGE_PIXELS``). The message is
    ``"<label> is WxH = N pixels, more than the limit of M"`` (plus :data:`BAD_IMAGE_HINT` for a
    file), so callers can add their own advice. ``width`` and ``height`` are None only when Pillow
    refused the image and its header could not be read a second time (``pixels`` is then Pillow's
    count).
    """

    def __init__(self, path: str | os.PathLike[str] | None, width: int | None, height: int | None,
                 max_pixels: int, *, label: str | None = None, pixels: int | None = None,
                 note: str = "") -> None:
        self.width = width
        self.height = height
        self.max_pixels = max_pixels
        if pixels is None:
            if width is None or height is None:
                raise ValueError("ImageTooLargeError needs width and height, or pixels")
            pixels = width * height
        self.pixels = pixels
        size = f"{width}x{height} = " if width is not None and height is not None else ""
        reason = f"{size}{pixels} pixels, more than the limit of {max_pixels}{note}"
        super().__init__(path, reason, label=label)

    def _message(self) -> str:
        text = f"{self.label} is {self.reason}"
        return text if self.path is None else f"{text}; {BAD_IMAGE_HINT}"


def _reason(exc: BaseException) -> str:
    """A short, user-facing reason for a Pillow failure."""
    text = str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "truncated file"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _to_8bit(img: Image.Image) -> Image.Image:
    """Integer/float single-band modes (16-bit PNG, 32-bit TIFF) -> 8-bit L."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        finite_max = float(np.nanmax(arr)) if arr.size else 0.0
        scale = 255.0 if finite_max <= 1.0 else 1.0
        arr = np.nan_to_num(arr * scale)
    else:  # I;16, I;16B, I;16L, I (Pillow opens 16-bit PNGs as I or I;16 depending on version)
        arr = arr.astype(np.float64) / 257.0  # 65535 -> 255 exactly
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _stored_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> L, LA, RGB or RGBA, alpha kept (see the module docstring)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode in ("P", "PA"):
        return img.convert("RGBA" if mode == "PA" or "transparency" in img.info else "RGB")
    if mode == "La":
        return img.convert("LA")  # un-premultiplied
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(img)
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...


def _grey_alpha_source(img: Image.Image) -> bool:
    """True for a 16-bit grey + alpha PNG, which Pillow opens as RGBA (grey repeated)."""
    try:
        args = img.tile[0][3] if img.tile else None
    except (IndexError, TypeError):
        return False
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return img.mode == "RGBA" and isinstance(rawmode, str) and rawmode.startswith("LA;16")


def _pillow_limit_size(source: Path | bytes) -> tuple[int, int] | None:
    """The size in an image header that Pillow refused as a decompression bomb.

    ``Image.open`` raises before telling the size, so this asks the format plugins Pillow
    registered (``Image.ID``/``Image.OPEN``, what ``Image.open`` itself loops over) to read the
    header again, without the check. None when that fails.
    """
    try:
        with (open(source, "rb") if isinstance(source, Path) else io.BytesIO(source)) as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                result = accept(prefix) if accept else True
                if not result or isinstance(result, str):  # as Image.open: a str is a warning, a no
                    continue
                fp.seek(0)
                try:
                    im = factory(fp, "")
                except Exception:  # noqa: BLE001 - not this format; try the next one
                    continue
                w, h = im.size
                return int(w), int(h)
    except Exception:  # noqa: BLE001 - only for a nicer message: fall back to Pillow's count
        return None
    return None


def _too_large_from_pillow(exc: Image.DecompressionBombError, source: Path | bytes, path: Path | None,
                           label: str, max_pixels: int | None) -> ImageTooLargeError:
    """Pillow's DecompressionBombError as an :class:`ImageTooLargeError`."""
    size = _pillow_limit_size(source)
    text = str(exc)
    found = re.search(r"\((\d+) pixels\)", text)
    limit = re.search(r"limit of (\d+) pixels", text)
    pixels = size[0] * size[1] if size else int(found.group(1)) if found else None
    pillow_limit = int(limit.group(1)) if limit else 2 * int(Image.MAX_IMAGE_PIXELS or 0)
    if pixels is None:  # an unknown message: say what we know
        pixels = pillow_limit + 1
    if max_pixels is not None and max_pixels < pixels:
        limit_used, note = max_pixels, ""
    else:
        limit_used, note = pillow_limit, " (Pillow's decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS x 2)"
    w, h = size if size else (None, None)
    return ImageTooLargeError(path, w, h, limit_used, label=label, pixels=pixels, note=note)


def decode_image(source: str | os.PathLike[str] | bytes, *, max_pixels: int | None = None,
                 name: str | None = None) -> np.ndarray:
    """Decode an image file, or the bytes of one, as the image is stored.

    Args:
        source: a path (str or path-like) or the encoded bytes (``bytes``, ``bytearray`` or
            ``memoryview``; an HTTP upload, say).
        max_pixels: refuse images with more than this many pixels (width x height), checked
            from the header before any pixel is decoded. None: only Pillow's decompression-bomb
            limit applies.
        name: what errors call the image; default: the path for a file, :data:`BYTES_LABEL`
            ("the uploaded image") for bytes.

    Returns:
        A C-contiguous, writable uint8 array ``HxWxC``, C = 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA),
        values 0..255, alpha kept as stored (255 = opaque), EXIF orientation applied. See the
        module docstring for the conversions from other modes.

    Raises:
        ImageTooLargeError: more pixels than ``max_pixels`` or than Pillow's decompression-bomb
            limit (a :class:`BadImageError`).
        BadImageError: no such file, a folder, empty ("empty"), not an image, truncated
            ("truncated file") or otherwise undecodable; ``path`` is the file (None for bytes) and
            the message names ``label``.
        ValueError: ``max_pixels`` is not positive.

    Warns:
        ImageFramesWarning: the file holds several frames (an animated GIF, say); the first is decoded.
    """
    if max_pixels is not None and max_pixels < 1:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
    path: Path | None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | None = bytes(source)
        path = None
        label = name if name is not None else BYTES_LABEL
        if not data:
            raise BadImageError(None, "empty", label=label)
        opened: Path | bytes = data
    else:
        data = None
        path = Path(source)
        label = name if name is not None else str(path)
        opened = path
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise ImageTooLargeError(path, img.width, img.height, max_pixels, label=label)
            frames = getattr(img, "n_frames", 1)
            grey_alpha = _grey_alpha_source(img)  # before load(), which clears img.tile
            img.load()  # decode now: truncated files fail here, inside the try
            ImageOps.exif_transpose(img, in_place=True)
            img = _stored_mode(img)
            array = np.array(img, dtype=np.uint8)  # a writable copy (asarray is read-only)
    except FileNotFoundError:
        raise BadImageError(path, "no such file", label=label) from None
    except IsADirectoryError:
        raise BadImageError(path, "it is a folder", label=label) from None
    except Image.DecompressionBombError as exc:
        raise _too_large_from_pillow(exc, opened, path, label, max_pixels) from None
    except UnidentifiedImageError as exc:
        empty = path is not None and path.is_file() and path.stat().st_size == 0
        raise BadImageError(path, "empty" if empty else _reason(exc), label=label) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise BadImageError(path, _reason(exc), label=label) from None
    if frames > 1:  # an animated GIF/PNG/WebP or a multi-page TIFF: say so rather than drop the rest unseen
        warnings.warn(f"i2i: {label} has {frames} frames; only the first is used (a clip translates "
                      f"frame by frame as a video: convert it to .mp4)", ImageFramesWarning, stacklevel=2)
    if array.ndim == 2:
        array = array[:, :, None]
    elif grey_alpha:
        array = array[:, :, (0, 3)]
    return np.ascontiguousarray(array)


def split_alpha(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split ``HxW`` or ``HxWxC`` (C = 1, 2, 3, 4) into colour and alpha.

    Returns ``(colour, alpha)``: colour is ``HxWx1`` (for C = 1, 2 or ``HxW``) or ``HxWx3`` (for
    C = 3, 4), alpha is ``HxW`` (for C = 2, 4) or None. Both are C-contiguous, of the input's dtype,
    and may share memory with ``image`` (when nothing needs splitting). ValueError for other shapes.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return np.ascontiguousarray(image[:, :, None]), None
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"split_alpha expects HxW or HxWxC with C in 1, 2, 3, 4; got shape {image.shape}")
    c = image.shape[2]
    if c in (1, 3):
        return np.ascontiguousarray(image), None
    return np.ascontiguousarray(image[:, :, : c - 1]), np.ascontiguousarray(image[:, :, c - 1])


def _composite_on_white(image: np.ndarray) -> np.ndarray:
    """uint8 ``HxWxC`` (C = 1..4) -> ``HxWx1`` or ``HxWx3``: alpha composited on white by Pillow."""
    c = image.shape[2]
    if c in (1, 3):
        return image
    rgba = Image.fromarray(image).convert("RGBA")  # uint8 HxWx2 is LA, HxWx4 RGBA
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    if c == 2:
        flat = flat.convert("L")
    array = np.array(flat, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def to_channels(array: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HxW, HxWx1 or HxWx3 -> HxWx``channels`` (1 or 3), converting like Pillow does."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if array.ndim == 2:
        array = array[:, :, None]
    have = array.shape[2]
    if have == channels:
        return array
    if have == 1:
        return np.repeat(array, 3, axis=2)
    if have == 3:  # Pillow's L = R*299/1000 + G*587/1000 + B*114/1000 (rounded)
        a = array.astype(np.uint32)
        luma = (a[..., 0] * 19595 + a[..., 1] * 38470 + a[..., 2] * 7471 + 0x8000) >> 16
        return luma.astype(np.uint8)[:, :, None]
    raise ValueError(f"cannot convert {have} channels to {channels}")


def read_image(source: str | os.PathLike[str] | bytes, channels: int = 3, *, max_pixels: int | None = None,
               name: str | None = None) -> np.ndarray:
    """Read an image file, or the bytes of one, as uint8 ``HxWxC`` with ``channels`` (1 or 3).

    :func:`decode_image` (``max_pixels`` and ``name`` as there), then transparency composited on
    white and the colours converted to ``channels`` (Pillow's luma for colour -> grey, the grey
    repeated for grey -> colour). Returns a C-contiguous writable array, values 0..255.

    Raises :class:`BadImageError` (an :class:`~i2i.errors.I2IError`) naming the file (or ``name``)
    when it is missing, not an image, truncated or too large (:class:`ImageTooLargeError`), and
    ValueError for ``channels`` other than 1 or 3.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _composite_on_white(decode_image(source, max_pixels=max_pixels, name=name))
    return np.ascontiguousarray(to_channels(image, channels))


def _check_array(array: np.ndarray, caller: str) -> np.ndarray:
    """uint8 HxW or HxWxC (C = 1..4) -> C-contiguous HxW (for C = 1) or HxWxC; ValueError else."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"{caller} expects uint8, got {array.dtype} (scale and round first)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ValueError(f"{caller} expects HxW or HxWxC with C in 1, 2, 3, 4; got shape {array.shape}")
    return np.ascontiguousarray(array)


#: rows per strip of the PNG writer: ~4 MB of a 16000-pixel-wide RGB image at a time
_PNG_STRIP_BYTES = 4 << 20


def _png_chunk(out: BinaryIO, kind: bytes, data: bytes | memoryview) -> None:
    out.write(struct.pack(">I", len(data)) + kind)
    out.write(data)
    out.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind))))


def _write_png(out: BinaryIO, array: np.ndarray) -> None:
    """An 8-bit PNG (grey, grey + alpha, RGB or RGBA) of ``array``, written in strips of rows.

    Why not Pillow, which reads every other format here: Pillow keeps an RGB image at 4 bytes per
    pixel and encodes only a whole image, so writing a large result costs 2.3x its size in memory
    (the array and Pillow's copy); this writer needs the array plus one strip. Each row uses the
    PNG "Sub" filter (difference to the pixel on the left, modulo 256; PNG spec, section 9.2),
    compressed by zlib at :data:`PNG_COMPRESS_LEVEL`.
    """
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    c = 1 if array.ndim == 2 else array.shape[2]
    rows = array.reshape(h, w * c)
    out.write(b"\x89PNG\r\n\x1a\n")
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    _png_chunk(out, b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
    z = zlib.compressobj(PNG_COMPRESS_LEVEL)
    strip = max(1, _PNG_STRIP_BYTES // max(1, w * c))
    for y0 in range(0, h, strip):
        part = rows[y0 : y0 + strip]
        filtered = np.empty((part.shape[0], 1 + w * c), np.uint8)
        filtered[:, 0] = 1  # filter type Sub
        filtered[:, 1 : 1 + c] = part[:, :c]
        np.subtract(part[:, c:], part[:, :-c], out=filtered[:, 1 + c :])  # uint8 arithmetic wraps: mod 256
        data = z.compress(filtered)
        if data:
            _png_chunk(out, b"IDAT", data)
    _png_chunk(out, b"IDAT", z.flush())
    _png_chunk(out, b"IEND", b"")


def _as_pil(image: np.ndarray | Image.Image, caller: str) -> Image.Image:
    """A uint8 array (HxW L, HxWx2 LA, HxWx3 RGB, HxWx4 RGBA) or a PIL image of those modes."""
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            raise ValueError(f"{caller} expects a PIL image of mode L, LA, RGB or RGBA; got {image.mode}")
        return image
    return Image.fromarray(_check_array(image, caller))


def _encode(image: np.ndarray | Image.Image, pil_format: str, quality: int, caller: str, out: BinaryIO) -> None:
    """The one encoder behind :func:`encode_image` and :func:`write_image`: into ``out``."""
    if not 0 <= quality <= 100:
        raise ValueError(f"quality must be 0..100, got {quality}")
    if pil_format == "PNG":
        _write_png(out, np.asarray(_as_pil(image, caller)) if isinstance(image, Image.Image) else _check_array(image, caller))
        return
    img = _as_pil(image, caller)
    mode = img.mode
    if pil_format == "JPEG" and mode in ("LA", "RGBA"):  # JPEG has no alpha: drop it
        img = img.convert("L" if mode == "LA" else "RGB")
    options: dict[str, object] = {}
    if pil_format in ("JPEG", "WEBP"):
        options = {"quality": quality}
    try:
        img.save(out, format=pil_format, **options)
    except (KeyError, ValueError) as exc:  # a mode the format cannot hold, a missing codec
        raise I2IError(f"cannot encode an image of mode {mode} as {pil_format}: {exc}") from None
    except OSError as exc:
        if isinstance(out, io.BytesIO):
            raise I2IError(f"cannot encode an image of mode {mode} as {pil_format}: {exc}") from None
        raise  # the file could not be written: write_image says so


def encode_image(array: np.ndarray | Image.Image, fmt: str = "png", quality: int = 95) -> bytes:
    """Encode a uint8 ``HxW`` or ``HxWxC`` array (C = 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA), or a
    PIL image of mode L, LA, RGB or RGBA (the same pixels give the same bytes either way).

    ``fmt`` is one of :data:`ENCODE_FORMATS` (png, jpeg/jpg, webp; any case, a leading dot is
    allowed). PNG is lossless, written at :data:`PNG_COMPRESS_LEVEL`, and the same array always
    gives the same bytes. JPEG and WebP use ``quality`` (0..100); JPEG drops the alpha channel
    (LA -> L, RGBA -> RGB; it is not composited), WebP stores grey as RGB.

    Raises :class:`~i2i.errors.I2IError` for another format (or a codec Pillow lacks), ValueError
    for an array that is not uint8 of those shapes or a quality outside 0..100.
    """
    key = fmt.lower().lstrip(".")
    if key not in ENCODE_FORMATS:
        raise I2IError(f"cannot encode images as {fmt!r}; choose one of: {', '.join(ENCODE_FORMATS)}")
    out = io.BytesIO()
    _encode(array, "JPEG" if key in ("jpeg", "jpg") else key.upper(), quality, "encode_image", out)
    return out.getvalue()


def _write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write`` into a hidden temporary file next to ``path``, then rename it over ``path``.

    Streaming into the file (rather than encoding to bytes first) keeps a large result from being
    held twice in memory."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 gives the file the permissions a plain open() would (the umask applies)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike[str], array: np.ndarray | Image.Image, quality: int = 95) -> Path:
    """Write a uint8 ``HxW`` or ``HxWxC`` array (C = 1, 2, 3, 4), or a PIL image of mode L, LA, RGB
    or RGBA, to ``path``; returns ``path``.

    The format follows the suffix: .png, .jpg/.jpeg and .webp are written with the bytes of
    :func:`encode_image` (so a PNG file is byte-identical to what the HTTP server sends); .bmp,
    .tif/.tiff and .ppm/.pgm through the same encoder. JPEG is written at ``quality`` and drops the
    alpha channel. Parent folders are created. The file is written to a temporary file in the same
    folder and renamed over ``path``, so a crash never leaves half a file (and an existing file is
    replaced whole).

    Raises :class:`~i2i.errors.I2IError` for an unknown suffix or when the file cannot be written,
    ValueError for an array that is not uint8 of those shapes.
    """
    path = Path(path)
    pil_format = _PIL_FORMATS.get(path.suffix.lower())
    if pil_format is None:
        raise I2IError(f"cannot write {path}: unknown image suffix {path.suffix!r}; use .png or .jpg")
    image = array if isinstance(array, Image.Image) else _check_array(array, "write_image")  # fails before any file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda f: _encode(image, pil_format, quality, "write_image", f))
    except OSError as exc:
        raise I2IError(f"cannot write image {path}: {os_error_line(exc)}") from None
    return path


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True for a file with an image suffix that is not a hidden/AppleDouble file (``._x.jpg``)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder_or_glob: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Image files in a folder (sorted; ``recursive`` descends into sub-folders), a single image
    file, or the matches of a glob pattern (``photos/*.jpg``, ``data/**/*.png``).

    A folder or file that does not exist, and is not a pattern, is an :class:`I2IError`.
    """
    text = os.fspath(folder_or_glob)
    path = Path(text).expanduser()
    found: Iterable[Path]
    if path.is_dir():
        found = path.rglob("*") if recursive else path.iterdir()
    elif path.is_file():
        found = [path]
    elif glob.has_magic(text):
        found = (Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True))
    else:
        raise I2IError(f"no such file or folder: {text}")
    return sorted(p for p in found if is_image_file(p) and p.is_file())


__all__ = [
    "BAD_IMAGE_HINT", "BYTES_LABEL", "ENCODE_FORMATS", "IMAGE_EXTENSIONS", "PNG_COMPRESS_LEVEL",
    "BadImageError", "ImageTooLargeError",
    "ImageFramesWarning", "decode_image", "read_image", "split_alpha", "to_channels",
    "encode_image", "write_image",
    "list_images", "is_image_file",
]
