"""Validation overhead: seconds per validation against seconds per training step, in one process.

pix2pix at the reference setup (unet_256 + 70x70 PatchGAN, 256x256, batch 1, facades BtoA) with
validation at its defaults: ``val_images=50`` of the held-aside split (facades test/) and pix2pix's
default metrics (psnr, ssim); ``--fid`` also times a validation by FID (torch-fidelity's Inception:
random weights written locally, so nothing is downloaded; the time does not depend on the values).

Training steps and validations take turns (interleaved rounds), so machine noise hits both alike.
Prints seconds per step, seconds per validation (the first one decodes the images; later ones read
them from memory; with ``--rounds 1`` the first is all there is), and the overhead as a share of
the training time for a few ``val_every``: ``t_val / (val_every * t_step + t_val)``.

    python bench/validation_overhead.py                    # CPU fp32, default metrics
    python bench/validation_overhead.py --fid --rounds 2
    python bench/validation_overhead.py --device cuda --precision fp16 --fid

The data is real: ../shared/datasets/facades (or --data DIR with train/ and test/).
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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import torch

from step_harness import batches, make_trainer, sync

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"
RECIPE = ["generator=unet_256", "discriminator=patch_70", "batch_size=1", "load_size=286", "crop_size=256",
          "num_workers=0", "direction=BtoA", "log_every=1000000", "val_every=1000"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=FACADES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--steps", type=int, default=3, help="training steps timed per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--val-images", type=int, default=50, help="val_images (the default: 50)")
    ap.add_argument("--fid", action="store_true", help="also time a validation by FID (Inception features)")
    ap.add_argument("--every", type=int, nargs="*", default=[500, 1000, 5000], help="val_every values to report")
    args = ap.parse_args()
    if not (args.data / "train").is_dir():
        sys.exit(f"no facades at {args.data}: pass --data DIR (train/ and test/)")

    from i2i.engine.validation import Validator

    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer("pix2pix", [*RECIPE, f"val_images={args.val_images}"], args.data, Path(tmp),
                               args.device, args.precision)
        assert trainer.validator is not None
        validators = {"psnr+ssim (default)": trainer.validator}
        if args.fid:
            from i2i_metrics.distribution import random_inception_file

            os.environ["I2I_FID_WEIGHTS"] = str(random_inception_file(tmp))
            validators["fid"] = Validator(trainer.method, trainer.cfg, ["fid"], trainer.data_root, trainer.device,
                                          trainer.precision)
        feed = batches(trainer, args.steps)
        for net in trainer.raw.values():
            net.train()
        trainer.train_step(feed[0])  # warm-up: allocator, kernels
        step_times: list[float] = []
        val_times: dict[str, list[float]] = {k: [] for k in validators}
        for _ in range(args.rounds):  # the first round's validations also decode the images (kept after)
            sync(args.device)
            t0 = time.perf_counter()
            for b in feed:
                trainer.train_step(b)
            sync(args.device)
            step_times.append((time.perf_counter() - t0) / len(feed))
            for name, v in validators.items():
                t0 = time.perf_counter()
                v.run(0, trainer.raw, trainer.ema)
                sync(args.device)
                val_times[name].append(time.perf_counter() - t0)

    step = statistics.median(step_times)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.device} {args.precision}, "
          f"{torch.get_num_threads()} threads, load {load:.1f}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"training step: {step:.3f} s (median of {args.rounds} rounds x {args.steps} steps)")
    header = " | ".join(f"val_every={n}" for n in args.every)
    print(f"| metrics | images | first validation s | later validations s | = steps | {header} |")
    print("|---|---|---|---|---|" + "---|" * len(args.every))
    for name, times in val_times.items():
        t = statistics.median(times[1:]) if len(times) > 1 else times[0]
        shares = " | ".join(f"{100 * t / (n * step + t):.1f}%" for n in args.every)
        print(f"| {name} | {validators[name].images} | {times[0]:.2f} | {t:.2f} | {t / step:.1f} | {shares} |")


if __name__ == "__main__":
    main()
