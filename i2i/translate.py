"""`i2i translate`: run a generator opened by :func:`i2i.load` over image files, folders and globs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import I2IError
from .imageio import decode_image, list_images, split_alpha, write_image
from .loader import DEFAULT_MAX_PIXELS, Generator, plan_tile


def expand_inputs(inputs: tuple[str, ...]) -> list[Path]:
    """Files, folders (their images and videos) and globs -> paths, in order, without duplicates."""
    from .imageio import IMAGE_EXTENSIONS
    from .video import VIDEO_EXTENSIONS, list_videos

    paths: list[Path] = []
    for item in inputs:
        found = sorted(list_images(item) + list_videos(item))  # a path that does not exist: "no such file or folder"
        if not found and Path(item).expanduser().is_file():
            raise I2IError(f"{item} is neither an image nor a video i2i reads (by its suffix "
                           f"{Path(item).suffix or '(none)'!r}); images: {' '.join(sorted(IMAGE_EXTENSIONS))}; "
                           f"videos: {' '.join(sorted(VIDEO_EXTENSIONS))}")
        if not found:
            raise I2IError(f"no images or videos found at {item!r}; pass image or video files, folders or globs "
                           f"like 'photos/*.jpg'")
        paths.extend(f for f in found if f not in paths)
    return paths


def output_names(paths: list[Path]) -> list[str]:
    """A distinct ``.png`` name per input: the stem, then ``stem_ext`` where stems collide
    (``a.jpg`` and ``a.png``), then a counter (the same name in two folders)."""
    stems = [p.stem for p in paths]
    names = [f"{p.stem}_{p.suffix.lstrip('.').lower()}" if stems.count(p.stem) > 1 else p.stem for p in paths]
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append(f"{name}.png" if n == 0 else f"{name}_{n + 1}.png")
    return out


class MaskWarning(UserWarning):
    """A mask was read by a rule the user may not expect (resized, taken as inverted): said, not silent."""


#: a mask whose hole would cover more than this fraction of the image is taken as inverted
INVERTED_ABOVE = 0.5
#: a mask of another size is resized to the image when the aspect ratios differ by at most this
ASPECT_TOLERANCE = 0.02


def read_mask(path: str, size_hw: tuple[int, int], note: Callable[[str], None] | None = None) -> np.ndarray:
    """The hole mask in file ``path`` for an image of size_hw: HxW float32, 1 = hole (see :func:`hole_mask`)."""
    return hole_mask(decode_image(path), size_hw, f"mask {path}", note=note)


def mask_plane(mask: np.ndarray, label: str = "the mask") -> np.ndarray:
    """Which pixels of a decoded mask image (:func:`~i2i.imageio.decode_image`) mark the hole: HxW bool.

    The rule (the same for ``i2i translate --mask``, ``i2i serve`` and ``i2i eval inpaint``'s mask
    folders):

    - with transparency (an alpha channel, or a palette transparency, where some pixel is less than
      half opaque), as image editors save strokes on a transparent layer: **opaque = hole** (alpha
      >= 128); the colour under the pixels says nothing;
    - otherwise, grey (L, 1-bit, grey RGB, opaque LA/RGBA): **non-zero = hole** (white strokes on
      black); a colour image is refused (most often the photo passed by mistake).
    """
    colour, alpha = split_alpha(mask)
    if alpha is not None and alpha.min() < 128:
        return alpha >= 128
    # a colour file is not a mask (often the photo passed by mistake); grey RGB/JPEG noise is fine
    if colour.shape[2] == 3 and int((colour.max(axis=2).astype(np.int16) - colour.min(axis=2)).max()) > 8:
        raise I2IError(f"{label} is a colour image; give a greyscale mask (non-zero/white = hole, black = keep) "
                       f"or strokes on a transparent layer (opaque = hole)")
    return colour.max(axis=2) > 0


def hole_mask(mask: np.ndarray, size_hw: tuple[int, int], label: str = "the mask",
              note: Callable[[str], None] | None = None, invert: bool | None = None) -> np.ndarray:
    """A decoded mask image for an image of size_hw -> HxW float32, 1 = hole.

    The pixels that mark the hole are read by :func:`mask_plane`. Then, each step said through
    ``note`` (default: a :class:`MaskWarning`):

    - a mask of another size with the image's aspect ratio (within 2%) is resized to the image,
      nearest neighbour (a hole stays a hole); another aspect ratio is refused;
    - a mask whose hole covers more than half the image (:data:`INVERTED_ABOVE`) is taken as
      inverted (white or opaque = keep, as in masks where 1 marks the valid pixels) and flipped;
      ``invert`` True/False decides instead of that rule.

    The CLI, the server and ``i2i eval inpaint`` read masks through here. Raises I2IError naming
    ``label`` for a colour image, another aspect ratio, and a mask that is all hole or has none.
    """
    say = note or (lambda text: warnings.warn(text, MaskWarning, stacklevel=3))
    hole = mask_plane(mask, label)
    h, w = size_hw
    if hole.shape != (h, w):
        mh, mw = hole.shape
        if abs((mw / mh) / (w / h) - 1) > ASPECT_TOLERANCE:
            raise I2IError(f"{label} is {mw}x{mh} but the image is {w}x{h}, another shape; give a mask of the "
                           f"image's size (non-zero = hole)")
        from PIL import Image

        hole = np.asarray(Image.fromarray(hole).resize((w, h), Image.Resampling.NEAREST))
        say(f"{label} is {mw}x{mh}, the image {w}x{h}: resized it (nearest neighbour)")
    if hole.all():
        raise I2IError(f"{label} is all hole (nothing known to fill from); black (0) marks the pixels to keep - is it inverted?")
    if not hole.any():
        raise I2IError(f"{label} marks no hole (all zero); non-zero pixels mark the region to fill")
    ratio = float(hole.mean())
    if invert if invert is not None else ratio > INVERTED_ABOVE:
        hole = ~hole
        if invert is None:
            say(f"{label} marks {ratio:.0%} of the image as hole: taken as inverted (more than half is hole, so "
                f"white/opaque = keep); {1 - ratio:.0%} is filled")
    return hole.astype(np.float32)


def resize_shorter(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """uint8 HxWxC (C in 1-4) resized so its shorter side is ``size`` (bicubic, or nearest for masks)."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / min(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.asarray(pil.resize(new, Image.NEAREST if nearest else Image.BICUBIC))
    return out[:, :, None] if squeeze else out


