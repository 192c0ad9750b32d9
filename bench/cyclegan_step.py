"""CycleGAN training-step benchmark: 2 x resnet_9blocks + 2 x 70x70 PatchGAN (InstanceNorm), LSGAN,
cycle 10 + identity 0.5, image pool 50, 256x256, batch 1 (the reference setup).

Times, side by side in one process (interleaved, so machine noise hits all alike): a faithful replica
of the reference implementation's step (junyanz/pytorch-CycleGAN-and-pix2pix
``CycleGANModel.optimize_parameters``: same networks, losses, pool and order: G step, then D_A and
D_B), the i2i engine's step (``Trainer.train_step`` on the ``cyclegan`` method) on the plain built-in
networks, and on CPU in fp32 the engine with the opt-in CPU kernels (``--set cpu_kernels=true``: the
i2i_cpu plugin's Winograd residual convolutions; ``I2I_CPU_WINOGRAD=0`` leaves them to oneDNN) in a
process of its own, beside the plain engine with freed memory kept as the plugin keeps it (its
allocator part alone). Prints seconds per iteration, the ratio to the replica, and the ratio to the
reference's published figure on this CPU (~18 s/it).

    NO_ALBUMENTATIONS_UPDATE=1 python bench/cyclegan_step.py              # CPU, fp32, 256x256
    NO_ALBUMENTATIONS_UPDATE=1 python bench/cyclegan_step.py --iters 1 --rounds 2   # shorter
    NO_ALBUMENTATIONS_UPDATE=1 python bench/cyclegan_step.py --size 128 --iters 1   # a quick look
    python bench/cyclegan_step.py --device cuda --precision fp16 --channels-last

The data is real: the first images of ../shared/datasets/monet2photo (or --data DIR).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import os
import platform
import random
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

MONET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "monet2photo"
#: the reference's measured CycleGAN step on this 2-core CPU (../shared/DESIGN.md)
REFERENCE_S_PER_IT = 18.0
RECIPE = ["generator=resnet_9blocks", "discriminator=patch_70", "discriminator_kwargs.norm=instance", "batch_size=1",
          "num_workers=0", "log_every=1000000", "gan_loss=lsgan", "pool_size=50"]


class ReferencePool:
    """The reference's ImagePool (python ``random``), verbatim in behaviour."""

    def __init__(self, size: int) -> None:
        self.size, self.images = size, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif random.uniform(0, 1) > 0.5:
                i = random.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def reference_step(trainer: Trainer) -> Callable[[dict[str, Any]], None]:
    """The reference's optimize_parameters on copies of the same networks (state is not shared)."""
    G_A, G_B, D_A, D_B = (copy.deepcopy(trainer.raw[n]) for n in ("G_A", "G_B", "D_A", "D_B"))  # plain torch layers
    opt_G = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    mse, l1 = nn.MSELoss(), nn.L1Loss()
    pool_A, pool_B = ReferencePool(50), ReferencePool(50)
    lam_A = lam_B = 10.0
    lam_idt = 0.5

    def gan(pred: torch.Tensor, real: bool) -> torch.Tensor:  # GANLoss('lsgan')
        return mse(pred, torch.tensor(1.0 if real else 0.0).expand_as(pred))

    def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
        for net in nets:
            for p in net.parameters():
                p.requires_grad = flag

    def backward_D(D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> None:
        loss = (gan(D(real), True) + gan(D(fake.detach()), False)) * 0.5
        loss.backward()

    def step(batch: dict[str, Any]) -> None:
        real_A, real_B = batch["A"], batch["B"]
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)
        set_requires_grad([D_A, D_B], False)
        opt_G.zero_grad()
        idt_A = G_A(real_B)
        idt_B = G_B(real_A)
        loss_G = (gan(D_A(fake_B), True) + gan(D_B(fake_A), True)
                  + l1(rec_A, real_A) * lam_A + l1(rec_B, real_B) * lam_B
                  + l1(idt_A, real_B) * lam_B * lam_idt + l1(idt_B, real_A) * lam_A * lam_idt)
        loss_G.backward()
        opt_G.step()
        set_requires_grad([D_A, D_B], True)
        opt_D.zero_grad()
        backward_D(D_A, real_B, pool_B.query(fake_B))
        backward_D(D_B, real_A, pool_A.query(fake_A))
        opt_D.step()

    return step


