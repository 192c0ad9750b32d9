"""``--data NAME|PATH``: folders are used as they are; names come from the dataset catalogue.

A catalogue name (``i2i list datasets``) is looked for in order:

1. ``$I2I_DATA_DIR/<name>`` (several folders may be given, separated by ``os.pathsep``);
2. the cache, ``cache_dir("datasets")/<name>`` (``$I2I_CACHE_DIR/datasets`` or ``~/.cache/i2i/datasets``);
3. downloaded from the catalogue URL, verified, extracted and moved into the cache atomically.

Torch-free, so that ``i2i list datasets`` stays fast.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from ..download import cache_dir, download, extract
from ..errors import I2IError, UnknownNameError, did_you_mean
from ..registry import DatasetSpec, registry


def data_dirs() -> list[Path]:
    """The folders named by ``$I2I_DATA_DIR``."""
    value = os.environ.get("I2I_DATA_DIR", "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def _local_copy(name: str) -> tuple[str, Path] | None:
    for folder in data_dirs():
        if (folder / name).is_dir():
            return "I2I_DATA_DIR", folder / name
    cached = cache_dir("datasets") / name
    if cached.is_dir():
        return "cached", cached
    return None


def catalogue_status(spec: DatasetSpec | str) -> str:
    """Where a catalogue dataset is available: "I2I_DATA_DIR", "cached", or "-" (not yet)."""
    found = _local_copy(spec if isinstance(spec, str) else spec.name)
    return found[0] if found else "-"


def _looks_like_path(text: str) -> bool:
    return any(sep and sep in text for sep in (os.sep, os.altsep, "/")) or text.startswith((".", "~"))


def resolve_data(spec: str | os.PathLike[str], layout_hint: str | None = None) -> Path:
    """The data folder for ``--data``: an existing folder path, or a catalogue name (fetched if needed).

    ``layout_hint`` ("aligned", "unaligned", "folder") is the layout the caller needs; a
    catalogue dataset of another layout is an error saying so. Paths are not checked here: the
    dataset classes say what they expected to find.
    """
    text = os.fspath(spec).strip()
    if not text:
        raise I2IError("no data given: pass --data NAME (see `i2i list datasets`) or --data /path/to/folder")
    path = Path(text).expanduser()
    if _looks_like_path(text) or path.is_dir():
        if not path.exists():
            raise I2IError(f"data folder {text} does not exist")
        if not path.is_dir():
            raise I2IError(f"--data expects a folder, but {text} is a file")
        return path.resolve()
    datasets = registry("dataset")
    if text not in datasets:
        raise UnknownNameError(f"unknown dataset {text!r}{did_you_mean(text, datasets.names())}; "
                               f"see `i2i list datasets`, or pass a folder path")
    entry: DatasetSpec = datasets.get(text)
    if layout_hint and entry.layout != layout_hint:
        raise I2IError(f"dataset {text!r} is {entry.layout}, but this method needs {layout_hint} data; "
                       f"see `i2i list datasets` for {layout_hint} ones")
    found = _local_copy(entry.name)
    return found[1] if found else fetch(entry)


def fetch(entry: DatasetSpec) -> Path:
    """Download and unpack a catalogue dataset into the cache; return its folder."""
    root = cache_dir("datasets")
    target = root / entry.name
    hint = (f"download it yourself and pass --data /path/to/{entry.name} or set I2I_DATA_DIR "
            f"to the folder that holds {entry.name}/")
    archive_name = entry.url.rstrip("/").rsplit("/", 1)[-1] or "archive"
    archive = download(entry.url, root / f".{entry.name}-{archive_name}", sha256=entry.sha256,
                       size=entry.size_bytes, desc=f"dataset {entry.name}", offline_hint=hint)
    # unique per process, so that concurrent fetches (DDP ranks) never share a half-built folder
    unpacked = extract(archive, root / f".{entry.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        inner = unpacked / (entry.subdir or entry.name)
        if not inner.is_dir():  # an archive with one top folder of another name, or none at all
            tops = [p for p in unpacked.iterdir() if not p.name.startswith((".", "__MACOSX"))]
            inner = tops[0] if len(tops) == 1 and tops[0].is_dir() else unpacked
        if not target.exists():
            try:
                os.replace(inner, target)
            except OSError:
                if not target.is_dir():  # lost a race to another process: theirs is as good as ours
                    raise
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    archive.unlink(missing_ok=True)  # the extracted copy is what we keep; archives are large
    return target


__all__ = ["resolve_data", "catalogue_status", "data_dirs", "fetch"]
