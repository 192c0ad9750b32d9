"""Data loader benchmark: what one DataLoader worker delivers, against the JPEG decode alone.

Each variant is timed twice, in **CPU seconds** of the process doing the work (``time.process_time``:
user + system; time spent waiting for a core while other jobs run does not count, which makes the
figures usable on a shared machine): ``per item`` in this process on one thread (what a worker
computes: its items and their collation, in ordinary memory), and ``worker process`` in a real
``DataLoader(num_workers=1)``, measured **inside the worker** (fetching and collating; collation
there writes into fresh shared memory, whose page faults are the hand-over cost of every byte a
worker sends). The variants take turns, round by round, so the load of a shared
machine hits all alike; each one's best round is reported:

- ``decode only``: ``i2i.imageio.read_image`` of every file (the bound: a worker must decode);
- ``before``: what a worker ran before the fast loader, kept here to measure against: per item,
  the engine's seeding (``torch.manual_seed``, which also queues the CUDA seeding) and the
  albumentations pipeline (Resize 286 bicubic + RandomCrop 256 + HorizontalFlip, then float32
  CxHxW); ``default_collate`` per batch;
- ``i2i``: what a worker of the engine's DataLoader runs now (``SeededItems``: seed, ``raw_item``:
  decode, draw the crop and flip, uint8 views; :func:`i2i.data.batch.collate`).

Then, in the main process: ``finish on DEVICE``, the other half, ``Method.to_device`` (resize, crop,
flip, normalise a batch at a time) on ``--device`` (cpu: the training process; cuda: the GPU).

    python bench/data_loader.py                          # facades train, pix2pix's 286 -> 256
    python bench/data_loader.py --rounds 3 --images 100  # a quick look
    python bench/data_loader.py --device cuda            # the device half on the GPU
"""

from __future__ import annotations

import argparse
import os
import platform
import random
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
from torch.utils.data import DataLoader, Dataset, default_collate  # noqa: E402

from i2i.cli import table_text  # noqa: E402
from i2i.config import TrainConfig  # noqa: E402
from i2i.data import AlignedDataset  # noqa: E402
from i2i.data.batch import collate  # noqa: E402
from i2i.engine.data import _seed_all  # noqa: E402
from i2i.imageio import read_image  # noqa: E402
from i2i.method import Method  # noqa: E402

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"

#: seconds the current worker process has spent fetching and collating since its last batch
_busy = 0.0


class Timed(Dataset):
    """``items(index)`` timed; the batch carries the worker's busy seconds (see :func:`timed_collate`)."""

    def __init__(self, n: int, items: Callable[[int], Any]) -> None:
        self.n, self.items = n, items

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        global _busy
        t0 = time.process_time()
        out = self.items(index)
        _busy += time.process_time() - t0
        return out


def timed_collate(fn: Callable[[list[Any]], Any]) -> Callable[[list[Any]], tuple[Any, float]]:
    def run(items: list[Any]) -> tuple[Any, float]:
        global _busy
        t0 = time.process_time()
        batch = fn(items)
        busy, _busy = _busy + time.process_time() - t0, 0.0
        return batch, busy
    return run


class OldItems:
    """What a worker did per item before the fast loader (i2i/data and i2i/engine/data.py at f66135e)."""

    def __init__(self, paths: list[Path], load: int, crop: int) -> None:
        self.paths = paths
        self.pipeline = A.Compose([A.Resize(load, load, interpolation=cv2.INTER_CUBIC), A.RandomCrop(crop, crop),
                                   A.HorizontalFlip(p=0.5)], additional_targets={"B": "image"})

    def __call__(self, index: int) -> dict[str, Any]:
        seed = 1000 + index  # the engine's seeding then
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        path = self.paths[index]
        ab = read_image(path)
        half = ab.shape[1] // 2
        self.pipeline.set_random_seed(int(torch.randint(0, 2**31 - 1, ()).item()))
        out = self.pipeline(image=ab[:, :half], B=ab[:, half:2 * half])

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).float().mul_(2 / 255.0).add_(-1.0)

        return {"A": tensor(out["image"]), "B": tensor(out["B"]), "A_path": str(path), "B_path": str(path)}


class Decode:
    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __call__(self, index: int) -> int:
        return read_image(self.paths[index]).shape[0]


