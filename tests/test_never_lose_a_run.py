"""Never lose a run: signals save, checkpoints survive kills, resume is exact, problems are one line."""

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
from safetensors.torch import load_file, save_file

import tiny_pix2pix
from i2i.cli import cli
from i2i.engine import train
from i2i.errors import I2IError
from tiny_pix2pix import copy_facades, needs_facades, tiny_config

TINY = [*tiny_pix2pix.TINY, "n_epochs=3", "n_epochs_decay=3", "save_every_minutes=0"]


def cfg(tmp_path: Path, **overrides):
    return tiny_config(TINY, **{"data": tmp_path / "facades", "out_dir": tmp_path / "runs", "name": "t", **overrides})


@pytest.fixture
def facades(tmp_path: Path) -> Path:
    return copy_facades(tmp_path / "facades", 6)


def final_weights(run: Path, tag: str = "final") -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / tag / "weights.safetensors"))


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def one_line(result, *needles: str) -> None:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert lines and lines[-1].startswith("Error:"), result.output
    for needle in needles:
        assert needle in lines[-1], result.output


# -- signals -----------------------------------------------------------------------------------------


@needs_facades
@pytest.mark.slow
@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 0), (signal.SIGTERM, 2)])
def test_a_signal_saves_and_the_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path: Path, facades: Path,
                                                                              sig: int, workers: int) -> None:
    settings = [f"num_workers={workers}", "ema_decay=0.9"]
    command = ["train", "pix2pix", "--data", str(facades), "--out-dir", str(tmp_path / "runs"), "--max-steps", "30",
               *sum((["--set", s] for s in TINY + settings), [])]
    assert CliRunner().invoke(cli, [*command, "--name", "full"]).exit_code == 0
    full = tmp_path / "runs" / "full"
    args = [sys.executable, "-m", "i2i.cli", *command, "--name", "cut"]
    # the same threads as this process: a different count may sum convolutions in another order
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs" / "cut" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "saved" in err and "--name cut" in err and "--resume" in err, err[-2000:]
    ckpts = tmp_path / "runs" / "cut" / "checkpoints"
    assert (ckpts / "latest").read_text().strip() == "interrupted"
    state = torch.load(ckpts / "interrupted" / "state.pt", weights_only=True)
    assert 3 <= state["step"] < 30
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--name", "cut", "--out-dir", str(tmp_path / "runs"), "--resume"])
    assert result.exit_code == 0, result.output
    assert same(final_weights(tmp_path / "runs" / "cut"), final_weights(full))
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(1, 31))  # each step once, though the signal came after records past the save


# -- kills -------------------------------------------------------------------------------------------


