"""`i2i serve` under load: requests/s and p50/p99 latency at 1, 4 and 16 clients, against raw onnxruntime.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/serve_load.py [--model MODEL.onnx | --generator unet_256]
        [--size 256] [--clients 1,4,16] [--requests 40] [--threads N]

Without ``--model`` the full-size generator is exported first (``i2i_export.exporter.export_onnx``).
The server is the real thing: ``i2i serve MODEL.onnx --port P`` in its own process (only the
export plugin loaded, as in a serving install), driven over HTTP on 127.0.0.1 with keep-alive
httpx clients, one thread each, posting a SIZE x SIZE PNG and reading the PNG back.

Raw onnxruntime is ``session.run`` on a ready 1x3xSIZExSIZE float32 array in a loop (same
providers, same thread count as the server's session): the ceiling the server is measured
against. Overhead at 1 client = 1 - server requests/s / raw runs/s; it includes HTTP, PNG
decoding and encoding, normalisation and padding - everything a client pays for.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image


def export(generator: str, out: Path) -> Path:
    import torch

    from i2i.registry import generators
    from i2i.testing import generator_meta
    from i2i_export.exporter import export_onnx

    spec = generators().get(generator)
    torch.manual_seed(0)
    meta = generator_meta(spec)
    meta.kwargs = {}
    return export_onnx(spec.factory().eval(), meta, out / f"{generator}.onnx")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_rate(model: Path, size: int, threads: int, seconds: float) -> tuple[float, float]:
    """(runs/s, median ms) of session.run alone."""
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    for _ in range(2):
        sess.run(["output"], {"image": x})
    times = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(times) < 5:
        t = time.perf_counter()
        sess.run(["output"], {"image": x})
        times.append(time.perf_counter() - t)
    return len(times) / (time.perf_counter() - t0), statistics.median(times) * 1000


def load(url: str, body: bytes, clients: int, requests: int) -> tuple[float, float, float, list[int]]:
    """(requests/s, p50 ms, p99 ms, status codes) with ``clients`` threads sharing ``requests`` requests."""
    latencies: list[float] = []
    codes: list[int] = []
    lock = threading.Lock()
    left = [requests]
    start = threading.Barrier(clients + 1)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=600) as c:
            c.get("/healthz")  # open the keep-alive connection before the clock starts
            start.wait()
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                t = time.perf_counter()
                r = c.post("/v1/translate", content=body, headers={"content-type": "image/png"})
                r.read()
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    codes.append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return len(latencies) / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), codes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="An exported .onnx (default: export --generator at full size).")
    p.add_argument("--generator", default="unet_256")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--clients", default="1,4,16")
    p.add_argument("--requests", type=int, default=40, help="Requests per client count (at least 2 per client).")
    p.add_argument("--raw-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: one per core).")
    args = p.parse_args()

    tmp = tempfile.TemporaryDirectory()
    model = args.model or export(args.generator, Path(tmp.name))
    image = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    body = buf.getvalue()

    port = free_port()
    blocked = "i2i_pix2pix,i2i_losses,i2i_cyclegan,i2i_srgan,i2i_inpaint,i2i_datasets"
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "I2I_BLOCK_PLUGINS": blocked}
    cmd = [sys.executable, "-m", "i2i.cli", "serve", str(model), "--port", str(port), "--device", "cpu",
           "--max-queue", "1000", "--timeout", "600"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(url + "/healthz", timeout=2)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("i2i serve did not start: " + server.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
                time.sleep(0.2)
        load(url, body, 1, 3)  # warm the server's session
        print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
              f"load average {os.getloadavg()[0]:.1f}; onnxruntime {ort.__version__}")
        print(f"model {model.name} ({model.stat().st_size / 1e6:.0f} MB), {args.size}x{args.size} PNG requests "
              f"({len(body) / 1e3:.0f} kB), `{' '.join(cmd[2:5])} ...` in its own process")
        raw_before, raw_ms = raw_rate(model, args.size, args.threads, args.raw_seconds)
        print(f"\nraw onnxruntime session.run: {raw_before:.2f} runs/s (median {raw_ms:.0f} ms)")
        print(f"{'clients':>7s} {'requests':>8s} {'req/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'vs raw':>8s}")
        results = []
        for n in (int(c) for c in args.clients.split(",")):
            rps, p50, p99, codes = load(url, body, n, max(args.requests, 2 * n))
            bad = [c for c in codes if c != 200]
            results.append((n, rps))
            print(f"{n:7d} {len(codes):8d} {rps:8.2f} {p50:8.0f} {p99:8.0f} {rps / raw_before:7.2f}x"
                  + (f"  NON-200: {sorted(set(bad))}" if bad else ""))
        raw_after, _ = raw_rate(model, args.size, args.threads, args.raw_seconds)
        raw = (raw_before + raw_after) / 2
        print(f"raw onnxruntime again: {raw_after:.2f} runs/s; mean of both {raw:.2f}")
        one = dict(results).get(1)
        if one:
            overhead = 1 - one / raw
            print(f"\noverhead at 1 client: {overhead * 100:.1f}% of raw onnxruntime throughput "
                  f"({'meets' if overhead <= 0.10 else 'misses'} the <= 10% target)")
    finally:
        server.terminate()
        server.wait(timeout=30)
        tmp.cleanup()


if __name__ == "__main__":
    main()
