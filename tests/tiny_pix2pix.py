"""The tiny pix2pix the engine tests train: unet_128 with 8 filters on 128x128 crops of real facades."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"
needs_facades = pytest.mark.skipif(not FACADES.is_dir(), reason="../shared/datasets/facades not present")

#: the tiny network and crops, as ``--set`` settings
TINY = ["generator=unet_128", "generator_kwargs.ngf=8", "discriminator_kwargs.ndf=8", "load_size=136",
        "crop_size=128", "num_workers=0", "log_every=1"]


def copy_facades(root: Path, n: int) -> Path:
    """The first ``n`` real facades training images in ``root/train``; returns ``root``."""
    dest = root / "train"
    dest.mkdir(parents=True)
    for f in sorted((FACADES / "train").iterdir())[:n]:
        shutil.copy(f, dest / f.name)
    return root


def tiny_config(settings: list[str], **values: Any):
    """A Pix2PixConfig from ``--set``-style ``settings`` and then ``values`` (paths as strings)."""
    from i2i.config import build, parse_overrides
    from i2i_pix2pix.method import Pix2PixConfig

    merged = parse_overrides(settings)
    merged.update({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})
    return build(Pix2PixConfig, overrides=merged)
