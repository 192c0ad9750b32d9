"""Torch datasets over the three folder layouts; items are dicts of float CxHxW tensors.

``dataset[i]`` is a finished item (float32 in ``value_range``); the training engine reads
``dataset.raw_item(i)`` instead: uint8 images whose resize, crop and flip (the square layouts) and
normalisation are applied a batch at a time on the device (:mod:`i2i.data.batch`). Both give the
same numbers.

- :class:`AlignedDataset`: pairs (pix2pix). ``root/<phase>/*.jpg`` with A|B side by side, or
  ``root/<phase>/A`` + ``root/<phase>/B`` (or ``root/A`` + ``root/B``) matched by file stem.
- :class:`UnalignedDataset`: two unpaired sets (CycleGAN). ``root/<phase>A`` + ``root/<phase>B``,
  explicit ``a_dir``/``b_dir``, or a root holding exactly two image folders (``monet/``, ``photo/``).
- :class:`ImageFolderDataset`: plain images (super-resolution, inpainting).

Unreadable images are an :class:`~i2i.errors.I2IError` naming the file, or, with ``skip_bad=True``,
skipped (another item is returned) and reported once each as a :class:`SkippedImageWarning`.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import I2IError
from ..imageio import BadImageError, is_image_file, list_images, read_image, to_channels
from . import transforms as T
from .batch import finish_item, geometry, hwc_uint8

ValueRange = tuple[float, float]


class SkippedImageWarning(UserWarning):
    """An unreadable image was skipped because ``skip_bad`` (``skip_bad_images``) is on."""


def side_by_side(width: int, height: int, aspect: float | None = None) -> bool:
    """Whether a ``width`` x ``height`` file is an A|B side-by-side pair: as wide as ``aspect`` (width /
    height of the training files, within 5%) or, unknown, at least 1.5x its height. The one rule for
    training (pix2pix) and for ``i2i eval translate``."""
    return abs(width / height - aspect) <= 0.05 * aspect if aspect else width / height >= 1.5


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image_file(p) for p in folder.iterdir())


def _images(folder: Path, max_items: int | None, recursive: bool = False) -> list[Path]:
    paths = list_images(folder, recursive=recursive)
    return paths[:max_items] if max_items else paths


def _subfolders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def _check_root(root: Path) -> None:
    if not root.is_dir():
        raise I2IError(f"data folder {root} does not exist")


def _check_channels(**channels: int) -> None:
    for name, value in channels.items():
        if value not in (1, 3):
            raise I2IError(f"{name} must be 1 or 3, got {value}")


class _Images(Dataset):
    """Shared item loop: retry with the next index when skipping bad images."""

    root: Path
    skip_bad: bool
    value_range: ValueRange

    def __init__(self, skip_bad: bool, value_range: Sequence[float] | None) -> None:
        self.skip_bad = skip_bad
        #: the range of finished items' values; None: finished items stay uint8 (0..255)
        self.value_range: ValueRange | None = None if value_range is None else (float(value_range[0]), float(value_range[1]))
        #: files found unreadable so far (in this process), for the caller to report
        self.bad_files: dict[str, str] = {}

    def _read(self, path: Path, channels: int = 3) -> np.ndarray:
        try:
            return read_image(path, channels)
        except BadImageError as exc:
            if not self.skip_bad:
                raise I2IError(f"{exc} (or --set skip_bad_images=true skips such files)") from None
            if str(path) not in self.bad_files:
                self.bad_files[str(path)] = exc.reason
                warnings.warn(f"i2i: skipping unreadable image {path}: {exc.reason}", SkippedImageWarning, stacklevel=2)
            raise

    def _load(self, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The finished item: float32 ``C x H x W`` images in ``value_range`` (uint8 when None)."""
        return finish_item(self.raw_item(index), self.value_range)

    def raw_item(self, index: int) -> dict[str, Any]:
        """The item as the training engine reads it: uint8 ``C x H x W`` images, with any pending
        geometry beside them (see :mod:`i2i.data.batch`); unreadable files as in ``__getitem__``."""
        n = len(self)
        for offset in range(n):
            try:
                return self._load((index + offset) % n)
            except BadImageError:
                if not self.skip_bad:
                    raise
        raise I2IError(f"no readable image in {self.root} (all {n} items failed; see the warnings above)")


