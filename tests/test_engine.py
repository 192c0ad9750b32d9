"""The shared engine, driven through pix2pix on real facades at tiny size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from i2i.cli import cli
from i2i.engine import train
from i2i.errors import I2IError

import tiny_pix2pix
from tiny_pix2pix import copy_facades, needs_facades, tiny_config

#: the tiny pix2pix, one epoch then one of decay
TINY = [*tiny_pix2pix.TINY, "n_epochs=1", "n_epochs_decay=1"]


def tiny_cfg(tmp_path: Path, **overrides):
    return tiny_config(TINY, **{"data": tmp_path / "facades", "out_dir": tmp_path / "runs", "name": "t", **overrides})


@pytest.fixture
def small_facades(tmp_path: Path) -> Path:
    """Six real facades images (train split) so an epoch is six steps."""
    return copy_facades(tmp_path / "facades", 6)


def weights(run: Path, tag: str = "final") -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / tag / "weights.safetensors"))


@needs_facades
@pytest.mark.parametrize("workers", [0, 2])  # 2: the default loader (worker processes, persistent)
def test_resume_is_bitwise_exact(tmp_path: Path, small_facades: Path, workers: int) -> None:
    # Uninterrupted: 9 steps (an epoch boundary, an LR change, EMA, dropout, random crops).
    full = train("pix2pix", tiny_cfg(tmp_path, name="full", max_steps=9, ema_decay=0.9, num_workers=workers))
    # Interrupted mid-epoch at step 4, then resumed from its checkpoint to step 9.
    part = train("pix2pix", tiny_cfg(tmp_path, name="part", max_steps=4, ema_decay=0.9, num_workers=workers))
    resumed = train("pix2pix", tiny_cfg(tmp_path, name="part", max_steps=9, ema_decay=0.9, num_workers=workers),
                    resume_from=part / "checkpoints" / "final")
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and any(k.startswith("ema.G.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 10))


@needs_facades
def test_resume_is_bitwise_exact_by_iterations(tmp_path: Path, small_facades: Path) -> None:
    """An iteration schedule (warm-up, then milestones), RMSprop (no fused kernel: its skip is the
    torch.where path) and d_steps=2, cut at step 5."""
    settings = dict(lr_unit="iter", n_iters=9, n_epochs=100, n_epochs_decay=100, lr_policy="step",
                    lr_milestones=[4, 7], lr_warmup=2, optimizer="rmsprop", d_steps=2, ema_decay=0.9)
    full = train("pix2pix", tiny_cfg(tmp_path, name="full", **settings))
    part = train("pix2pix", tiny_cfg(tmp_path, name="part", max_steps=5, **settings))
    resumed = train("pix2pix", tiny_cfg(tmp_path, name="part", **settings), resume_from=part / "checkpoints" / "final")
    a, b = weights(full), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed run differs"
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 10))  # 9 iterations: the length is n_iters
    assert [r["lr"] for r in records][2:] == pytest.approx([2e-4, 2e-4, 1e-4, 1e-4, 1e-4, 5e-5, 5e-5])


@needs_facades
def test_run_directory_contents(tmp_path: Path, small_facades: Path) -> None:
    run = train("pix2pix", tiny_cfg(tmp_path, max_steps=7, sample_every=3, save_every=5))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["final", "last", "latest", "step_0000005"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "final"
    assert (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000003.png", "step_0000006.png", "step_0000007.png"]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("step", "epoch", "lr", "D_fake", "D_real", "G_GAN", "G_L1", "data_time", "compute_time", "images_per_s"):
        assert key in record
    from i2i.checkpoint import read_meta

    meta = read_meta(run / "checkpoints" / "final" / "weights.safetensors")
    g = meta["generators"]["G"]
    assert (g["name"], g["kwargs"]["ngf"], g["size_multiple"], g["value_range"]) == ("unet_128", 8, 128, [-1.0, 1.0])
    assert meta["config"]["crop_size"] == 128 and meta["method"] == "pix2pix" and "i2i_pix2pix" in meta["plugins"]
    state = torch.load(run / "checkpoints" / "final" / "state.pt", weights_only=True)
    assert {"groups", "rng", "step", "epoch"} <= state.keys() and state["step"] == 7


@needs_facades
def test_nan_guard_skips_then_stops(tmp_path: Path, small_facades: Path, monkeypatch, capsys) -> None:
    from i2i_pix2pix.method import Pix2Pix

    real = Pix2Pix.generator_loss
    calls = {"n": 0}

    def poisoned(self, batch, out):
        calls["n"] += 1
        losses = real(self, batch, out)
        if calls["n"] == 2:  # one bad step is skipped and counted
            losses["G_L1"] = losses["G_L1"] * float("nan")
        return losses

    monkeypatch.setattr(Pix2Pix, "generator_loss", poisoned)
    run = train("pix2pix", tiny_cfg(tmp_path, max_steps=3))

    def strict(text: str) -> dict:  # NaN / Infinity are not JSON
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))

    records = [strict(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_steps"] for r in records] == [0, 1, 1]  # a running count: step 2 was skipped, training went on
    assert records[1]["G_L1"] is None and records[2]["G_L1"] is not None  # the skipped step's loss: null
    err = capsys.readouterr().err
    assert err.count("a loss is not finite") == 1 and "step 2:" in err  # warned once, when it happens
    assert "1 step(s) skipped for non-finite losses" in err

    monkeypatch.setattr(Pix2Pix, "generator_loss", lambda self, b, o: {"G_L1": torch.tensor(float("inf"), requires_grad=True)})
    with pytest.raises(I2IError, match="non-finite G losses in a row"):
        train("pix2pix", tiny_cfg(tmp_path, name="nan", max_steps=10, nan_limit=3))


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path), "--set", "lamda_l1=10"])
    assert result.exit_code != 0 and "unknown config key 'lamda_l1'" in result.output and "lambda_l1" in result.output
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path), "--set", "n_epochs=many"])
    assert result.exit_code != 0 and "'n_epochs' expects int" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path), "--config", str(bad)])
    assert result.exit_code != 0 and "not valid YAML" in result.output
    result = runner.invoke(cli, ["train", "pix2pixx", "--data", str(tmp_path)])
    assert result.exit_code != 0 and "did you mean: pix2pix" in result.output
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "Traceback" not in result.output


@pytest.mark.parametrize("setting, said", [
    ("generator_kwargs.ngf=0", "has an empty layer"),              # builds, then fails in its first forward
    ("generator_kwargs.ngf=-3", "cannot be built with ngf=-3"),     # the constructor raises
    ("discriminator_kwargs.ndf=0", "discriminator 'patch_70'"),
])
def test_network_kwargs_that_cannot_build_are_one_line(tmp_path: Path, setting: str, said: str) -> None:
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(tmp_path), "--set", setting])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output and lines[-1].startswith("Error:"), result.output
    assert said in lines[-1] and ("generator_kwargs" in lines[-1] or "discriminator_kwargs" in lines[-1]), lines[-1]


def test_unfitting_crop_is_a_clear_error(tmp_path: Path) -> None:
    from i2i.engine import build_method

    with pytest.raises(I2IError, match="crop_size 100 does not fit unet_256"):
        build_method("pix2pix", tiny_cfg(tmp_path, generator="unet_256", crop_size=100))


@needs_facades
def test_ddp_gloo_two_processes(tmp_path: Path, small_facades: Path) -> None:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "i2i.cli", "train", "pix2pix", "--data", str(small_facades), "--out-dir", str(tmp_path / "runs"),
           "--name", "ddp", "--max-steps", "2", "--device", "cpu", *sum((["--set", s] for s in TINY), [])]
    # Its own session, so a hang kills the workers too, not only the torchrun launcher.
    launcher = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        stdout, stderr = launcher.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        raise
    proc = subprocess.CompletedProcess(cmd, launcher.returncode, stdout, stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    assert "2 processes" in proc.stderr and proc.stdout.count("run folder:") == 1  # rank 0 speaks
    # 6 images over 2 ranks: 3 steps per epoch per rank
    assert "3 steps/epoch" in proc.stderr
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]  # written once, by rank 0
    assert weights(run)["G.model.model.0.weight"].abs().sum() > 0


def _workers(launcher: subprocess.Popen) -> dict[int, int]:
    """RANK -> pid of the torchrun launcher's worker processes (read from their environment)."""
    ranks = {}
    for pid in subprocess.run(["pgrep", "-P", str(launcher.pid)], capture_output=True, text=True).stdout.split():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        rank = next((e.split(b"=", 1)[1] for e in env if e.startswith(b"RANK=")), None)
        if rank is not None:
            ranks[int(rank)] = int(pid)
    return ranks


