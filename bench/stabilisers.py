"""What each GAN stabiliser costs per training step (docs/stabilisers.md), side by side in one run.

The engine's pix2pix step (``Trainer.train_step``) on real facades batches, plain and with each
switch on, interleaved so machine noise hits all alike; prints seconds per iteration and the ratio to
the plain step.

    python bench/stabilisers.py                         # CPU fp32, unet_128 + patch_70 at 128x128, batch 1
    python bench/stabilisers.py --size 256 --generator unet_256
    python bench/stabilisers.py --device cuda --precision fp16 --batch 8
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from step_harness import batches, make_trainer, time_interleaved  # noqa: E402

VARIANTS = {
    "plain": [],
    "real_label=0.9": ["real_label=0.9"],
    "d_spectral_norm=true": ["d_spectral_norm=true"],
    "feat_match_weight=10": ["feat_match_weight=10"],
    "r1_gamma=1": ["r1_gamma=1"],
    "r1_gamma=1 r2_gamma=1": ["r1_gamma=1", "r2_gamma=1"],
    "diffaugment=color,translation,cutout": ["diffaugment=color,translation,cutout"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--generator", default="unet_128")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = [f"generator={args.generator}", f"crop_size={args.size}", f"load_size={args.size + args.size // 8}",
            f"batch_size={args.batch}", "num_workers=0", "direction=BtoA"]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: make_trainer("pix2pix", base + extra, Path(args.data), Path(tmp) / name, args.device,
                                       args.precision) for name, extra in VARIANTS.items()}
        feed = batches(trainers["plain"], args.iters)
        steps = {name: t.train_step for name, t in trainers.items()}
        times = time_interleaved(steps, feed, args.device, feed[:1], args.rounds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; pix2pix {args.generator} + patch_70, {args.size}x{args.size}, "
          f"batch {args.batch}; {args.device} {args.precision}; {args.threads} threads; {platform.processor() or platform.machine()}; "
          f"load {load:.1f}; median of {args.rounds} rounds x {args.iters} steps")
    plain = statistics.median(times["plain"])
    print(f"{'variant':40s} {'s/it':>8s} {'vs plain':>9s}")
    for name, ts in times.items():
        s = statistics.median(ts)
        print(f"{name:40s} {s:8.3f} {s / plain:8.2f}x")


if __name__ == "__main__":
    main()