class AlignedDataset(_Images):
    """Paired images: items ``{"A", "B", "A_path", "B_path"}`` with identical crops and flips."""

    def __init__(self, root: str | os.PathLike[str], phase: str = "train", direction: str = "AtoB",
                 load_size: int = 286, crop_size: int = 256, flip: bool = True, train: bool = True,
                 in_channels: int = 3, out_channels: int = 3, skip_bad: bool = False,
                 max_items: int | None = None, value_range: Sequence[float] | None = (-1.0, 1.0)) -> None:
        super().__init__(skip_bad, value_range)
        if direction not in ("AtoB", "BtoA"):
            raise I2IError(f"direction must be AtoB or BtoA, got {direction!r}")
        _check_channels(in_channels=in_channels, out_channels=out_channels)
        T.check_square(load_size, crop_size)
        self.load_size, self.crop_size, self.flip, self.train = load_size, crop_size, flip, train
        self.root, self.phase, self.direction = Path(root), phase, direction
        self.in_channels, self.out_channels = in_channels, out_channels
        #: (A path, B path); B is None for side-by-side AB files
        self.pairs: list[tuple[Path, Path | None]] = self._find_pairs(max_items)

    def _find_pairs(self, max_items: int | None) -> list[tuple[Path, Path | None]]:
        root, phase = self.root, self.phase
        _check_root(root)
        for base in (root / phase, root):
            if (base / "A").is_dir() and (base / "B").is_dir():
                return self._match(base / "A", base / "B", max_items)
            if _has_images(base):  # side-by-side AB files
                return [(p, None) for p in _images(base, max_items)]
        raise I2IError(
            f"no paired images in {root}: expected {phase}/ holding A|B side-by-side images, or folders "
            f"{phase}/A and {phase}/B with matching file names (found: {', '.join(_subfolders(root)) or 'nothing'})"
        )

    def check_side_by_side(self, aspect: float | None = None, setting: str = "") -> None:
        """For A|B side-by-side files: a one-line I2IError unless the first file is a pair, i.e. as wide
        as ``aspect`` (width / height of the training files) or, unknown, at least 1.5x its height. A
        folder of single images (Set5) would otherwise be split into halves and measured silently."""
        if not self.pairs or self.pairs[0][1] is not None:  # A/ and B/ folders: matched by name already
            return
        from PIL import Image

        first = self.pairs[0][0]
        try:
            with Image.open(first) as im:
                w, h = im.size
        except Exception:  # noqa: BLE001 - an unreadable first file is reported when it is read
            return
        if not side_by_side(w, h, aspect):
            shape = f"{aspect:.2f}:1 like the training files" if aspect else "about twice as wide as tall"
            raise I2IError(f"{setting + ': ' if setting else ''}{first.parent} holds single images ({first.name} is "
                           f"{w}x{h}), not A|B side-by-side pairs ({shape}) or A/ and B/ folders of matching names; "
                           f"give a folder in one of those layouts")

    @staticmethod
    def _match(a_dir: Path, b_dir: Path, max_items: int | None) -> list[tuple[Path, Path | None]]:
        a = {p.stem: p for p in list_images(a_dir)}
        b = {p.stem: p for p in list_images(b_dir)}
        common = sorted(a.keys() & b.keys())
        unmatched = sorted(a.keys() ^ b.keys())
        if not common:
            raise I2IError(f"no file names in common between {a_dir} and {b_dir}: pairs are matched by name (x.jpg <-> x.png)")
        if unmatched:
            warnings.warn(f"i2i: {len(unmatched)} images in {a_dir.parent} have no partner and are ignored "
                          f"(e.g. {', '.join(unmatched[:3])})", UserWarning, stacklevel=3)
        common = common[:max_items] if max_items else common
        return [(a[s], b[s]) for s in common]

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> dict[str, Any]:
        a_path, b_path = self.pairs[index]
        if b_path is None:
            ab = self._read(a_path, 3 if 3 in (self.in_channels, self.out_channels) else 1)
            half = ab.shape[1] // 2
            if self.in_channels == self.out_channels == ab.shape[2]:  # send the file once, whole (see batch.py)
                columns = [(0, half), (half, 2 * half)]
                if self.direction == "BtoA":
                    columns.reverse()
                params = T.square_params(self.load_size, self.crop_size, self.flip, self.train)  # one for both
                return {"AB": hwc_uint8(ab), "A_geometry": geometry(*params, columns=columns[0]), "A_source": "AB",
                        "B_geometry": geometry(*params, columns=columns[1]), "B_source": "AB",
                        "A_path": str(a_path), "B_path": str(a_path)}
            a, b = ab[:, :half], ab[:, half:2 * half]
            b_path = a_path
        else:
            a, b = self._read(a_path), self._read(b_path)
            if b.shape[:2] != a.shape[:2]:  # the pipeline needs equal sizes; both get resized anyway
                b = T.resize_to(b, *a.shape[:2])
        if self.direction == "BtoA":
            a, b, a_path, b_path = b, a, b_path, a_path
        a, b = to_channels(a, self.in_channels), to_channels(b, self.out_channels)
        geom = T.square_geometry(self.load_size, self.crop_size, self.flip, self.train)  # one for both: same crop and flip
        return {"A": hwc_uint8(a), "A_geometry": geom, "B": hwc_uint8(b), "B_geometry": geom,
                "A_path": str(a_path), "B_path": str(b_path)}