def make_trainer(data: Path, out: Path, device: str, precision: str, size: int, extra: list[str]) -> Trainer:
    sizes = [f"crop_size={size}", f"load_size={size + size // 8}"]
    return harness_trainer("cyclegan", RECIPE + sizes + extra, data, out, device, precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=MONET)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="engine precision: fp32, fp16, bf16")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--iters", type=int, default=2, help="timed iterations per variant per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--channels-last", action="store_true", help="also time the engine with channels_last")
    ap.add_argument("--also", action="append", default=[], metavar="KEY=VALUE",
                    help="also time the engine with this config override (repeatable), e.g. lambda_identity=0")
    ap.add_argument("--no-cpu-kernels", action="store_true", help="skip the engine with cpu_kernels=true")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # settings of a variant timed in its own process
    ap.add_argument("--worker-data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.worker is not None:
        out = Path(tempfile.mkdtemp(prefix="i2i-bench-worker-"))
        torch.manual_seed(0)
        random.seed(0)
        run_worker(args.worker, lambda extra: make_trainer(args.worker_data, out, args.device, args.precision,
                                                           args.size, extra),
                   max(args.iters, args.warmup), args.device)
        shutil.rmtree(out, ignore_errors=True)
        return

    tmp = Path(tempfile.mkdtemp(prefix="i2i-bench-"))
    for sub, n in (("monet", 4), ("photo", 4)):
        (tmp / "data" / sub).mkdir(parents=True)
        for f in sorted((args.data / sub).iterdir())[:n]:
            shutil.copy(f, tmp / "data" / sub / f.name)

    torch.manual_seed(0)
    random.seed(0)
    variants: dict[str, Callable[[dict[str, Any]], Any]] = {}
    engine = make_trainer(tmp / "data", tmp / "runs", args.device, args.precision, args.size, [])
    feed = batches(engine, max(args.iters, args.warmup))
    if not args.no_reference:
        variants["reference replica (fp32)"] = reference_step(engine)
    variants[f"i2i engine ({engine.precision})"] = engine.train_step
    workers: dict[str, Worker] = {}
    if not args.no_cpu_kernels and args.device == "cpu" and engine.precision == "fp32":
        workers = cpu_kernel_workers(__file__, engine.precision, [
            "--worker-data", str(tmp / "data"), "--device", args.device, "--precision", args.precision, "--size",
            str(args.size), "--threads", str(args.threads), "--iters", str(args.iters), "--warmup", str(args.warmup)])
        variants.update(workers)
    if args.channels_last:
        t = make_trainer(tmp / "data", tmp / "runs", args.device, args.precision, args.size, ["channels_last=true"])
        variants[f"i2i engine ({t.precision}, channels_last)"] = channels_last_step(t)

    for item in args.also:
        t = make_trainer(tmp / "data", tmp / "runs", args.device, args.precision, args.size, [item])
        variants[f"i2i engine ({t.precision}, {item})"] = t.train_step

    times = time_interleaved(variants, feed[: args.iters], args.device, feed[: args.warmup], args.rounds)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; CycleGAN 2 x resnet_9blocks + 2 x patch_70 (instance), {args.size}x{args.size}, batch 1; device "
          f"{args.device}; torch {torch.__version__}; {platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"CPUs, {torch.get_num_threads()} threads; load average at the end {load:.1f}; "
          f"{args.rounds} rounds x {args.iters} iterations (median)")
    base = statistics.median(times["reference replica (fp32)"]) if "reference replica (fp32)" in times else None
    scale = (256 / args.size) ** 2  # the published figure is for 256x256; FLOPs scale with the area
    print(f"{'variant':40s} {'s/it':>8s} {'vs replica':>11s} {'vs 18 s/it':>11s}")
    for name, ts in times.items():
        s = statistics.median(ts)
        ratio = f"{s / base:.2f}x" if base else "-"
        published = f"{s * scale / REFERENCE_S_PER_IT:.2f}x" + ("" if args.size == 256 else "*")
        print(f"{name:40s} {s:8.2f} {ratio:>11s} {published:>11s}")
    if args.size != 256:
        print("* scaled to 256x256 by area")
    print_memory(args.device)
    print_workers(workers)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
