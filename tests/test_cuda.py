"""What only an NVIDIA GPU can show: mixed precision, channels_last, torch.compile, DDP over NCCL,
onnxruntime-gpu's providers, and the loader's finishing on the device.

Every test here is marked ``cuda``: skipped without a GPU (tests/conftest.py), and run by
``pytest -m cuda`` inside ``bash bench/gpu_check.sh``. Networks and runs are tiny (unet_128 with 8
filters on 128x128 crops of four real facades, a few steps), so the whole file takes a minute or two.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tiny_pix2pix import TINY, copy_facades, needs_facades, tiny_config

pytestmark = [pytest.mark.cuda, needs_facades]

RUN = ["n_epochs=1", "n_epochs_decay=0", "save_every_minutes=0", "sample_every=0", "log_every=2"]


def _train(tmp_path: Path, *settings: str, steps: int = 4):
    """A tiny pix2pix run on CUDA; returns (trainer, G's weights before)."""
    from i2i.engine import Trainer

    data = tmp_path / "facades"
    if not data.exists():
        copy_facades(data, 4)
    cfg = tiny_config([*TINY, *RUN, "batch_size=2", *settings], data=data, out_dir=tmp_path / "runs",
                      name="cuda", device="cuda", max_steps=steps)
    trainer = Trainer("pix2pix", cfg)
    before = [p.detach().clone() for p in trainer.raw["G"].parameters()]
    trainer.fit()
    return trainer, before


def _trained(trainer, before) -> None:
    after = list(trainer.raw["G"].parameters())
    assert all(p.is_cuda and torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before)), "no weight changed"


def test_cuda_loader_finishes_on_the_gpu_as_on_the_cpu() -> None:
    """Method.to_device resizes, crops, flips and normalises on the GPU; the same raw batch finished
    on the CPU differs at most by a bicubic rounding tie (one level)."""
    from i2i.config import TrainConfig
    from i2i.data import AlignedDataset
    from i2i.data.batch import collate
    from i2i.engine.data import SeededItems
    from i2i.method import Method
    from tiny_pix2pix import FACADES

    seeded = SeededItems(AlignedDataset(FACADES, max_items=8))
    raw = collate([seeded[(i, 7 + i)] for i in range(8)])
    on_gpu, on_cpu = Method(TrainConfig()), Method(TrainConfig())
    on_gpu.device = torch.device("cuda")
    gpu, cpu = on_gpu.to_device(raw), on_cpu.to_device(raw)
    for key in ("A", "B"):
        assert gpu[key].is_cuda and gpu[key].shape == (8, 3, 256, 256)
        diff = (gpu[key].cpu() - cpu[key]).abs()
        assert diff.max() <= 2 / 255 + 1e-6 and (diff > 0).float().mean() < 1e-3


def test_cuda_fp16_trains_with_its_grad_scaler(tmp_path: Path) -> None:
    trainer, before = _train(tmp_path, "precision=fp16")
    scaler = trainer.groups["G"].scaler
    assert trainer.precision == "fp16" and scaler.is_enabled()
    assert 0 < scaler.get_scale() < float("inf")
    _trained(trainer, before)


def test_cuda_bf16_trains_without_a_scaler(tmp_path: Path) -> None:
    trainer, before = _train(tmp_path, "precision=bf16")
    assert trainer.precision == "bf16" and not trainer.groups["G"].scaler.is_enabled()
    _trained(trainer, before)


def test_cuda_channels_last_trains(tmp_path: Path) -> None:
    trainer, before = _train(tmp_path, "precision=fp16", "channels_last=true")
    conv = next(p for p in trainer.raw["G"].parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
    _trained(trainer, before)


def test_cuda_compile_trains(tmp_path: Path) -> None:
    trainer, before = _train(tmp_path, "compile=true", steps=3)
    _trained(trainer, before)


DDP_WORKER = textwrap.dedent("""
    import os, sys
    import torch, torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    t = torch.tensor([float(rank)], device="cuda")
    dist.all_reduce(t)
    assert t.item() == world * (world - 1) / 2, t
    net = torch.nn.Linear(4, 1).cuda()
    ddp = DistributedDataParallel(net, device_ids=[local])
    ddp(torch.full((2, 4), float(rank + 1), device="cuda")).sum().backward()
    # d/dW of sum over 2 rows of (rank + 1): 2 * (rank + 1), averaged over ranks by DDP: world + 1
    assert torch.allclose(net.weight.grad, torch.full_like(net.weight.grad, world + 1.0)), net.weight.grad
    dist.destroy_process_group()
    print(f"nccl ok: rank {rank} of {world}", flush=True)

    from i2i.engine import Trainer
    from tiny_pix2pix import TINY, tiny_config
    data, out = sys.argv[1], sys.argv[2]
    cfg = tiny_config([*TINY, "n_epochs=1", "n_epochs_decay=0", "save_every_minutes=0", "sample_every=0",
                       "batch_size=1"], data=data, out_dir=out, name="ddp", device="cuda", max_steps=3)
    Trainer("pix2pix", cfg).fit()
    print(f"engine ok: rank {rank}", flush=True)
""")


def test_cuda_ddp_over_nccl_with_torchrun(tmp_path: Path) -> None:
    """torchrun, one process per GPU present: NCCL all-reduce, a DDP gradient average, then the
    engine's own training (DDP over NCCL when there are two GPUs or more)."""
    gpus = torch.cuda.device_count()
    copy_facades(tmp_path / "facades", 4)
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
           "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                          str(script), str(tmp_path / "facades"), str(tmp_path / "runs")],
                         capture_output=True, text=True, env=env, timeout=150)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert res.stdout.count("nccl ok") == gpus and res.stdout.count("engine ok") == gpus
    assert list((tmp_path / "runs" / "ddp" / "checkpoints").iterdir())  # rank 0 wrote the run


def _tiny_onnx(tmp_path: Path):
    """A tiny resnet_9blocks (ngf 8) exported as ``i2i export`` does, its input and PyTorch's output."""
    import numpy as np

    from i2i.registry import generators
    from i2i.testing import generator_meta
    from i2i_export.exporter import export_onnx

    spec = generators().get("resnet_9blocks")
    torch.manual_seed(0)
    net = spec.factory(**spec.test_kwargs).eval()
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    return export_onnx(net, generator_meta(spec), tmp_path / "g.onnx"), x, expected


def test_cuda_onnxruntime_gpu_cuda_provider(tmp_path: Path) -> None:
    from i2i_export.runtime import CUDA, OnnxGenerator

    path, x, expected = _tiny_onnx(tmp_path)
    gen = OnnxGenerator(path, "cuda")
    assert gen.providers[0] == CUDA, gen.providers
    out = gen.session.run(None, {gen.input_names[0]: x})[0]
    assert abs(out - expected).max() < 2e-3


def test_cuda_onnxruntime_gpu_tensorrt_provider(tmp_path: Path) -> None:
    from i2i.errors import I2IError
    from i2i_export.runtime import TENSORRT, OnnxGenerator

    path, x, expected = _tiny_onnx(tmp_path)
    try:
        gen = OnnxGenerator(path, "tensorrt")
    except I2IError as exc:  # TensorRT's own libraries are a separate, large install
        pytest.skip(f"TensorRT is not usable here ({exc}); GPU_CHECK_TENSORRT=1 bash bench/gpu_check.sh installs it")
    assert gen.providers[0] == TENSORRT, gen.providers
    out = gen.session.run(None, {gen.input_names[0]: x})[0]
    assert abs(out - expected).max() < 2e-2  # TensorRT may pick reduced-precision kernels' orderings
