"""The mode-collapse monitor (i2i/engine/monitor.py): a collapsed generator reads ~0, one that varies
as the data does reads 1; in a run it is logged with the losses and warned about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tiny_pix2pix
from i2i.engine import train
from i2i.engine.monitor import DiversityMonitor
from tiny_pix2pix import copy_facades, needs_facades, tiny_config


def test_identity_reads_one_and_a_constant_reads_zero() -> None:
    torch.manual_seed(0)
    real = torch.rand(6, 3, 64, 64) * 2 - 1
    same = DiversityMonitor()
    same.add(real.clone(), real)
    assert float(same.value()) == pytest.approx(1.0)
    collapsed = DiversityMonitor()
    collapsed.add(torch.full_like(real, 0.3), real)
    assert float(collapsed.value()) == 0.0
    half = DiversityMonitor()  # outputs that vary half as much as the data
    half.add(real * 0.5, real)
    assert float(half.value()) == pytest.approx(0.5)


def test_batch_size_one_collects_over_steps_in_a_ring() -> None:
    monitor = DiversityMonitor(size=4)
    monitor.add(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    assert monitor.value() is None  # one image has no pairwise distance
    for i in range(1, 7):
        monitor.add(torch.full((1, 3, 8, 8), float(i)), torch.full((1, 3, 8, 8), 2.0 * i))
    assert monitor.fake.shape[0] == 4 and float(monitor.fake[0, 0]) == 6.0  # the newest first, 4 kept
    assert float(monitor.value()) == pytest.approx(0.5)


def test_the_warning_needs_patience_and_is_said_once_per_stretch() -> None:
    monitor = DiversityMonitor(threshold=0.2, patience=3)
    said = [monitor.check(v, step) for step, v in enumerate([0.1, 0.1, 0.5, 0.1, 0.1, 0.1, 0.05, None, 0.1])]
    assert [i for i, s in enumerate(said) if s] == [5]
    assert "diversity 0.100" in said[5] and "step 5" in said[5]
    assert DiversityMonitor(threshold=0.0, patience=1).check(0.0, 1) is None  # 0: off


@needs_facades
def test_a_collapsed_generator_shows_in_metrics_and_is_warned(tmp_path: Path, monkeypatch, capsys) -> None:
    """In a run (the identity case is the unit test above: each run costs seconds)."""
    from i2i_pix2pix.method import Pix2Pix

    real_forward = Pix2Pix.forward

    def forward(self, batch):  # a generator that ignores its input: one constant image
        out = real_forward(self, batch)
        return {"fake_B": out["fake_B"] * 0 + 0.2}

    monkeypatch.setattr(Pix2Pix, "forward", forward)
    copy_facades(tmp_path / "facades", 6)
    cfg = tiny_config([*tiny_pix2pix.TINY, "n_epochs=1", "n_epochs_decay=0", "save_every_minutes=0"],
                      data=str(tmp_path / "facades"), out_dir=str(tmp_path / "runs"), name="c",
                      max_steps=4, diversity_patience=2, sample_every=0)
    run = train("pix2pix", cfg)
    values = [json.loads(line).get("diversity") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert values == [None, 0.0, 0.0, 0.0]  # batch 1: one image after the first step, then pairs
    err = capsys.readouterr().err
    assert err.count("the generator may be collapsing") == 1 and "step 3: diversity 0.000" in err


def test_a_method_without_an_output_target_pair_gets_no_monitor() -> None:
    class OneColumn:
        def diversity_images(self, batch, out):
            return [out["y"]][1], None  # a grid of one column: the default's second column is missing

    monitor = DiversityMonitor()
    monitor.collect(OneColumn(), {}, {"y": torch.zeros(2, 3, 8, 8)})
    assert monitor.off and monitor.value() is None


@needs_facades
def test_a_resumed_run_logs_the_same_diversity_and_warns_at_the_same_step(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    """The ring buffer and the low-interval count are in the checkpoint: after --resume the diversity
    column equals the uninterrupted run's (it was missing at the first step after resume, then
    different) and the warning comes at the same step (the count restarted)."""
    from i2i_pix2pix.method import Pix2Pix

    real_forward = Pix2Pix.forward

    def forward(self, batch):  # nearly collapsed: a constant image plus a little of the real output
        out = real_forward(self, batch)
        return {"fake_B": out["fake_B"] * 0.01 + 0.2}

    monkeypatch.setattr(Pix2Pix, "forward", forward)
    copy_facades(tmp_path / "facades", 6)

    def cfg(name: str, steps: int):
        return tiny_config([*tiny_pix2pix.TINY, "n_epochs=1", "n_epochs_decay=1", "save_every_minutes=0"],
                           data=str(tmp_path / "facades"), out_dir=str(tmp_path / "runs"), name=name,
                           max_steps=steps, diversity_patience=4, sample_every=0)

    def rows(run: Path) -> list:
        return [json.loads(line).get("diversity") for line in (run / "metrics.jsonl").read_text().splitlines()]

    full = train("pix2pix", cfg("full", 6))
    warned_full = capsys.readouterr().err
    part = train("pix2pix", cfg("part", 3))
    capsys.readouterr()
    resumed = train("pix2pix", cfg("part", 6), resume_from=part / "checkpoints" / "final")
    warned_resumed = capsys.readouterr().err
    assert rows(resumed) == rows(full) and rows(full)[3] is not None
    # below the threshold from step 2 (step 1 has one image): patience 4 warns at step 5, in both runs
    assert "step 5: diversity" in warned_full and "step 5: diversity" in warned_resumed
