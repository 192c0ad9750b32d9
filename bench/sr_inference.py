"""x4 super-resolution inference on this CPU: PyTorch eager against onnxruntime, side by side.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/sr_inference.py [--models realesr-animevideov3,srgan-x4,srresnet]
        [--size 256] [--threads N] [--repeat 10]

One 256x256 RGB input (a crop of Set5 "baby" when ../shared is present, else noise) is upscaled
x4 to 1024x1024 at batch 1, float32, by each model:

- ``realesr-animevideov3`` and ``srgan-x4``: the published weights from ../shared/weights,
  through the zoo (the code behind ``i2i translate --model NAME --weights FILE``);
- ``srresnet`` (paper size: 16 blocks, 64 features, BatchNorm) and ``rrdbnet`` (ESRGAN, 23 RRDBs;
  slow: tens of seconds per call here) with random weights: speed does not depend on the values.

Contenders, in the same process, calls interleaved round-robin with a short pause before each, so
load from other processes hits both alike:

- PyTorch eager, eval mode, ``torch.inference_mode()``, ``torch.set_num_threads(N)``;
- onnxruntime CPU through ``i2i_export.runtime.OnnxGenerator`` (what ``i2i serve`` and
  ``--model file.onnx`` run), the file written by ``i2i_export.exporter.export_onnx`` (dynamic
  batch/height/width, opset 18), ``threads=N``.

Outputs are compared first (max |diff| on the [0, 1] output), so a fast but wrong graph cannot win.
Prints a Markdown table: median and min seconds per image, and onnxruntime's speed-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared"
WEIGHTS = {
    "realesr-animevideov3": SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth",
    "srgan-x4": SHARED / "weights" / "srgan_x4" / "netG_epoch_4_100.pth",
}
RANDOM = {
    "srresnet": ("srresnet", {"num_feat": 64, "num_block": 16, "scale": 4, "norm": "batch"}),
    "rrdbnet": ("rrdbnet", {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 4}),
}


def build(name: str) -> tuple[torch.nn.Module, Any, str]:
    """(module in eval mode, GeneratorMeta, where the weights came from)."""
    from i2i.loader import build_meta, load
    from i2i.registry import create_generator

    if name in WEIGHTS:
        if not WEIGHTS[name].is_file():
            raise SystemExit(f"{name}: {WEIGHTS[name]} not found")
        g = load(name, weights=WEIGHTS[name], device="cpu")
        return g.module.eval(), g.meta, WEIGHTS[name].name
    if name in RANDOM:
        gen, kwargs = RANDOM[name]
        torch.manual_seed(0)
        module = create_generator(gen, **kwargs).eval()
        return module, build_meta(gen, kwargs, module=module), "random init"
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join([*WEIGHTS, *RANDOM])}")


def test_input(size: int) -> np.ndarray:
    """float32 1x3xSxS in [0, 1]: a real photo crop when available (SR nets behave differently on noise)."""
    baby = SHARED / "datasets" / "sr" / "Set5" / "baby.png"
    if baby.is_file():
        from i2i.imageio import read_image
        from i2i_srgan.imresize import imresize

        img = read_image(baby)  # 512x512
        img = imresize(img, size=(size, size)) if img.shape[:2] != (size, size) else img
        return (img.astype(np.float32).transpose(2, 0, 1)[None] / 255.0).copy()
    return np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench(name: str, size: int, threads: int, repeat: int, gap: float, workdir: Path) -> dict[str, Any]:
    from i2i_export.exporter import export_onnx
    from i2i_export.runtime import OnnxGenerator

    module, meta, source = build(name)
    x = test_input(size)
    path = workdir / f"{name}.onnx"
    t0 = time.perf_counter()
    export_onnx(module, meta, path)
    export_s = time.perf_counter() - t0
    gen = OnnxGenerator(path, device="cpu", threads=threads)

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)

    def run_torch() -> np.ndarray:
        with torch.inference_mode():
            return module(xt).numpy()

    def run_ort() -> np.ndarray:
        return gen.run(x)

    a, b = run_torch(), run_ort()  # warm-up, and the correctness check
    assert a.shape == (1, 3, size * meta.scale, size * meta.scale), a.shape
    diff = float(np.abs(a - b).max())
    times: dict[str, list[float]] = {"torch": [], "ort": []}
    for _ in range(repeat):
        for key, fn in (("torch", run_torch), ("ort", run_ort)):
            time.sleep(gap)
            times[key].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"name": name, "arch": meta.name, "source": source, "params": sum(p.numel() for p in module.parameters()),
            "diff": diff, "export_s": export_s, "onnx_mb": path.stat().st_size / 2**20,
            "torch_med": med["torch"], "torch_min": min(times["torch"]), "ort_med": med["ort"], "ort_min": min(times["ort"]),
            "speedup": med["torch"] / med["ort"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="realesr-animevideov3,srgan-x4,srresnet")
    parser.add_argument("--size", type=int, default=256, help="LR input side (output is 4x)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--gap", type=float, default=0.2, help="pause before each call (s)")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from i2i.plugins import manager

    manager()
    import onnxruntime as ort

    print(f"# x4 SR inference, {args.size}x{args.size} -> {4 * args.size}x{4 * args.size}, batch 1, fp32, "
          f"{args.threads} thread(s), median of {args.repeat} interleaved calls")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores; torch {torch.__version__}, onnxruntime {ort.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print()
    print("| model | architecture | weights | params | PyTorch s (median / min) | onnxruntime s (median / min) "
          "| ORT speed-up | max abs diff | export s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(",") if m]:
            r = bench(name, args.size, args.threads, args.repeat, args.gap, Path(tmp))
            print(f"| {r['name']} | {r['arch']} | {r['source']} | {r['params'] / 1e6:.2f}M "
                  f"| {r['torch_med']:.3f} / {r['torch_min']:.3f} | {r['ort_med']:.3f} / {r['ort_min']:.3f} "
                  f"| {r['speedup']:.2f}x | {r['diff']:.1e} | {r['export_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
