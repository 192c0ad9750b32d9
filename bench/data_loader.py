"""Data loader benchmark: what one worker delivers, against the JPEG decode alone on the same core.

One process, one thread (as a DataLoader worker runs), the variants interleaved round by round so
that the load of a shared machine hits all alike; the best round of each is reported:

- ``decode only``: ``i2i.imageio.read_image`` of every file (the bound: a worker must decode);
- ``before``: what a worker ran before the fast loader, kept here to measure against: per item,
  the engine's seeding (``torch.manual_seed``, which also queues the CUDA seeding) and the
  albumentations pipeline (Resize 286 bicubic + RandomCrop 256 + HorizontalFlip, then float32
  CxHxW); ``default_collate`` per batch;
- ``i2i worker``: what a worker of the engine's DataLoader runs now (``SeededItems`` in a worker:
  seed, ``raw_item``: decode, draw the crop and flip, uint8 views; :func:`i2i.data.batch.collate`
  per batch);
- ``finish on DEVICE``: the other half, ``Method.to_device`` (resize, crop, flip, normalise a
  batch at a time), on ``--device`` (cpu: the training process; cuda: the GPU).

    python bench/data_loader.py                          # facades train, pix2pix's 286 -> 256
    python bench/data_loader.py --rounds 3 --images 100  # a quick look
    python bench/data_loader.py --device cuda --workers  # + the device half, + a real 1-worker DataLoader
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

from i2i.cli import table_text  # noqa: E402
from i2i.config import TrainConfig  # noqa: E402
from i2i.data import AlignedDataset  # noqa: E402
from i2i.data.batch import collate  # noqa: E402
from i2i.engine.data import SeededItems, _seed_all  # noqa: E402
from i2i.imageio import read_image  # noqa: E402
from i2i.method import Method  # noqa: E402

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"


def old_item(path: Path, pipeline: A.Compose) -> dict[str, torch.Tensor]:
    """The per-item pipeline before the fast loader (i2i/data at commit f66135e)."""
    ab = read_image(path)
    half = ab.shape[1] // 2
    pipeline.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
    out = pipeline(image=ab[:, :half], B=ab[:, half:2 * half])

    def tensor(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().mul_(2 / 255.0).add_(-1.0)

    return {"A": tensor(out["image"]), "B": tensor(out["B"]), "A_path": str(path), "B_path": str(path)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=FACADES, help="a pix2pix A|B folder (default: shared facades)")
    ap.add_argument("--phase", default="train")
    ap.add_argument("--images", type=int, default=400, help="images per pass (default: all 400 of facades train)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved passes per variant (the best is reported)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--load-size", type=int, default=286)
    ap.add_argument("--crop-size", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="where Method.to_device finishes batches (cpu, cuda)")
    ap.add_argument("--workers", action="store_true", help="also time a real DataLoader with one worker process")
    args = ap.parse_args()
    if args.images < 1 or args.rounds < 1 or args.batch_size < 1:
        ap.error("--images, --rounds and --batch-size must be positive")
    if not (args.data / args.phase).is_dir():
        ap.error(f"no {args.phase}/ folder in {args.data}")

    torch.set_num_threads(1)  # one core, as a DataLoader worker runs
    cv2.setNumThreads(1)
    ds = AlignedDataset(args.data, phase=args.phase, load_size=args.load_size, crop_size=args.crop_size,
                        max_items=args.images)
    paths = [p for p, _ in ds.pairs]
    n = len(paths)
    pipeline = A.Compose([A.Resize(args.load_size, args.load_size, interpolation=cv2.INTER_CUBIC),
                          A.RandomCrop(args.crop_size, args.crop_size), A.HorizontalFlip(p=0.5)],
                         additional_targets={"B": "image"})
    seeded = SeededItems(ds)
    method = Method(TrainConfig())
    method.device = torch.device(args.device)
    raw_batches: list[dict[str, Any]] = []

    def decode() -> None:
        for p in paths:
            read_image(p)

    def old_seed(seed: int) -> None:  # the engine's per-item seeding before (i2i/engine/data.py)
        import random

        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def before() -> None:
        for start in range(0, n, args.batch_size):
            items = []
            for i in range(start, min(start + args.batch_size, n)):
                old_seed(1000 + i)
                items.append(old_item(paths[i], pipeline))
            default_collate(items)

    def worker() -> None:  # SeededItems.__getitem__'s branch for a worker process
        raw_batches.clear()
        for start in range(0, n, args.batch_size):
            items = []
            for i in range(start, min(start + args.batch_size, n)):
                _seed_all(1000 + i)
                items.append(ds.raw_item(i))
            raw_batches.append(collate(items))

    def finish() -> None:
        for b in raw_batches:
            method.to_device(b)
        if method.device.type == "cuda":
            torch.cuda.synchronize()

    variants: dict[str, Callable[[], None]] = {"decode only (read_image)": decode,
                                               "before: albumentations per item, float32": before,
                                               "i2i worker: decode + draw, uint8 (+ collate)": worker,
                                               f"finish on {args.device} (Method.to_device)": finish}
    worker()  # warm-up: caches, first-call costs, the batches finish() needs
    finish()
    best = {name: float("inf") for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)

    if args.workers:  # a real worker process: adds pickling through shared memory and the hand-over
        loader = DataLoader(seeded, batch_size=args.batch_size, num_workers=1, collate_fn=collate,
                            sampler=[(i, 1000 + i) for i in range(n)])
        for _ in loader:  # start-up
            break
        t0 = time.perf_counter()
        for _ in loader:
            pass
        best["DataLoader, 1 worker process (+ start-up)"] = time.perf_counter() - t0

    decode_rate = n / best["decode only (read_image)"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {args.data.name}/{args.phase}, {n} images, load "
          f"{args.load_size} -> crop {args.crop_size}, batch {args.batch_size}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, 1 thread; load average at the end "
          f"{load:.1f}; best of {args.rounds} interleaved rounds")
    rows = [(name, f"{n / s:.0f}", f"{1e3 * s / n:.3f}", f"{n / s / decode_rate:.2f}x") for name, s in best.items()]
    print(table_text(("variant", "img/s", "ms/img", "vs decode"), rows, right=(1, 2, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
