"""The data layer: dataset layouts, augmentation, and the named-dataset catalogue + cache.

Imports are lazy: ``from i2i.data import catalogue_status`` (used by ``i2i list datasets``) must
not pull in torch and albumentations, which the dataset classes need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalogue import catalogue_status, data_dirs, fetch, resolve_data
    from .datasets import AlignedDataset, ImageFolderDataset, SkippedImageWarning, UnalignedDataset

_EXPORTS = {
    "AlignedDataset": "datasets",
    "UnalignedDataset": "datasets",
    "ImageFolderDataset": "datasets",
    "SkippedImageWarning": "datasets",
    "resolve_data": "catalogue",
    "catalogue_status": "catalogue",
    "data_dirs": "catalogue",
    "fetch": "catalogue",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'i2i.data' has no attribute {name!r}")