@needs_facades
@pytest.mark.slow
@pytest.mark.parametrize("target, log_every", [("rank 1", 1), ("launcher", 50)])
def test_ddp_a_signal_stops_every_rank_and_rank_0_saves(tmp_path: Path, small_facades: Path, target: str,
                                                        log_every: int) -> None:
    """Slurm or Kubernetes may signal any one process, or torchrun, which forwards the signal and kills
    its workers 30 s later: the ranks agree within seconds (not at the next of every 50 log steps), stop
    at the same step, and rank 0 writes `interrupted`, which resumes."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    settings = [*TINY, "n_epochs=200", "save_every_minutes=0", f"log_every={log_every}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "i2i.cli", "train", "pix2pix", "--data", str(small_facades), "--out-dir", str(tmp_path / "runs"),
           "--name", "ddp", "--max-steps", "400", "--device", "cpu", *sum((["--set", s] for s in settings), [])]
    launcher = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    run = tmp_path / "runs" / "ddp"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and launcher.poll() is None:  # a few steps in
            if (run / "metrics.jsonl").is_file() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3:
                break
            if log_every > 1 and (run / "config.yaml").is_file():  # training has started: let it take some steps
                time.sleep(3)
                break
            time.sleep(0.05)
        ranks = _workers(launcher)
        assert sorted(ranks) == [0, 1], ranks
        started = time.monotonic()
        os.kill(ranks[1] if target == "rank 1" else launcher.pid, signal.SIGTERM)
        _, stderr = launcher.communicate(timeout=240)
        assert time.monotonic() - started < 30, stderr[-3000:]  # before torchrun's kill
    except BaseException:
        os.killpg(launcher.pid, signal.SIGKILL)
        raise
    assert launcher.returncode != 0, stderr[-3000:]
    said = "a signal on another rank at step" if target == "rank 1" else "SIGTERM at step"
    assert said in stderr and "--resume" in stderr and "forcefully" not in stderr, stderr[-3000:]
    ckpts = run / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "interrupted"
    step = torch.load(ckpts / "interrupted" / "state.pt", weights_only=True)["step"]
    assert 1 <= step < 400
    if log_every == 1:
        steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, step + 1))  # every rank stopped at that step
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--name", "ddp", "--out-dir", str(tmp_path / "runs"),
                                      "--resume", "--max-steps", str(step + 2), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"resuming from step {step} " in result.output and "checkpoints/interrupted" in result.output
    assert torch.load(ckpts / "final" / "state.pt", weights_only=True)["step"] == step + 2


@needs_facades
def test_a_second_signal_aborts_at_once_in_one_line(tmp_path: Path, small_facades: Path) -> None:
    """The first signal asks for a save after the step; a second one aborts: one line and the signal's
    exit status (click's 'Aborted!' and status 1 before)."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cmd = [sys.executable, "-m", "i2i.cli", "train", "pix2pix", "--data", str(small_facades), "--out-dir",
           str(tmp_path / "runs"), "--name", "t", "--max-steps", "400", *sum((["--set", s] for s in TINY), [])]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    metrics = tmp_path / "runs" / "t" / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None and not (metrics.is_file() and metrics.read_text()):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)  # another signal (two of one kind may reach a process as one)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "i2i: a second signal (SIGTERM): aborted at once" in err and "Aborted!" not in err, err[-2000:]
    assert "Traceback" not in err and not (tmp_path / "runs" / "t" / "checkpoints" / "interrupted").exists()


