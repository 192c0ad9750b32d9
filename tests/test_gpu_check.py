"""bench/gpu_check.sh and bench/gpu_check.py, on a machine without a GPU.

The shell script runs for real with a stand-in ``python`` (a recorder: ``PYTHON=...``) and a
stand-in ``nvidia-smi`` (``GPU_CHECK_NVIDIA_SMI=...``), so its order of stages, installs, failure
handling and no-GPU exit are checked without installing or training anything. The Python stages run
for real on the CPU at tiny sizes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "bench"))

import gpu_check  # noqa: E402


def _exe(path: Path, body: str) -> Path:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def _run(tmp_path: Path, smi: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The script with a recording ``python`` (its calls go to calls.log; FAIL=text fails calls containing it)."""
    python = _exe(tmp_path / "python", f"""
echo "$*" >> {tmp_path}/calls.log
[ "$1" = - ] && cat > /dev/null
if [ -n "${{FAIL:-}}" ] && [[ "$*" == *"$FAIL"* ]]; then exit 3; fi
if [ "$1" = -c ] && [ -n "${{ORT:-}}" ]; then echo "$ORT"; fi
exit 0
""")
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHON": str(python), "GPU_CHECK_NVIDIA_SMI": smi, **env})


def _calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("smi", ["missing", "fails", "silent"])
def test_no_gpu_is_one_line_and_installs_nothing(tmp_path: Path, smi: str) -> None:
    command = {"missing": str(tmp_path / "no-such-nvidia-smi"),
               "fails": str(_exe(tmp_path / "nvidia-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9\n")),
               "silent": str(_exe(tmp_path / "nvidia-smi", "exit 0\n"))}[smi]
    res = _run(tmp_path, command)
    assert res.returncode == 2
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("gpu_check: no NVIDIA GPU here")
    assert _calls(tmp_path) == []  # not even python ran: nothing was installed


def test_this_machine_without_gpu() -> None:
    """As a user runs it here (no stand-ins): one line, non-zero."""
    if subprocess.run(["bash", "-c", "command -v nvidia-smi && nvidia-smi -L"], capture_output=True).returncode == 0:
        pytest.skip("this machine has an NVIDIA GPU")
    res = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stdout == "" and "no NVIDIA GPU" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_stages_in_order_with_installs(tmp_path: Path) -> None:
    gpu = str(_exe(tmp_path / "nvidia-smi", "echo 'GPU 0: NVIDIA H200 (UUID: GPU-x)'\n"))
    res = _run(tmp_path, gpu, ORT="onnxruntime")
    assert res.returncode == 0, res.stdout + res.stderr
    calls = _calls(tmp_path)
    pip = [c for c in calls if c.startswith("-m pip")]
    # the CPU onnxruntime goes first (it shares its directory with onnxruntime-gpu), then the [gpu] extra
    assert pip == ["-m pip uninstall -y -q onnxruntime", "-m pip install -q -e .[gpu] pytest>=8"]
    assert calls.index("-") > calls.index("-m pip install -q -e .[gpu] pytest>=8")  # torch's CUDA checked after
    assert [c for c in calls if c.startswith(("-m pytest", "bench/"))] == [
        "-m pytest -q -m cuda -p no:cacheprovider tests",
        "bench/gpu_check.py steps --method pix2pix --iters 10 --rounds 3",
        "bench/gpu_check.py steps --method cyclegan --iters 5 --rounds 3",
        "bench/gpu_check.py onnx",
    ]
    assert "1 GPU(s)" in res.stdout
    assert res.stdout.strip().splitlines()[-1].startswith("gpu_check: all stages passed in")
    for name in ("CUDA tests (pytest -m cuda)", "pix2pix step times", "CycleGAN step times", "onnxruntime vs PyTorch"):
        assert f"=== {name}: done in" in res.stdout


