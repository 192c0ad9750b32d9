"""What a host sync per step costs: the engine's step as it is (no host read of a device value inside
a step) against the same step with the guard it had before (``bool(torch.isfinite(loss))`` per
optimizer group, a host read before each backward), side by side in one process, interleaved.

On a CPU there is nothing to wait for, so the ratio shows only that the device-side skip machinery
(found-inf flags, on-device counters, the diversity monitor) costs nothing measurable; on a GPU the
ratio is what the sync-free step gains (the host keeps queueing kernels instead of draining the GPU
twice per step).

    python bench/step_sync.py                                   # CPU, fp32, pix2pix unet_256 256x256
    python bench/step_sync.py --device cuda --precision bf16 --batch-size 16
    python bench/step_sync.py --tiny --iters 5                  # unet_128 ngf 8, a quick look
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

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from step_harness import batches, make_trainer, time_interleaved  # noqa: E402
from i2i.engine.trainer import Group  # noqa: E402

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=FACADES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5, help="timed iterations per variant per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    ap.add_argument("--tiny", action="store_true", help="unet_128 with 8 filters on 128x128 crops")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="i2i_step_sync_"))
    try:
        (tmp / "data" / "train").mkdir(parents=True)
        for f in sorted((args.data / "train").iterdir())[: max(8, 2 * args.batch_size)]:
            shutil.copy(f, tmp / "data" / "train" / f.name)
        settings = ["num_workers=0", f"batch_size={args.batch_size}", "direction=BtoA"]
        if args.tiny:
            settings += ["generator=unet_128", "generator_kwargs.ngf=8", "discriminator_kwargs.ndf=8",
                         "load_size=136", "crop_size=128"]
        trainer = make_trainer("pix2pix", settings, tmp / "data", tmp / "runs", args.device, args.precision)
        feed = batches(trainer, args.iters + 2)
        original = Group.step
        guard = {"on": False}

        def step_with_old_guard(self, losses, *a, **k):  # the pre-issue-17 guard: a host read per group
            if guard["on"]:
                bool(torch.isfinite(sum(losses.values())))
            return original(self, losses, *a, **k)

        Group.step = step_with_old_guard  # type: ignore[method-assign]

        def engine(b):
            guard["on"] = False
            return trainer.train_step(b)

        def synced(b):
            guard["on"] = True
            return trainer.train_step(b)

        variants = {"engine (no host sync in a step)": engine, "+ bool(isfinite(loss)) per group": synced}
        times = time_interleaved(variants, feed[2:], args.device, feed[:2], args.rounds)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    net = "unet_128 ngf 8, 128x128" if args.tiny else "unet_256 + patch_70, 256x256"
    cpu = platform.processor() or platform.machine()
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; pix2pix {net}, batch {args.batch_size}; device "
          f"{args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else cpu}, "
          f"{torch.get_num_threads()} threads), {args.precision}; median of {args.rounds} rounds x {args.iters} steps")
    base = statistics.median(times["engine (no host sync in a step)"])
    print(f"{'variant':36s} {'s/it':>8s} {'vs engine':>10s}")
    for name, ts in times.items():
        s = statistics.median(ts)
        print(f"{name:36s} {s:8.4f} {s / base:9.3f}x")


if __name__ == "__main__":
    main()
