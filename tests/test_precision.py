"""Mixed precision and the speed switches, exercised on the CPU (CI has no GPU).

CUDA is where fp16/bf16 pay off, but the code around them is device-agnostic: precision
resolution, autocast, the GradScaler (torch has one for the CPU too), channels_last. These tests
run those paths for real on tiny networks; the CUDA runs themselves are recorded in BENCHMARKS.md
when a GPU is available.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from i2i.config import TrainConfig
from i2i.engine import train
from i2i.engine.precision import make_scaler, resolve_precision
from i2i.engine.trainer import Group
from i2i.errors import I2IError

import tiny_pix2pix
from tiny_pix2pix import copy_facades, needs_facades, tiny_config

TINY = [*tiny_pix2pix.TINY, "threads=1"]


@pytest.fixture
def two_facades(tmp_path: Path) -> Path:
    return copy_facades(tmp_path / "facades", 2)


def run(tmp_path: Path, data: Path, name: str, *extra: str) -> Path:
    return train("pix2pix", tiny_config([*TINY, *extra], data=data, out_dir=tmp_path / "runs", name=name, device="cpu"))


def test_precision_resolution() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.warns(UserWarning, match="meant for CUDA"):
        assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(I2IError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", cpu)
    assert make_scaler(cpu, "fp16").is_enabled()
    assert not make_scaler(cpu, "bf16").is_enabled() and not make_scaler(cpu, "fp32").is_enabled()


def test_scaler_skips_an_overflowing_step_and_backs_off() -> None:
    """The fp16 path: scaled backward, unscale + clip, a step skipped on inf gradients, the scale halved."""
    torch.manual_seed(0)
    net = nn.Linear(4, 1)
    cfg = TrainConfig()
    group = Group("G", [net], 0.1, cfg, torch.device("cpu"), "fp16")
    start_scale = group.scaler.get_scale()
    x = torch.randn(8, 4)

    before = [p.detach().clone() for p in net.parameters()]
    group.step({"loss": net(x).pow(2).mean()}, grad_clip=1.0)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # a real step was taken
    assert group.scaler.get_scale() == start_scale

    # A finite loss whose gradient overflows: the scaler sees inf and skips the optimizer step.
    before = [p.detach().clone() for p in net.parameters()]
    huge = (net(x) * 1e36).sum()  # finite, but times the loss scale (65536) it overflows
    assert torch.isfinite(huge)
    group.step({"loss": huge}, grad_clip=0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert group.scaler.get_scale() == start_scale / 2
    assert group.read()["skipped"] == 0  # a scaler back-off is not a non-finite loss


@needs_facades
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_training_runs_and_resumes(tmp_path: Path, two_facades: Path, precision: str) -> None:
    with pytest.warns(UserWarning, match="meant for CUDA"):
        run_dir = run(tmp_path, two_facades, precision, f"precision={precision}", "max_steps=2")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["G_L1"])) for r in records)
    state = torch.load(run_dir / "checkpoints" / "final" / "state.pt", weights_only=True)
    scaler = state["groups"]["G"]["scaler"]
    assert bool(scaler) == (precision == "fp16")  # the fp16 loss scale is saved for an exact resume
    from i2i.engine import Trainer

    cfg = tiny_config([*TINY, f"precision={precision}"], data=two_facades, out_dir=tmp_path / "runs", name=precision,
                      device="cpu")
    with pytest.warns(UserWarning, match="meant for CUDA"):
        resumed = Trainer("pix2pix", cfg, resume_from=run_dir / "checkpoints" / "final")
    assert resumed.step == 2
    if precision == "fp16":
        assert resumed.groups["G"].scaler.get_scale() == scaler["scale"]


@needs_facades
def test_channels_last_matches_contiguous(tmp_path: Path, two_facades: Path) -> None:
    """channels_last changes the memory layout, not the maths: the same run gives (nearly) the same weights.

    Dropout is off: its masks are drawn in memory order, so they differ between layouts.
    """
    from safetensors.torch import load_file

    common = ("max_steps=2", "generator_kwargs.use_dropout=false")
    a = load_file(str(run(tmp_path, two_facades, "contiguous", *common) / "checkpoints/final/weights.safetensors"))
    b = load_file(str(run(tmp_path, two_facades, "nhwc", *common, "channels_last=true")
                      / "checkpoints/final/weights.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst < 1e-3, worst