def test_a_failed_stage_does_not_stop_the_others(tmp_path: Path) -> None:
    gpu = str(_exe(tmp_path / "nvidia-smi", "echo 'GPU 0: A'; echo 'GPU 1: B'\n"))
    res = _run(tmp_path, gpu, GPU_CHECK_INSTALL="0", FAIL="--method pix2pix")
    assert res.returncode == 1
    assert not [c for c in _calls(tmp_path) if "pip" in c]  # GPU_CHECK_INSTALL=0: nothing installed
    assert "2 GPU(s)" in res.stdout and "=== pix2pix step times: failed (exit 3)" in res.stdout
    assert "=== onnxruntime vs PyTorch: done in" in res.stdout
    assert res.stdout.strip().splitlines()[-1].endswith("failed: pix2pix step times")


def test_torch_without_cuda_stops_after_the_install(tmp_path: Path) -> None:
    gpu = str(_exe(tmp_path / "nvidia-smi", "echo 'GPU 0: A'\n"))
    res = _run(tmp_path, gpu, GPU_CHECK_INSTALL="0", FAIL="-")
    assert res.returncode == 2 and "torch sees no CUDA GPU" in res.stderr
    assert not [c for c in _calls(tmp_path) if c.startswith(("-m pytest", "bench/"))]


# -- the Python stages, small, on the CPU ----------------------------------------------------------

def _table(out: str) -> dict[str, list[str]]:
    """Rows of the table printed last, by their first column(s) (split on 2+ spaces)."""
    import re

    lines = out.strip().splitlines()
    rule = max(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    return {" | ".join(cells[:-3]) if len(cells) > 4 else cells[0]: cells[-3:]
            for cells in (re.split(r"\s{2,}", line.strip()) for line in lines[rule + 1:])}


@pytest.mark.skipif(not (gpu_check.METHODS["pix2pix"] / "train").is_dir(),
                    reason="../shared/datasets/facades not present (the steps stage copies a few of its images)")
def test_steps_table_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["steps", "--method", "pix2pix", "--device", "cpu", "--precisions", "fp32", "--size", "32",
                           "--iters", "1", "--rounds", "1", "--warmup", "1", "--set", "generator=resnet_6blocks",
                           "--set", "generator_kwargs.ngf=8", "--set", "discriminator_kwargs.ndf=8"]) == 0
    out = capsys.readouterr().out
    assert "pix2pix training step, 32x32, batch 1" in out
    rows = _table(out)
    assert set(rows) == {"reference replica (fp32)", "i2i engine (fp32)"}
    assert rows["reference replica (fp32)"][-1] == "1.00x"
    assert float(rows["i2i engine (fp32)"][0]) > 0 and rows["i2i engine (fp32)"][-1].endswith("x")


def test_onnx_table_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["onnx", "--device", "cpu", "--models", "resnet_9blocks", "--tiny", "--size", "32",
                           "--repeat", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("resnet_9blocks")]
    assert [line.split("  ")[1].strip() for line in lines] == \
        ["PyTorch eager fp32", "onnxruntime CPU fp32", "onnxruntime CPU fp16"]
    fp32_diff, fp16_diff = (float(line.split()[-1]) for line in lines[1:])
    assert fp32_diff < 1e-4 and fp16_diff < 5e-2  # checked outputs: a fast wrong graph cannot pass


@pytest.mark.parametrize("argv, message", [
    (["steps", "--device", "cuda"], "torch sees no CUDA GPU here"),
    (["onnx", "--device", "cuda:0"], "torch sees no CUDA GPU here"),
    (["steps", "--device", "cpu", "--iters", "0"], "--iters must be positive"),
    (["steps", "--device", "cpu", "--precisions", "fp8"], "--precisions: choose from fp32, fp16, bf16"),
    (["onnx", "--device", "cpu", "--models", "nosuchnet", "--tiny"], "nosuchnet"),
])
def test_arguments_are_checked(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from i2i.errors import I2IError

    if "cuda" in argv[2] and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")

    try:
        gpu_check.main(argv)
    except SystemExit as exc:
        text = str(exc.code) if not isinstance(exc.code, int) else capsys.readouterr().err
    except I2IError as exc:
        text = str(exc)
    else:
        pytest.fail("no error")
    assert message in text