def test_a_kill_at_any_point_of_a_save_leaves_latest_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 can land between any two filesystem operations of a save: crash at each in turn."""
    import i2i.checkpoint as ck

    folder = tmp_path / "checkpoints"
    meta = {"format": 1, "main": "G", "generators": {}, "step": 0}

    def save(tag: str, value: float) -> None:
        ck.write_checkpoint(folder / tag, {"G.w": torch.full((2,), value)}, meta, {"step": int(value)})

    save("last", 1.0)
    ops = ["rename", "rmtree", "write_text", "replace", "save_file", "torch_save"]
    crashed_at = []
    for op in ops:
        for nth in range(3):
            calls = {"n": 0}

            class Killed(BaseException):
                pass

            def dying(real):
                def wrapper(*a, **k):
                    calls["n"] += 1
                    if calls["n"] > nth:
                        raise Killed
                    return real(*a, **k)
                return wrapper

            with monkeypatch.context() as m:
                if op == "rename":
                    m.setattr(Path, "rename", dying(Path.rename))
                elif op == "rmtree":
                    m.setattr(ck.shutil, "rmtree", dying(ck.shutil.rmtree))
                elif op == "write_text":
                    m.setattr(Path, "write_text", dying(Path.write_text))
                elif op == "replace":
                    m.setattr(ck.os, "replace", dying(ck.os.replace))
                elif op == "save_file":
                    m.setattr(ck, "save_file", dying(ck.save_file))
                else:
                    m.setattr(ck.torch, "save", dying(ck.torch.save))
                try:
                    save("last", 2.0 + nth)
                except Killed:
                    crashed_at.append((op, nth))
            weights = ck.resolve(folder)  # what `latest` names is complete and loadable
            value = float(load_file(str(weights))["G.w"][0])
            assert value in (1.0, 2.0, 3.0, 4.0)
            assert torch.load(weights.parent / "state.pt", weights_only=True)["step"] == int(value)
    # every operation of a save (save_file, torch.save, both renames, both rmtrees, the pointer and its replace)
    assert {op for op, _ in crashed_at} == set(ops) and len(crashed_at) >= 9


@needs_facades
@pytest.mark.slow
def test_kill_9_during_training_never_leaves_latest_unloadable(tmp_path: Path, facades: Path) -> None:
    import random

    from i2i.checkpoint import read_meta, resolve

    args = [sys.executable, "-m", "i2i.cli", "train", "pix2pix", "--data", str(facades), "--out-dir",
            str(tmp_path / "runs"), "--name", "k", "--max-steps", "400",
            *sum((["--set", s] for s in TINY + ["save_every=1", "keep_last=2", "log_every=1", "n_epochs=100"]), [])]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    ckpts = tmp_path / "runs" / "k" / "checkpoints"
    rng = random.Random(0)
    kills = 0
    for attempt in range(10):
        proc = subprocess.Popen(args + (["--resume"] if (ckpts / "latest").is_file() else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        metrics = tmp_path / "runs" / "k" / "metrics.jsonl"
        lines = lambda: len(metrics.read_text().splitlines()) if metrics.is_file() else 0  # noqa: E731
        before = lines()
        while time.monotonic() < deadline and proc.poll() is None and lines() < before + 2:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # somewhere in the middle of the next steps and saves
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err[-1500:]
        weights = resolve(tmp_path / "runs" / "k")
        assert read_meta(weights)["step"] >= 1
        load_file(str(weights))
        torch.load(weights.parent / "state.pt", weights_only=True)
    assert kills >= 8
    steps = sorted(p.name for p in ckpts.glob("step_*"))
    assert len(steps) <= 3  # keep_last=2, plus at most one the kill caught before its pruning


# -- resume ------------------------------------------------------------------------------------------


@needs_facades
def test_resuming_a_finished_run_says_so_and_extending_works(tmp_path: Path, facades: Path) -> None:
    run = train("pix2pix", cfg(tmp_path, max_steps=3))
    base = ["train", "pix2pix", "--name", "t", "--out-dir", str(tmp_path / "runs"), "--resume"]
    one_line(CliRunner().invoke(cli, base), "finished at step 3 of 3", "--max-steps")
    result = CliRunner().invoke(cli, [*base, "--max-steps", "5"])
    assert result.exit_code == 0, result.output
    assert torch.load(run / "checkpoints" / "final" / "state.pt", weights_only=True)["step"] == 5
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    # a run whose epochs ran out is extended with epochs, and says so
    ended = train("pix2pix", cfg(tmp_path, name="ended", n_epochs=1, n_epochs_decay=0))
    again = ["train", "pix2pix", "--name", "ended", "--out-dir", str(tmp_path / "runs"), "--resume"]
    one_line(CliRunner().invoke(cli, [*again, "--max-steps", "50"]), "finished at step 6 of 6", "more epochs")
    result = CliRunner().invoke(cli, [*again, "--set", "n_epochs=2"])
    assert result.exit_code == 0, result.output
    assert torch.load(ended / "checkpoints" / "final" / "state.pt", weights_only=True)["step"] == 12
    # --resume-from a finished checkpoint into a new name: the checkpoint is what is finished
    final = ended / "checkpoints" / "final"
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--name", "ended2", "--out-dir", str(tmp_path / "runs"),
                                      "--resume-from", str(final)])
    one_line(result, f"the checkpoint {final} is finished at step 12 of 12", "more epochs")
    assert "ended2" not in result.output.splitlines()[-1]


@needs_facades
def test_a_latest_naming_a_gone_folder_names_what_the_run_has(tmp_path: Path, facades: Path) -> None:
    import i2i

    run = train("pix2pix", cfg(tmp_path, max_steps=4, save_every=2))
    ckpts = run / "checkpoints"
    (ckpts / "latest").write_text("step_0009999\n")
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--name", "t", "--out-dir", str(tmp_path / "runs"),
                                      "--resume"])
    one_line(result, "latest names 'step_0009999', which is gone", "the run has: final, step_0000004, step_0000002",
             f"pass --resume-from {ckpts / 'final'}")
    # translate, i2i.load (eval, export, serve): the same line, no silent pick of another checkpoint
    for where in (run, ckpts):
        with pytest.raises(I2IError, match=r"which is gone; the run has: final, step_0000004, step_0000002; .*final"):
            i2i.load(where, device="cpu")
    from PIL import Image

    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    result = CliRunner().invoke(cli, ["translate", str(tmp_path / "a.png"), "--checkpoint", str(run),
                                      "--out", str(tmp_path / "out")])
    one_line(result, "which is gone", "the run has: final, step_0000004", str(ckpts / "final"))
    (ckpts / "final").rename(ckpts / "last")  # "last" (an epoch's end) is the one to go on from when there is one
    one_line(CliRunner().invoke(cli, ["train", "pix2pix", "--name", "t", "--out-dir", str(tmp_path / "runs"),
                                      "--resume"]), "the run has: last, step_0000004", str(ckpts / "last"))


@needs_facades
def test_a_new_run_never_overwrites_an_old_one(tmp_path: Path, facades: Path) -> None:
    args = ["train", "pix2pix", "--data", str(facades), "--out-dir", str(tmp_path / "runs"), "--max-steps", "2",
            *sum((["--set", s] for s in TINY), [])]
    assert CliRunner().invoke(cli, args).exit_code == 0
    before = (tmp_path / "runs" / "pix2pix_facades" / "metrics.jsonl").read_text()
    one_line(CliRunner().invoke(cli, args), "holds a run already", "--resume", "--name")
    assert (tmp_path / "runs" / "pix2pix_facades" / "metrics.jsonl").read_text() == before
    # a recipe of its own gets a folder of its own: the quick recipe never replaces the paper's run
    from i2i.cli import _default_name

    assert _default_name("pix2pix", "facades", "pix2pix_facades_quick") == "pix2pix_facades_quick"
    assert _default_name("pix2pix", "/data/facades", None) == "pix2pix_facades"


@needs_facades
def test_metrics_of_a_killed_run_are_not_repeated(tmp_path: Path, facades: Path) -> None:
    run = train("pix2pix", cfg(tmp_path, max_steps=4, save_every=2))
    metrics = run / "metrics.jsonl"
    # what a kill after step 4 leaves: records past the checkpoint step_0000002, and half a line
    with metrics.open("a") as f:
        f.write('{"step": 5, "epoch": 0')
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--name", "t", "--out-dir", str(tmp_path / "runs"),
                                      "--resume-from", str(run / "checkpoints" / "step_0000002"), "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


@needs_facades
def test_pruning_keeps_exactly_what_it_promises(tmp_path: Path, facades: Path) -> None:
    run = train("pix2pix", cfg(tmp_path, max_steps=9, save_every=1, keep_last=2))
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["final", "last", "latest", "step_0000008", "step_0000009"]
    from i2i.checkpoint import prune

    assert prune(run / "checkpoints", 0) == []  # 0 keeps all
    (run / "checkpoints" / "latest").write_text("step_0000008\n")  # never the one latest names
    assert prune(run / "checkpoints", 1) == []


def test_pruning_sweeps_what_killed_saves_and_prunes_left(tmp_path: Path) -> None:
    from i2i.checkpoint import prune

    ckpts = tmp_path / "checkpoints"
    for name in ["step_0000003", "step_0000004", "step_0000001.old", "step_0000004.old", "step_0000005.tmp",
                 "step_0000002.old", "best.tmp"]:
        (ckpts / name).mkdir(parents=True)
        (ckpts / name / "model.safetensors").write_bytes(b"x")
    (ckpts / "latest").write_text("step_0000002\n")  # its folder is gone: step_0000002.old is the fallback
    prune(ckpts, 2)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.tmp", "latest", "step_0000002.old",
                                                       "step_0000003", "step_0000004"]


# -- checkpoint problems: one line each --------------------------------------------------------------


@needs_facades
def test_checkpoint_problems_are_one_line(tmp_path: Path, facades: Path) -> None:
    run = train("pix2pix", cfg(tmp_path, max_steps=2))
    good = run / "checkpoints" / "final"

    def variant(name: str) -> Path:
        import shutil

        dest = tmp_path / "bad" / name
        shutil.copytree(good, dest)
        return dest

    def resume(path: Path, *extra: str):
        return CliRunner().invoke(cli, ["train", "pix2pix", "--name", "r", "--out-dir", str(tmp_path / "runs"),
                                        "--resume-from", str(path), "--max-steps", "4", *extra])

    damaged = variant("damaged")
    (damaged / "state.pt").write_bytes(b"PK\x03\x04 not a zip")
    one_line(resume(damaged), "state.pt is damaged", "another checkpoint")
    # plain garbage bytes are damaged, not "unsafe": only a pickle that needs code is
    garbage = variant("garbage")
    (garbage / "state.pt").write_bytes(b"not a pickle at all" * 10)
    result = resume(garbage)
    one_line(result, "state.pt is damaged or truncated", "another checkpoint")
    assert "unsafe" not in result.output and "plain tensors" not in result.output
    # a truncated state.pt: our words, never torch's sentence cut in the middle
    truncated_state = variant("truncated_state")
    data = (truncated_state / "state.pt").read_bytes()
    (truncated_state / "state.pt").write_bytes(data[: len(data) // 2])
    result = resume(truncated_state)
    one_line(result, "state.pt is damaged or truncated", "checkpoints/last")
    assert "likelihood" not in result.output and "miniz" not in result.output
    unsafe = variant("unsafe")
    torch.save({"step": 2, "where": Path("/tmp")}, unsafe / "state.pt")
    result = resume(unsafe)
    one_line(result, "unsafe", "pathlib")
    assert "weights_only=False" not in result.output and "damaged" not in result.output
    nostate = variant("nostate")
    (nostate / "state.pt").unlink()
    one_line(resume(nostate), "has no state.pt")
    renamed = variant("renamed")
    tensors = load_file(str(renamed / "weights.safetensors"))
    from safetensors import safe_open

    with safe_open(str(good / "weights.safetensors"), framework="pt") as f:
        metadata = f.metadata()
    key = next(k for k in tensors if k.startswith("G."))
    tensors["G.renamed"] = tensors.pop(key)
    save_file(tensors, str(renamed / "weights.safetensors"), metadata=metadata)
    one_line(resume(renamed), "missing keys", "unexpected keys: renamed", "not from this architecture/settings",
             "another checkpoint")
    shaped = variant("shaped")
    tensors = load_file(str(good / "weights.safetensors"))
    key = next(k for k in tensors if k.startswith("G.") and tensors[k].ndim == 4)
    tensors[key] = torch.zeros(1, 1, 1, 1)
    save_file(tensors, str(shaped / "weights.safetensors"), metadata=metadata)
    one_line(resume(shaped), "shape mismatch", "not from this architecture/settings", "another checkpoint")
    # other settings for the networks: said first, with what to do; the key detail stays short
    result = resume(good, "--set", "generator_kwargs.ngf=16")
    one_line(result, "the checkpoint's G is unet_", "ngf=", "drop --set generator_kwargs.ngf=16", "--name",
             "shape mismatch")
    result = resume(good, "--set", "generator=resnet_6blocks")
    one_line(result, "the checkpoint's G is unet_", "this run asks for resnet_6blocks",
             "drop --set generator=resnet_6blocks", "start a new run with --name", "missing")
    assert len(result.output.splitlines()[-1]) < 500, result.output
    truncated = variant("truncated")
    data = (truncated / "weights.safetensors").read_bytes()
    (truncated / "weights.safetensors").write_bytes(data[: len(data) // 2])
    one_line(resume(truncated), "weights.safetensors")
    one_line(CliRunner().invoke(cli, ["train", "cyclegan", "--resume-from", str(good)]), "trained with 'pix2pix'")


# -- the CPU is honest about time --------------------------------------------------------------------


@needs_facades
def test_the_expected_duration_is_said_from_the_first_steps(tmp_path: Path, facades: Path, capsys) -> None:
    train("pix2pix", cfg(tmp_path, max_steps=17))
    err = capsys.readouterr().err
    assert "s/step here: 2 steps to go take about" in err and "GPU-sized" not in err
    # the full recipe on this CPU: thousands of steps of seconds each
    from i2i.engine.logs import RunLog
    from i2i.engine.trainer import Trainer

    trainer = Trainer("pix2pix", cfg(tmp_path, name="long", n_epochs=100, n_epochs_decay=100, device="cpu"))
    said: list[str] = []
    log = RunLog(tmp_path, trainer.total_steps, 0, enabled=False)
    log.info = said.append  # type: ignore[method-assign]
    trainer._say_duration(log, 10.0)  # 1200 steps
    assert "steps to go take about" in said[0] and "GPU-sized job on this CPU" in said[1]
    assert "--config pix2pix_facades_quick" in said[1]