def test_under_ddp_ranks_check_for_a_signal_every_few_seconds_not_every_log_step() -> None:
    """torchrun kills its workers 30 s after forwarding a signal: at 1.5 s a step the ranks must agree
    every ~6 steps, not every 50 (log_every), or a slow run is killed before it saves."""
    from types import SimpleNamespace

    from i2i.engine.distributed import DistInfo
    from i2i.engine.trainer import STOP_CHECK_SECONDS, Trainer

    fake = SimpleNamespace(cfg=SimpleNamespace(log_every=50), dist=DistInfo(), device=torch.device("cpu"))
    assert STOP_CHECK_SECONDS <= 15
    assert Trainer._agree_stop_every(fake, 1.5) == int(STOP_CHECK_SECONDS / 1.5)
    assert Trainer._agree_stop_every(fake, 0.01) == 50      # never less often than at log steps
    assert Trainer._agree_stop_every(fake, 120.0) == 1      # a step longer than the budget: every step


def test_step_lr_policy_factors_and_errors() -> None:
    from i2i.engine.schedule import lr_lambda

    factor = lr_lambda("step", 0, 0, [2, 4], 0.5)
    assert [factor(e) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    linear = lr_lambda("linear", 2, 2)
    assert [round(linear(e), 4) for e in range(4)] == [1.0, 1.0, 0.6667, 0.3333]
    for milestones, gamma in (([], 0.5), ([3, 2], 0.5), ([0, 2], 0.5), ([2], 0.0)):
        with pytest.raises(I2IError, match="lr_milestones|lr_gamma"):
            lr_lambda("step", 0, 0, milestones, gamma)


@needs_facades
def test_step_lr_policy_in_a_run(tmp_path: Path, small_facades: Path) -> None:
    """Three epochs of two steps, the lr divided by 10 from the second epoch on (as the SRGAN recipe)."""
    run = train("pix2pix", tiny_cfg(tmp_path, name="step", lr_policy="step", lr_milestones=[1], lr_gamma=0.1,
                                     n_epochs=3, n_epochs_decay=0, max_steps=6, batch_size=3))
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-5, 2e-5, 2e-5, 2e-5])
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(small_facades), "--out-dir", str(tmp_path / "r"),
                                      "--set", "lr_policy=step"])
    assert result.exit_code != 0 and "lr_milestones" in result.output and "Traceback" not in result.output
