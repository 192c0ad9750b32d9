"""Reading and writing images as uint8 numpy arrays (torch-free: numpy + Pillow only).

The serving runtime imports this module, so it must never import torch.

Conversions done by :func:`read_image` (whatever the file holds, you get ``HxWxC`` uint8 with the
channel count you asked for):

- EXIF orientation is applied, so a phone photo comes out the way it is displayed.
- Transparency (RGBA, LA, palette with a transparent colour) is composited on **white**: a
  transparent logo or line drawing then looks as it does in a browser, whereas dropping the alpha
  channel would show whatever colour the transparent pixels happen to hold (often black).
- 16-bit and 32-bit integer images (modes ``I;16*`` and ``I``) are scaled 0..65535 -> 0..255;
  float images (mode ``F``) are taken as 0..1 when their maximum is at most 1, else as 0..255.
- Palette, CMYK, YCbCr, LAB, HSV and 1-bit images are converted through RGB or L.
- Colour -> 1 channel uses Pillow's ITU-R 601 luma (L = 0.299 R + 0.587 G + 0.114 B).
"""

from __future__ import annotations

import glob
import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import I2IError

#: Suffixes (lower case) that :func:`list_images` picks up.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

#: The hint at the end of every "cannot read image" error.
BAD_IMAGE_HINT = "remove or replace it (training: --set skip_bad_images=true skips such files)"


class BadImageError(I2IError):
    """An image file that cannot be read; ``path`` is the file and ``reason`` says why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}; {BAD_IMAGE_HINT}")


def _reason(exc: BaseException) -> str:
    """A short, user-facing reason for a Pillow failure."""
    text = str(exc)
    if isinstance(exc, UnidentifiedImageError):
        return "not an image, or a format Pillow cannot read"
    if "truncated" in text.lower() or isinstance(exc, EOFError):
        return "truncated file"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (Pillow's decompression-bomb limit)"
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


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with alpha onto white; return RGB (or L for LA)."""
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, rgba).convert("RGB")
    return flat.convert("L") if img.mode == "LA" else flat


def _normalise_mode(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> L or RGB."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "P" or mode == "PA":
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        return _flatten_alpha(img) if has_alpha else img
    if mode in ("RGBA", "LA", "RGBa", "La"):
        return _flatten_alpha(img)
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":
        return _to_8bit(img)
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX ...


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


def read_image(path: str | os.PathLike[str], channels: int = 3) -> np.ndarray:
    """Read an image file as uint8 ``HxWxC`` with ``channels`` (1 or 3) channels.

    Raises :class:`BadImageError` (an :class:`~i2i.errors.I2IError`) naming the file when it is
    missing, not an image, or truncated.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, inside the try
            img = ImageOps.exif_transpose(img) or img
            img = _normalise_mode(img)
            img = img.convert("L" if channels == 1 else "RGB")
            array = np.array(img, dtype=np.uint8)  # a writable copy (asarray is read-only)
    except FileNotFoundError:
        raise BadImageError(path, "no such file") from None
    except IsADirectoryError:
        raise BadImageError(path, "it is a folder") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError) as exc:
        raise BadImageError(path, _reason(exc)) from None
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(array)


_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
                ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM"}


def write_image(path: str | os.PathLike[str], array: np.ndarray, quality: int = 95) -> Path:
    """Write a uint8 ``HxW`` or ``HxWxC`` (C in 1, 3, 4) array; the format follows the suffix.

    Parent folders are created. JPEG is written at ``quality`` (alpha is dropped: JPEG has none).
    """
    path = Path(path)
    fmt = _PIL_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise I2IError(f"cannot write {path}: unknown image suffix {path.suffix!r}; use .png or .jpg")
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"write_image expects uint8, got {array.dtype} (scale and round first)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"write_image expects HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}")
    img = Image.fromarray(np.ascontiguousarray(array))
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        img.save(path, format=fmt, **kwargs)
    except OSError as exc:
        raise I2IError(f"cannot write image {path}: {exc}") from None
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


__all__ = ["IMAGE_EXTENSIONS", "BadImageError", "read_image", "write_image", "to_channels", "list_images", "is_image_file"]
