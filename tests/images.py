"""Small helpers the test files share: random images, PNG bytes, an import blocker for subprocesses."""

from __future__ import annotations

import io
import textwrap

import numpy as np
from PIL import Image


def rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A random uint8 HxWx3 image."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def png(array: np.ndarray) -> bytes:
    """``array`` as PNG bytes, written by Pillow (not by i2i's own encoder)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def import_blocker(*packages: str) -> str:
    """Python source that makes ``packages`` unimportable: the start of a script run in a subprocess
    as a serving install (no torch) or a runtime without onnx would run."""
    return textwrap.dedent(f"""
        import sys
        class _Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {packages!r}:
                    raise ImportError(name + " is blocked in this test")
        sys.meta_path.insert(0, _Blocked())
    """)
