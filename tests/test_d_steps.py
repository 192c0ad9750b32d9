"""Critic steps per generator step (d_steps) and D-only warm-up (d_warmup_steps), counted on the
optimizers themselves, in a tiny pix2pix on real facades."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import tiny_pix2pix
from i2i.engine import Trainer
from i2i.errors import I2IError
from tiny_pix2pix import copy_facades, needs_facades, tiny_config

TINY = [*tiny_pix2pix.TINY, "n_epochs=2", "n_epochs_decay=0", "save_every_minutes=0", "sample_every=0"]


def cfg(tmp_path: Path, **overrides):
    return tiny_config(TINY, **{"data": tmp_path / "facades", "out_dir": tmp_path / "runs", "name": "t", **overrides})


@needs_facades
def test_d_steps_and_warmup_count_optimizer_steps(tmp_path: Path) -> None:
    copy_facades(tmp_path / "facades", 6)
    trainer = Trainer("pix2pix", cfg(tmp_path, d_steps=3, d_warmup_steps=2, max_steps=8, ema_decay=0.9))
    calls = {"G": 0, "D": 0}
    for name, group in trainer.groups.items():
        group.optimizer.register_step_post_hook(lambda opt, args, kwargs, name=name: calls.__setitem__(name, calls[name] + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # G's schedule steps during the D-only warm-up without torch's warning
        run = trainer.fit()
    # D every iteration (8); G at iterations 5 and 8: after 2 D-only ones, then every third
    assert calls == {"D": 8, "G": 2}
    steps = {name: {int(s["step"]) for s in g.optimizer.state.values()} for name, g in trainer.groups.items()}
    assert steps == {"D": {8}, "G": {2}}  # the fused kernels' own step counts agree
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "G_GAN" in r] == [5, 8]  # G's losses are logged when G steps
    assert all("D_fake" in r for r in records)


def test_bad_or_unusable_d_steps_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="d_steps must be >= 1"):
        Trainer("pix2pix", cfg(tmp_path, d_steps=0))
    from i2i.config import build
    from i2i_srgan.method import SRResNetConfig

    with pytest.raises(I2IError, match="d_steps and d_warmup_steps need a discriminator; srresnet trains none"):
        Trainer("srresnet", build(SRResNetConfig, overrides={"data": str(tmp_path), "d_warmup_steps": 10}))
