"""i2i: plugin-based image-to-image translation."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "hookimpl", "load", "Generator"]


def __getattr__(name: str) -> Any:
    # ``i2i.hookimpl`` is created on first use so that ``import i2i`` (and the torch-free serving
    # runtime that imports i2i.errors) does not pull in pluggy.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("i2i")
        globals()["hookimpl"] = marker
        return marker
    if name in ("load", "Generator"):  # the one door that opens a generator (i2i/loader.py)
        from . import loader

        return getattr(loader, name)
    if not name.startswith("_"):  # submodules on first use: `import i2i; i2i.registry.create_generator(...)`
        import importlib
        import importlib.util

        if importlib.util.find_spec(f"{__name__}.{name}") is not None:
            return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'i2i' has no attribute {name!r}")