def translate_files(generator: Generator, paths: list[Path], out_dir: Path, size: int | None = None,
                    mask: str | None = None, tile: int = 0, overlap: int = 32,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS, whole: bool = False,
                    progress: Callable[[Path], None] | None = None,
                    note: Callable[[str], None] = print,
                    keep_going: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Translate every file; returns (written, failed) where failed holds (path, one-line reason).

    With ``keep_going`` a file that cannot be read or translated is reported through ``note`` and
    the others go on; without it its I2IError is raised. Errors about the model or the options (a
    mask for a model that takes none ...) stop at once.
    """
    meta = generator.meta
    if mask and not meta.extra_inputs:
        raise I2IError(f"--mask is for inpainting models; {meta.name} takes no mask")
    if meta.extra_inputs and not mask:
        names = ", ".join(i["name"] for i in meta.extra_inputs)
        raise I2IError(f"{meta.name} needs a {names}: pass --mask FILE (non-zero = hole)")
    if tile:
        generator.check_tiling()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    said: set[str] = set()
    mask_image = decode_image(mask) if mask else None  # one mask for every image: decoded once

    def say(text: str) -> None:  # one note per distinct message (the same mask read for every image)
        if text not in said:
            said.add(text)
            note(f"i2i: {text}")

    for path, name in zip(paths, output_names(paths)):
        try:
            image = decode_image(path)
            half = None if whole else generator.pair_input(image)
            if half is not None:
                say(f"this model was trained on A|B pairs: translating the {meta.info['ab_pairs'].get('input', 'left')} "
                    f"half of such files (--whole translates whole images)")
                image = half
            hole = None  # read for the image as given
            if mask_image is not None:
                hole = hole_mask(mask_image, image.shape[:2], f"mask {mask}", note=say)
            if size:
                image = resize_shorter(image, size)
                if hole is not None:  # nearest: a hole stays a hole, a known pixel stays known
                    hole = (resize_shorter((hole * 255).astype(np.uint8)[:, :, None], size, nearest=True)[:, :, 0] > 0)
                    hole = hole.astype(np.float32)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                use_tile = plan_tile(meta, image.shape[0], image.shape[1], tile, max_pixels)
            for w in caught:
                note(f"{path.name}: {w.message}")
            result = generator.translate(image, hole, tile=use_tile, overlap=overlap, whole=True)  # halved above
            target = write_image(out_dir / name, result)
            del result
            written.append(target)
        except I2IError as exc:
            if not keep_going:
                raise
            failed.append((path, str(exc)))
            note(f"i2i: {exc}" if str(path) in str(exc) else f"i2i: {path}: {exc}")
        if progress:
            progress(path)
    return written, failed
