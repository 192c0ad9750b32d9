"""onnxruntime against PyTorch eager: latency of full-size generators at one image, on this machine's CPU.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/onnx_latency.py [--models unet_256,resnet_9blocks] [--size 256]
        [--threads N] [--repeat 30] [--ops]

Each generator is built at its paper size (unet_256: ngf 64, batch norm; resnet_9blocks: ngf 64,
instance norm), exported twice with ``i2i_export.exporter.export_onnx`` (the code behind ``i2i export``):
plain, and with ``optimize="cpu"`` (``i2i export --optimize cpu``: onnxscript's optimizer, then the
Winograd, narrow-convolution and transposed-convolution rewrites of ``i2i_export.cpu_graph``), and run
at batch 1, SIZE x SIZE, float32:

- PyTorch eager in eval mode under ``torch.inference_mode()``, ``torch.set_num_threads(N)``, on the
  plain built-in networks (the ratio's base), and with the opt-in CPU kernels (the i2i_cpu plugin,
  ``i2i translate --cpu-kernels``). Each runs in a fresh worker process of its own, as a user's
  script would, and is timed inside it;
- onnxruntime at ``ORT_ENABLE_ALL`` (the fastest level in every earlier run), ``intra_op_num_threads=N``,
  sequential execution, with and without spinning worker threads, on the plain file; and on the
  ``--optimize cpu`` file without spinning, which is how i2i's runtime opens files.

Calls are interleaved round-robin (one call of each contender per round), so load from other
processes on a shared machine hits all of them alike, with a pause before each call (``--gap``) so
thread pools still spinning after one contender's call cannot slow the next one down; the ratio
columns are median / PyTorch's median, by default and with the allocator pinned (below).
The outputs are compared first (max |diff|) so a fast but wrong graph cannot win.

Why fresh processes: stock PyTorch's unet_256 time depends on glibc's allocator. By default freed
multi-MB buffers may go back to the kernel and be faulted in again on the next call, and whether
they do depends on the process's history: in a fresh process they mostly do (163-266 ms here), in
this script's own process, after exporting and onnxruntime sessions, sometimes not (135-168 ms).
onnxruntime uses its own arena. So PyTorch is timed where a user runs it, in a process of its own, and once more with
glibc's thresholds pinned (``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``), which removes the
page faults: the ratios against both are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
import torch

from i2i.testing import generator_meta
from i2i_export.exporter import export_onnx

LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def build(name: str) -> tuple[torch.nn.Module, object]:
    """The full-size generator and its metadata (straight from the network modules if not registered)."""
    from i2i.registry import generators

    if name in generators():
        spec = generators().get(name)
        torch.manual_seed(0)
        module = spec.factory()
        meta = generator_meta(spec)
        meta.kwargs = {}
        return module.eval(), meta
    if name == "resnet_9blocks":  # the CycleGAN plugin not registered yet: build it from its module
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
        from i2i.artifact import GeneratorMeta
        from i2i_cyclegan.networks import resnet_9blocks

        torch.manual_seed(0)
        return resnet_9blocks().eval(), GeneratorMeta(name=name, size_multiple=4)
    raise SystemExit(f"unknown generator {name!r}")


#: glibc keeps freed blocks instead of returning them to the kernel (no page faults on the next call)
PINNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "2147483648"}


def worker(name: str, layers: str, size: int, threads: int, out: Path) -> None:
    """``--worker``: build ``name`` as the parent does, save one output to ``out``, then run one timed call
    per line on stdin and print its seconds."""
    torch.set_num_threads(threads)
    module, _ = build(name)
    if layers == "cpu_kernels":  # what `i2i translate --cpu-kernels` does
        from i2i.accelerate import cpu_kernels

        cpu_kernels(module, "cpu")
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32))
    with torch.inference_mode():
        np.save(out, module(x).numpy())
        print("ready", flush=True)
        for _ in sys.stdin:
            t = time.perf_counter()
            module(x)
            print(time.perf_counter() - t, flush=True)


class PyTorchProcess:
    """PyTorch eager in a fresh process of its own; calling it times one call there."""

    def __init__(self, name: str, layers: str, size: int, threads: int, workdir: Path, env: dict[str, str]) -> None:
        out = workdir / f"{name}-{layers}-{len(env)}.npy"
        cmd = [sys.executable, __file__, "--worker", f"{name}:{layers}", "--size", str(size), "--threads", str(threads),
               "--worker-out", str(out)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, **env})
        if self.proc.stdout.readline().strip() != "ready":  # type: ignore[union-attr]
            raise SystemExit(f"the PyTorch worker for {name} ({layers}) failed")
        self.output = np.load(out)

    def __call__(self) -> float:
        self.proc.stdin.write("run\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        return float(self.proc.stdout.readline())  # type: ignore[union-attr]

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait(timeout=60)


def session(path: Path | bytes, level: str, threads: int, spin: bool, profile: bool = False) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.enable_profiling = profile
    opts.graph_optimization_level = LEVELS[level]
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def op_times(graphs: dict[str, Path | bytes], threads: int, x: np.ndarray, runs: int) -> None:
    """onnxruntime's profiler: milliseconds per run by operator type for each graph (all, no spin),
    runs interleaved."""
    sessions = {label: session(g, "all", threads, False, profile=True) for label, g in graphs.items()}
    for _ in range(runs):
        for sess in sessions.values():
            sess.run(["output"], {"image": x})
    totals: dict[str, dict[str, float]] = {}
    for label, sess in sessions.items():
        per_op: dict[str, float] = {}
        path = sess.end_profiling()
        for e in json.loads(Path(path).read_text()):
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                op = e["args"].get("op_name", "?")
                per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000 / runs
        Path(path).unlink()
        totals[label] = per_op
    ops = sorted({op for t in totals.values() for op in t}, key=lambda op: -max(t.get(op, 0) for t in totals.values()))
    print(f"\nonnxruntime profile, ms per run ({runs} runs each, interleaved)")
    print(f"{'operator':22s}" + "".join(f"{label:>32s}" for label in totals))
    for op in ["all nodes"] + ops:
        cells = [sum(t.values()) if op == "all nodes" else t.get(op, 0.0) for t in totals.values()]
        print(f"{op:22s}" + "".join(f"{c:32.1f}" for c in cells))


def bench_model(name: str, size: int, threads: int, repeat: int, warmup: int, gap: float, workdir: Path,
                ops: bool = False) -> list[tuple[str, float, float, float]]:
    module, meta = build(name)
    path, cpu_path = workdir / f"{name}.onnx", workdir / f"{name}_cpu.onnx"
    t0 = time.perf_counter()
    export_onnx(module, meta, path)  # type: ignore[arg-type]
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    export_onnx(module, meta, cpu_path, optimize="cpu")  # type: ignore[arg-type]
    export_cpu_s = time.perf_counter() - t0
    del module  # PyTorch runs in worker processes of its own
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)

    workers = {"pytorch eager": PyTorchProcess(name, "plain", size, threads, workdir, {}),
               "pytorch eager, malloc pinned": PyTorchProcess(name, "plain", size, threads, workdir, PINNED_MALLOC),
               "pytorch, cpu_kernels": PyTorchProcess(name, "cpu_kernels", size, threads, workdir, {})}
    ref = workers["pytorch eager"].output
    outputs: dict[str, np.ndarray] = {label: w.output for label, w in workers.items()}
    timed: dict[str, Callable[[], float]] = dict(workers)

    def ort_call(sess: ort.InferenceSession) -> Callable[[], float]:
        def call() -> float:
            t = time.perf_counter()
            sess.run(["output"], {"image": x})
            return time.perf_counter() - t
        return call

    sessions = {"ort all": session(path, "all", threads, True), "ort all, no spin": session(path, "all", threads, False),
                "ort --optimize cpu (all, no spin)": session(cpu_path, "all", threads, False)}
    graphs: dict[str, Path | bytes] = {"plain": path, "--optimize cpu": cpu_path}
    for label, sess in sessions.items():
        outputs[label] = sess.run(["output"], {"image": x})[0]
        timed[label] = ort_call(sess)
    for label, out in outputs.items():
        diff = float(np.abs(out - ref).max())
        if diff > 1e-3:
            raise SystemExit(f"{name} {label}: output differs from PyTorch by {diff:.3g}")
    times: dict[str, list[float]] = {k: [] for k in timed}
    for r in range(warmup + repeat):
        for label, fn in timed.items():
            time.sleep(gap)
            seconds = fn()
            if r >= warmup:
                times[label].append(seconds)
    for w in workers.values():
        w.close()
    base = statistics.median(times["pytorch eager"])
    pinned = statistics.median(times["pytorch eager, malloc pinned"])
    print(f"\n{name} at 1x3x{size}x{size}, {threads} threads, {repeat} interleaved rounds, load average {os.getloadavg()[0]:.1f} "
          f"(export {export_s:.1f} s, {path.stat().st_size / 1e6:.1f} MB; --optimize cpu {export_cpu_s:.1f} s, "
          f"{cpu_path.stat().st_size / 1e6:.1f} MB)")
    print(f"{'':34s} {'median ms':>10s} {'p90 ms':>8s} {'vs PyTorch':>10s} {'vs pinned':>10s}")
    rows = []
    for label, ts in times.items():
        med, p90 = statistics.median(ts), float(np.percentile(ts, 90))
        rows.append((label, med, med / base, med / pinned))
        print(f"{label:34s} {med * 1000:10.1f} {p90 * 1000:8.1f} {med / base:9.2f}x {med / pinned:9.2f}x")
    if ops:
        op_times(graphs, threads, x, repeat)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="unet_256,resnet_9blocks")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--gap", type=float, default=0.3, help="Seconds of pause before each timed call.")
    p.add_argument("--ops", action="store_true", help="also print onnxruntime's profile by operator type")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # NAME:plain|cpu_kernels, a PyTorch worker process
    p.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        name, layers = args.worker.split(":")
        worker(name, layers, args.size, args.threads, args.worker_out)
        return
    torch.set_num_threads(args.threads)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}")
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            rows = bench_model(name.strip(), args.size, args.threads, args.repeat, args.warmup, args.gap, Path(tmp),
                               ops=args.ops)
            summary.append((name, {label: (med, ratio, ratio_pinned) for label, med, ratio, ratio_pinned in rows}))
    print("\nsummary, ratios to PyTorch eager on the plain networks (target: --optimize cpu <= 0.6x)")
    for name, rows in summary:
        base = rows["pytorch eager"][0]
        med, ratio, ratio_pinned = rows["ort --optimize cpu (all, no spin)"]
        verdict = "meets" if ratio <= 0.6 else "misses"
        print(f"  {name}: PyTorch {base * 1000:.0f} ms; PyTorch cpu_kernels {rows['pytorch, cpu_kernels'][1]:.2f}x; "
              f"ort plain file {rows['ort all, no spin'][1]:.2f}x; ort --optimize cpu {med * 1000:.0f} ms = {ratio:.2f}x "
              f"({verdict} the target; {ratio_pinned:.2f}x against PyTorch with malloc pinned)")


if __name__ == "__main__":
    main()
