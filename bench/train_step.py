"""pix2pix training-step benchmark: unet_256 + 70x70 PatchGAN at 256x256, batch 1 (the reference setup).

Times, side by side in one process (interleaved, so machine noise hits all alike): a faithful replica
of the reference implementation's step (junyanz/pytorch-CycleGAN-and-pix2pix
``Pix2PixModel.optimize_parameters``: same networks, same losses, same order), the i2i engine's step
(``Trainer.train_step``) on the plain built-in networks, and on CPU in fp32 the engine with the
opt-in CPU kernels (``--set cpu_kernels=true``: the i2i_cpu plugin) in a process of its own, beside
the plain engine with freed memory kept as the plugin keeps it (its allocator part alone). Prints
seconds per iteration, images/s, the ratio to the reference, and peak memory.

    python bench/train_step.py                       # CPU, fp32: reference, plain, cpu_kernels
    python bench/train_step.py --iters 1 --rounds 2  # a quick look
    python bench/train_step.py --device cuda --precision fp16 --channels-last --compile

The data is real: the first images of ../shared/datasets/facades/train (or --data DIR).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch
from torch import nn

from i2i.engine import Trainer
from step_harness import Worker, batches, channels_last_step, cpu_kernel_workers, print_memory, print_workers
from step_harness import run_worker, time_interleaved
from step_harness import make_trainer as harness_trainer  # the shared builder; this file's make_trainer adds the recipe

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"
RECIPE = ["generator=unet_256", "discriminator=patch_70", "batch_size=1", "load_size=286", "crop_size=256",
          "num_workers=0", "direction=BtoA", "log_every=1000000"]


def reference_step(trainer: Trainer) -> Callable[[dict[str, Any]], None]:
    """The reference's optimize_parameters on the same networks (a fresh copy, so state is not shared)."""
    import copy

    G = copy.deepcopy(trainer.raw["G"])  # plain nn.Conv2d/nn.ConvTranspose2d, as the reference builds them
    Dn = copy.deepcopy(trainer.raw["D"])
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(Dn.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gan, l1 = nn.BCEWithLogitsLoss(), nn.L1Loss()

    def set_requires_grad(net: nn.Module, flag: bool) -> None:
        for p in net.parameters():
            p.requires_grad = flag

    def step(batch: dict[str, Any]) -> None:
        real_A, real_B = batch["A"], batch["B"]
        fake_B = G(real_A)
        set_requires_grad(Dn, True)
        opt_D.zero_grad()
        pred_fake = Dn(torch.cat((real_A, fake_B), 1).detach())
        pred_real = Dn(torch.cat((real_A, real_B), 1))
        loss_D = (gan(pred_fake, torch.zeros_like(pred_fake)) + gan(pred_real, torch.ones_like(pred_real))) * 0.5
        loss_D.backward()
        opt_D.step()
        set_requires_grad(Dn, False)
        opt_G.zero_grad()
        pred_fake = Dn(torch.cat((real_A, fake_B), 1))
        loss_G = gan(pred_fake, torch.ones_like(pred_fake)) + l1(fake_B, real_B) * 100.0
        loss_G.backward()
        opt_G.step()

    return step


def make_trainer(data: Path, out: Path, device: str, precision: str, extra: list[str]) -> Trainer:
    return harness_trainer("pix2pix", RECIPE + extra, data, out, device, precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=FACADES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="engine precision: fp32, fp16, bf16")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per variant per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true", help="also time the engine with channels_last")
    ap.add_argument("--compile", action="store_true", help="also time the engine with torch.compile")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-cpu-kernels", action="store_true", help="skip the engine with cpu_kernels=true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # settings of a variant timed in its own process
    ap.add_argument("--worker-data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker is not None:
        out = Path(tempfile.mkdtemp(prefix="i2i-bench-worker-"))
        run_worker(args.worker, lambda extra: make_trainer(args.worker_data, out, args.device, args.precision, extra),
                   args.iters, args.device)
        shutil.rmtree(out, ignore_errors=True)
        return

    tmp = Path(tempfile.mkdtemp(prefix="i2i-bench-"))
    data = tmp / "facades" / "train"
    data.mkdir(parents=True)
    for f in sorted((args.data / "train").iterdir())[:8]:
        shutil.copy(f, data / f.name)

    torch.manual_seed(0)
    variants: dict[str, Callable[[dict[str, Any]], Any]] = {}
    engine = make_trainer(data.parent, tmp / "runs", args.device, args.precision, [])
    feed = batches(engine, args.iters)
    if not args.no_reference:
        variants["reference (fp32)"] = reference_step(engine)
    variants[f"i2i engine ({engine.precision})"] = engine.train_step
    workers: dict[str, Worker] = {}
    if not args.no_cpu_kernels and args.device == "cpu" and engine.precision == "fp32":
        workers = cpu_kernel_workers(__file__, engine.precision, [
            "--worker-data", str(data.parent), "--device", args.device, "--precision", args.precision,
            "--iters", str(args.iters)])
        variants.update(workers)
    if args.channels_last:
        t = make_trainer(data.parent, tmp / "runs", args.device, args.precision, ["channels_last=true"])
        variants[f"i2i engine ({t.precision}, channels_last)"] = channels_last_step(t)
    if args.compile:
        t = make_trainer(data.parent, tmp / "runs", args.device, args.precision, ["compile=true"])
        variants[f"i2i engine ({t.precision}, compile)"] = t.train_step

    times = time_interleaved(variants, feed, args.device, feed[: args.warmup], args.rounds)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; pix2pix unet_256 + patch_70, 256x256, batch 1; device "
          f"{args.device}; torch {torch.__version__}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{torch.get_num_threads()} threads; load average at the end {load:.1f}; {args.rounds} rounds x {args.iters} "
          f"iterations (median)")
    base = statistics.median(times["reference (fp32)"]) if "reference (fp32)" in times else None
    print(f"{'variant':42s} {'s/it':>8s} {'img/s':>8s} {'vs reference':>13s}")
    for name, ts in times.items():
        s = statistics.median(ts)
        ratio = f"{s / base:.2f}x" if base else "-"
        print(f"{name:42s} {s:8.3f} {1 / s:8.2f} {ratio:>13s}")
    print_memory(args.device)
    print_workers(workers)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