def _name_order(root: Path, names: list[str]) -> list[str]:
    """For ``x2y/`` holding folders x and y, A is x; otherwise alphabetical."""
    match = re.fullmatch(r"(.+)2(.+)", root.name)
    if match and {match[1], match[2]} == set(names):
        return [match[1], match[2]]
    return sorted(names)


class UnalignedDataset(_Images):
    """Two unpaired image sets: items ``{"A", "B", "A_path", "B_path"}``.

    A is taken by index and B at random (or by index too when ``serial``); the length is the larger
    of the two sets, so one epoch sees every image of both.
    """

    def __init__(self, root: str | os.PathLike[str], phase: str = "train", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, train: bool = True, serial: bool = False,
                 direction: str = "AtoB", in_channels: int = 3, out_channels: int = 3,
                 a_dir: str | None = None, b_dir: str | None = None, skip_bad: bool = False,
                 max_items: int | None = None, value_range: Sequence[float] | None = (-1.0, 1.0)) -> None:
        super().__init__(skip_bad, value_range)
        if direction not in ("AtoB", "BtoA"):
            raise I2IError(f"direction must be AtoB or BtoA, got {direction!r}")
        _check_channels(in_channels=in_channels, out_channels=out_channels)
        T.check_square(load_size, crop_size)
        self.load_size, self.crop_size, self.flip, self.train = load_size, crop_size, flip, train
        self.root, self.phase, self.serial = Path(root), phase, serial
        self.in_channels, self.out_channels = in_channels, out_channels
        self.dir_A, self.dir_B = self._find_dirs(a_dir, b_dir)
        if direction == "BtoA":
            self.dir_A, self.dir_B = self.dir_B, self.dir_A
        self.paths_A = _images(self.dir_A, max_items)
        self.paths_B = _images(self.dir_B, max_items)
        for folder, paths in ((self.dir_A, self.paths_A), (self.dir_B, self.paths_B)):
            if not paths:
                raise I2IError(f"no images in {folder}")

    def _find_dirs(self, a_dir: str | None, b_dir: str | None) -> tuple[Path, Path]:
        root, phase = self.root, self.phase
        _check_root(root)
        if a_dir or b_dir:
            if not (a_dir and b_dir):
                raise I2IError("give both a_dir and b_dir (the folders of the two image sets)")
            dirs = (root / a_dir, root / b_dir)  # an absolute a_dir/b_dir replaces root
            for d in dirs:
                if not d.is_dir():
                    raise I2IError(f"image folder {d} does not exist (found in {root}: {', '.join(_subfolders(root)) or 'nothing'})")
            return dirs
        for a, b in ((root / f"{phase}A", root / f"{phase}B"), (root / phase / "A", root / phase / "B"),
                     (root / "A", root / "B")):
            if a.is_dir() and b.is_dir():
                return a, b
        # e.g. monet2photo/monet + monet2photo/photo: a root with exactly two image folders
        image_dirs = [n for n in _subfolders(root) if _has_images(root / n)]
        other_phase = len(image_dirs) == 2 and image_dirs[0][:-1] == image_dirs[1][:-1] and \
            (image_dirs[0][-1], image_dirs[1][-1]) == ("A", "B")  # trainA/trainB asked for phase "test"
        if len(image_dirs) == 2 and not other_phase:
            first, second = _name_order(root, image_dirs)
            return root / first, root / second
        found = ", ".join(_subfolders(root)) or "nothing"
        raise I2IError(
            f"no unpaired image sets in {root}: expected folders {phase}A and {phase}B, or exactly two image "
            f"folders, or name them with a_dir/b_dir (found: {found})"
        )

    def __len__(self) -> int:
        return max(len(self.paths_A), len(self.paths_B))

    def _load(self, index: int) -> dict[str, Any]:
        a_path = self.paths_A[index % len(self.paths_A)]
        for _ in range(len(self.paths_B)):  # a bad B is replaced by another B, not by another A
            if self.serial:
                b_path = self.paths_B[index % len(self.paths_B)]
            else:  # torch's RNG: seeded per worker by the DataLoader, per item by the engine
                b_path = self.paths_B[int(torch.randint(len(self.paths_B), ()).item())]
            try:
                b = self._read(b_path, self.out_channels)
                break
            except BadImageError:
                if not self.skip_bad or self.serial:
                    raise
        else:
            raise I2IError(f"no readable image in {self.dir_B}")
        a = self._read(a_path, self.in_channels)
        # independent crops and flips: the two images are unrelated (A's drawn first, as always)
        geom_a = T.square_geometry(self.load_size, self.crop_size, self.flip, self.train)
        geom_b = T.square_geometry(self.load_size, self.crop_size, self.flip, self.train)
        return {"A": hwc_uint8(a), "A_geometry": geom_a, "B": hwc_uint8(b), "B_geometry": geom_b,
                "A_path": str(a_path), "B_path": str(b_path)}