class NewItems:
    """``SeededItems.__getitem__`` as it runs in a worker process: seed, then ``raw_item``."""

    def __init__(self, dataset: AlignedDataset) -> None:
        self.dataset = dataset

    def __call__(self, index: int) -> dict[str, Any]:
        _seed_all(1000 + index)
        return self.dataset.raw_item(index)


class DecodeAndSend:
    """Decode and hand the decoded pixels over as they are: the ceiling of any worker that sends pixels."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __call__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(read_image(self.paths[index]))


def worker_seconds(items: Callable[[int], Any], collate_fn: Callable[[list[Any]], Any], n: int,
                   batch_size: int) -> tuple[float, list[Any]]:
    """Busy seconds of one worker process over ``n`` items, and the batches it delivered."""
    loader = DataLoader(Timed(n, items), batch_size=batch_size, num_workers=1, collate_fn=timed_collate(collate_fn))
    busy, batches = 0.0, []
    for batch, seconds in loader:
        busy += seconds
        batches.append(batch)
    return busy, batches


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
    args = ap.parse_args()
    if args.images < 1 or args.rounds < 1 or args.batch_size < 1:
        ap.error("--images, --rounds and --batch-size must be positive")
    if not (args.data / args.phase).is_dir():
        ap.error(f"no {args.phase}/ folder in {args.data}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: torch sees no CUDA GPU here")

    torch.set_num_threads(1)  # one thread, as a DataLoader worker runs (and the device half below)
    cv2.setNumThreads(1)
    ds = AlignedDataset(args.data, phase=args.phase, load_size=args.load_size, crop_size=args.crop_size,
                        max_items=args.images)
    paths = [p for p, _ in ds.pairs]
    n = len(paths)
    kinds: dict[str, tuple[Callable[[int], Any], Callable[[list[Any]], Any]]] = {
        "decode only (read_image)": (Decode(paths), default_collate),
        "before: albumentations, float32": (OldItems(paths, args.load_size, args.crop_size), default_collate),
        "i2i: decode + draw, uint8": (NewItems(ds), collate),
        "decode, pixels sent as decoded": (DecodeAndSend(paths), default_collate),
    }
    runs: dict[str, Callable[[], float]] = {}
    raw_batches: list[Any] = []  # the i2i batches, for the device half

    def in_process(items: Callable[[int], Any], fn: Callable[[list[Any]], Any], keep: bool = False) -> float:
        t0 = time.process_time()
        for start in range(0, n, args.batch_size):
            batch = fn([items(i) for i in range(start, min(start + args.batch_size, n))])
            if keep:
                raw_batches.append(batch)
        return time.process_time() - t0

    for name, (items, fn) in kinds.items():
        if name.startswith("decode only"):
            runs[name] = lambda items=items, fn=fn: in_process(items, fn)
        else:
            runs[f"{name}, per item"] = lambda items=items, fn=fn: in_process(items, fn)
            runs[f"{name}, worker process"] = lambda items=items, fn=fn: worker_seconds(items, fn, n, args.batch_size)[0]
    best = {name: float("inf") for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            best[name] = min(best[name], run())

    in_process(*kinds["i2i: decode + draw, uint8"], keep=True)  # the batches the device half finishes
    method = Method(TrainConfig())
    method.device = torch.device(args.device)
    finish = f"finish on {args.device} (Method.to_device, main process)"
    best[finish] = float("inf")
    for _ in range(args.rounds):
        t0 = time.process_time()
        for b in raw_batches:
            method.to_device(b)
        if method.device.type == "cuda":
            torch.cuda.synchronize()
        best[finish] = min(best[finish], time.process_time() - t0)  # with CUDA: the host's share only

    decode_rate = n / best["decode only (read_image)"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {args.data.name}/{args.phase}, {n} images, load "
          f"{args.load_size} -> crop {args.crop_size}, batch {args.batch_size}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, 1 thread; "
          f"load average at the end {load:.1f}; best of {args.rounds} interleaved rounds")
    rows = [(name, f"{n / s:.0f}", f"{1e3 * s / n:.3f}", f"{n / s / decode_rate:.2f}x") for name, s in best.items()]
    print(table_text(("variant", "img/s", "ms/img", "vs decode"), rows, right=(1, 2, 3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
