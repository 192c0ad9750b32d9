"""The timed stages of ``bench/gpu_check.sh``, each printing one table (they run on CPU too, small).

    python bench/gpu_check.py steps --method pix2pix --device cuda      # fp32 vs fp16 vs bf16 vs reference
    python bench/gpu_check.py steps --method cyclegan --device cuda
    python bench/gpu_check.py onnx --device cuda                        # onnxruntime CUDA fp16 vs PyTorch fp32

``steps`` times the engine's training step (``Trainer.train_step``) at each ``--precisions`` entry
against the replica of the reference implementation's step (``bench/train_step.py`` and
``bench/cyclegan_step.py``: the same networks, losses and order, fp32), interleaved round by round
on the same batches (``bench/step_harness.py``), batch ``--batch-size``.

``onnx`` exports a generator with ``i2i_export.exporter.export_onnx`` (the code behind
``i2i export``; ``--fp16`` stores it in float16) and times PyTorch eager fp32 against onnxruntime
on the same device (sessions from ``i2i_export.runtime.create_session``, as ``i2i translate`` and
``i2i serve`` open files: CUDA, or CPU with ``--device cpu``), fp32 and fp16 files, after checking
the outputs (max |diff|, in the generator's value range).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_harness, train_step, cyclegan_step

import numpy as np  # noqa: E402
import torch  # noqa: E402

from i2i.cli import table_text  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
METHODS = {"pix2pix": SHARED / "facades", "cyclegan": SHARED / "monet2photo"}
PRECISIONS = ("fp32", "fp16", "bf16")


def _header(what: str, device: str) -> str:
    name = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else \
        (platform.processor() or platform.machine())
    return (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {what}; {device} ({name}); torch {torch.__version__}; "
            f"{os.cpu_count()} CPUs")


def _copy_data(method: str, src: Path, dest: Path, n: int) -> Path:
    """A few real images in the layout the method reads: facades train/ (A|B), or two folders."""
    if method == "pix2pix":
        folders = [(src / "train", dest / "train")]
    else:
        folders = [(src / a, dest / a) for a in sorted(p.name for p in src.iterdir() if p.is_dir())][:2]
    for s, d in folders:
        d.mkdir(parents=True)
        for f in sorted(s.iterdir())[:n]:
            shutil.copy(f, d / f.name)
    return dest


def steps(args: argparse.Namespace) -> int:
    from step_harness import batches, make_trainer, time_interleaved

    if args.method == "pix2pix":
        import train_step as bench
    else:
        import cyclegan_step as bench
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown or not precisions:
        raise SystemExit(f"--precisions: choose from {', '.join(PRECISIONS)} (got {args.precisions!r})")
    size = args.size
    settings = [*bench.RECIPE, f"crop_size={size}", f"load_size={size + size // 8}", f"batch_size={args.batch_size}",
                *args.set]
    tmp = Path(tempfile.mkdtemp(prefix="i2i-gpu-check-"))
    try:
        data = _copy_data(args.method, args.data or METHODS[args.method], tmp / "data", max(8, args.batch_size * 2))
        torch.manual_seed(0)
        trainers = {p: make_trainer(args.method, settings, data, tmp / "runs", args.device, p) for p in precisions}
        first = trainers[precisions[0]]
        feed = batches(first, args.iters)
        variants: dict[str, Callable[[dict[str, Any]], Any]] = {}
        if not args.no_reference:
            ref = trainers["fp32"] if "fp32" in trainers else \
                make_trainer(args.method, settings, data, tmp / "runs", args.device, "fp32")
            variants["reference replica (fp32)"] = bench.reference_step(ref)
        for p, t in trainers.items():
            variants[f"i2i engine ({t.precision})"] = t.train_step
        times = time_interleaved(variants, feed, args.device, feed[: args.warmup], args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(_header(f"{args.method} training step, {size}x{size}, batch {args.batch_size}, median of {args.rounds} "
                  f"interleaved rounds x {args.iters} steps", args.device))
    base = statistics.median(times["reference replica (fp32)"]) if "reference replica (fp32)" in times else None
    rows = []
    for name, ts in times.items():
        s = statistics.median(ts)
        rows.append((name, f"{s * 1e3:.1f}", f"{args.batch_size / s:.1f}", f"{s / base:.2f}x" if base else "-"))
    print(table_text(("variant", "ms/step", "img/s", "vs reference"), rows, right=(1, 2, 3)))
    return 0


def _median_seconds(fn: Callable[[], Any], repeat: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def onnx(args: argparse.Namespace) -> int:
    from i2i.registry import generators
    from i2i.testing import generator_meta
    from i2i_export.exporter import export_onnx
    from i2i_export.runtime import create_session

    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="i2i-gpu-check-"))
    try:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            spec = generators().get(name)  # an unknown name is the registry's one-line error
            torch.manual_seed(0)
            kwargs = dict(spec.test_kwargs) if args.tiny else {}
            module = spec.factory(**kwargs).eval().to(args.device)
            meta = generator_meta(spec)
            meta.kwargs = kwargs
            lo, hi = spec.value_range
            x = torch.from_numpy(np.random.default_rng(0).uniform(lo, hi, (args.batch, 3, args.size, args.size))
                                 .astype(np.float32)).to(args.device)
            with torch.inference_mode():
                reference = module(x).float().cpu().numpy()
                t_torch = _median_seconds(lambda: module(x), args.repeat, args.warmup, args.device)
            rows.append((name, "PyTorch eager fp32", f"{t_torch * 1e3:.2f}", "1.00x", "-"))
            ort_device = "cuda" if args.device.startswith("cuda") else "cpu"
            x_np = x.cpu().numpy()
            for fp16 in (False, True):
                path = export_onnx(module, meta, tmp / f"{name}{'_fp16' if fp16 else ''}.onnx", fp16=fp16)
                sess = create_session(path, ort_device)
                feed = {sess.get_inputs()[0].name: x_np}
                out = sess.run(None, feed)[0]
                diff = float(np.abs(out.astype(np.float32) - reference).max())
                t_ort = _median_seconds(lambda: sess.run(None, feed), args.repeat, args.warmup, "cpu")
                label = f"onnxruntime {sess.get_providers()[0].replace('ExecutionProvider', '')} {'fp16' if fp16 else 'fp32'}"
                rows.append((name, label, f"{t_ort * 1e3:.2f}", f"{t_ort / t_torch:.2f}x", f"{diff:.2g}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(_header(f"generator inference, batch {args.batch}, {args.size}x{args.size}, median of {args.repeat} "
                  f"(onnxruntime timed with its host<->device copies)", args.device))
    print(table_text(("generator", "runtime", "ms", "vs PyTorch fp32", "max |diff|"), rows, right=(2, 3, 4)))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("steps", help="training step times: fp32 vs fp16 vs bf16 vs the reference replica")
    s.add_argument("--method", choices=sorted(METHODS), default="pix2pix")
    s.add_argument("--device", default="cuda")
    s.add_argument("--precisions", default="fp32,fp16,bf16")
    s.add_argument("--data", type=Path, help="data folder (default: the shared facades / monet2photo)")
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--batch-size", type=int, default=1, help="1: the reference setup")
    s.add_argument("--iters", type=int, default=10)
    s.add_argument("--rounds", type=int, default=3)
    s.add_argument("--warmup", type=int, default=3)
    s.add_argument("--no-reference", action="store_true")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config settings")
    o = sub.add_parser("onnx", help="onnxruntime fp32/fp16 vs PyTorch eager fp32")
    o.add_argument("--device", default="cuda")
    o.add_argument("--models", default="unet_256,resnet_9blocks")
    o.add_argument("--size", type=int, default=256)
    o.add_argument("--batch", type=int, default=1)
    o.add_argument("--repeat", type=int, default=20)
    o.add_argument("--warmup", type=int, default=3)
    o.add_argument("--tiny", action="store_true", help="the generators' tiny test settings (for a CPU smoke run)")
    args = ap.parse_args(argv)
    for key in ("size", "iters", "rounds", "repeat", "batch", "batch_size"):
        if getattr(args, key, 1) < 1:
            ap.error(f"--{key.replace('_', '-')} must be positive")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA GPU here; use --device cpu for a small run")
    return steps(args) if args.stage == "steps" else onnx(args)


if __name__ == "__main__":
    sys.exit(main())