class ImageFolderDataset(_Images):
    """Plain images, found recursively: items ``{"image", "path"}``.

    ``root/<phase>`` is used when it exists, else ``root``. See
    :func:`i2i.data.transforms.folder_pipeline` for ``load_size``/``crop_size``.
    """

    def __init__(self, root: str | os.PathLike[str], phase: str | None = "train", load_size: int | None = None,
                 crop_size: int | None = None, flip: bool = True, train: bool = True, channels: int = 3,
                 recursive: bool = True, skip_bad: bool = False, max_items: int | None = None,
                 value_range: Sequence[float] | None = (-1.0, 1.0)) -> None:
        super().__init__(skip_bad, value_range)
        _check_channels(channels=channels)
        self.root, self.channels = Path(root), channels
        _check_root(self.root)
        folder = self.root / phase if phase and (self.root / phase).is_dir() else self.root
        self.paths = _images(folder, max_items, recursive=recursive)
        if not self.paths:
            raise I2IError(f"no images in {folder}")
        self.transform = T.folder_pipeline(load_size, crop_size, flip, train)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        # sizes differ from image to image, so the geometry stays here (one albumentations call)
        image = T.apply(self.transform, image=self._read(path, self.channels))["image"]
        return {"image": hwc_uint8(image), "path": str(path)}


__all__ = ["AlignedDataset", "UnalignedDataset", "ImageFolderDataset", "SkippedImageWarning"]
