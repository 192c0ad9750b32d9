"""What the training-step benchmarks share: real batches, interleaved timing, memory figures, workers.

`bench/train_step.py` (pix2pix) and `bench/cyclegan_step.py` time the engine's step against a
replica of the reference step; both go through these helpers so they measure the same way.

A variant whose setting changes the whole process (``cpu_kernels=true``: the i2i_cpu plugin raises
glibc's malloc thresholds, which alone speeds up every variant in that process) runs in a
:class:`Worker` process of its own, still taking its turn in each round.
"""

from __future__ import annotations

import resource
import subprocess
import sys
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


class Worker:
    """A variant in a process of its own: ``script --worker SETTINGS ...`` builds its trainer there and
    :func:`serve` s its steps; calling the worker with ``n`` times ``n`` steps there (seconds per step)."""

    def __init__(self, script: str, args: list[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        if self.proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit(f"the benchmark worker {' '.join(args)} failed (its error is above)")

    def __call__(self, n: int) -> float:
        self.proc.stdin.write(f"{n}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return self._number()

    def close(self) -> float:
        """End the worker; returns its peak RSS in MiB."""
        self.proc.stdin.close()  # type: ignore[union-attr]
        rss = self._number()
        self.proc.wait(timeout=60)
        return rss

    def _number(self) -> float:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        try:
            return float(line)
        except ValueError:
            raise SystemExit(f"the benchmark worker {' '.join(self.proc.args[2:])} stopped answering "
                             f"({line.strip() or 'it exited'}; its error is above)") from None


def serve(step: Step, feed: list[dict[str, Any]], device: str) -> None:
    """The worker's side: say ready, then for each ``n`` read from stdin run ``n`` steps (cycling through
    ``feed``) and print seconds per step; at the end of stdin print the peak RSS in MiB."""
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        sync(device)
        t0 = time.perf_counter()
        for i in range(n):
            step(feed[i % len(feed)])
        sync(device)
        print((time.perf_counter() - t0) / n, flush=True)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)


def time_interleaved(variants: dict[str, Step | Worker], feed: list[dict[str, Any]], device: str,
                     warmup: list[dict[str, Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each variant in each round; the variants take turns, so noise hits all alike.

    Warm-up (and any compilation) runs on the ``warmup`` batches, outside the timings. A :class:`Worker`
    runs as many steps in its own process.
    """
    for fn in variants.values():
        if isinstance(fn, Worker):
            fn(len(warmup))
            continue
        for b in warmup:
            fn(b)
        sync(device)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            if isinstance(fn, Worker):
                times[name].append(fn(len(feed)))
                continue
            sync(device)
            t0 = time.perf_counter()
            for b in feed:
                fn(b)
            sync(device)
            times[name].append((time.perf_counter() - t0) / len(feed))
    return times


#: a worker setting: glibc's malloc thresholds raised as the i2i_cpu plugin raises them, without its kernels
KEEP_MEMORY = "keep_memory"


def run_worker(settings: str, make: Callable[[list[str]], Trainer], n_batches: int, device: str) -> None:
    """``--worker SETTINGS``: build the trainer with the comma-separated ``SETTINGS`` (``--set`` style,
    or :data:`KEEP_MEMORY`) and :func:`serve` its steps on ``n_batches`` real batches."""
    items = [s for s in settings.split(",") if s]
    if KEEP_MEMORY in items:
        from i2i_cpu.allocator import keep_freed_memory

        keep_freed_memory()
    trainer = make([s for s in items if s != KEEP_MEMORY])
    serve(trainer.train_step, batches(trainer, n_batches), device)


def cpu_kernel_workers(script: str, precision: str, args: list[str]) -> dict[str, Worker]:
    """The engine with ``cpu_kernels=true`` and the plain engine with only its kept memory, each in a
    :class:`Worker` process of ``script`` (``args``: what it needs to build the same trainer), keyed by
    their row labels. Processes of their own: the plugin keeps freed memory in its process
    (i2i_cpu.allocator), which alone speeds up any variant there; the second shows that part alone."""
    return {f"i2i engine ({precision}, {label})": Worker(script, ["--worker", setting, *args])
            for label, setting in (("cpu_kernels", "cpu_kernels=true"), ("memory kept", KEEP_MEMORY))}


def print_workers(workers: dict[str, Worker]) -> None:
    """End the workers and print each one's peak RSS."""
    for name, w in workers.items():
        print(f"peak RSS of the {name} worker: {w.close():.0f} MiB")


def print_memory(device: str) -> None:
    if device.startswith("cuda"):
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
