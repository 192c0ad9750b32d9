"""What the training-step benchmarks share: real batches, interleaved timing, memory figures.

`bench/train_step.py` (pix2pix) and `bench/cyclegan_step.py` time the engine's step against a
replica of the reference step; both go through these helpers so they measure the same way.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any, Callable

import torch

from i2i.engine import Trainer

Step = Callable[[dict[str, Any]], Any]


def make_trainer(method: str, settings: list[str], data: Path, out: Path, device: str, precision: str) -> Trainer:
    """The engine's Trainer for ``method`` with ``settings`` (``key=value``, as ``--set``), as ``i2i train``
    builds it."""
    from i2i.config import build, parse_overrides
    from i2i.registry import methods

    values = parse_overrides(settings)
    values.update(data=str(data), out_dir=str(out), name="bench", device=device, precision=precision)
    return Trainer(method, build(methods().get(method).factory.Config, overrides=values))


def batches(trainer: Trainer, n: int) -> list[dict[str, Any]]:
    """``n`` real batches from the trainer's loader (cycling), already on its device."""
    out, it = [], iter(trainer.loader)
    for _ in range(n):
        try:
            b = next(it)
        except StopIteration:
            it = iter(trainer.loader)
            b = next(it)
        out.append(trainer.method.to_device(b))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def channels_last_step(trainer: Trainer) -> Step:
    """The trainer's step on batches converted to channels_last, as the engine's loop converts them."""
    def step(b: dict[str, Any]) -> Any:
        return trainer.train_step({k: v.contiguous(memory_format=torch.channels_last)
                                   if torch.is_tensor(v) and v.ndim == 4 else v for k, v in b.items()})
    return step


def time_interleaved(variants: dict[str, Step], feed: list[dict[str, Any]], device: str,
                     warmup: list[dict[str, Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each variant in each round; the variants take turns, so noise hits all alike.

    Warm-up (and any compilation) runs on the ``warmup`` batches, outside the timings.
    """
    for fn in variants.values():
        for b in warmup:
            fn(b)
        sync(device)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            sync(device)
            t0 = time.perf_counter()
            for b in feed:
                fn(b)
            sync(device)
            times[name].append((time.perf_counter() - t0) / len(feed))
    return times


def print_memory(device: str) -> None:
    if device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
