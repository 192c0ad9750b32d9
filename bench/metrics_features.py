"""Metric costs on the CPU, side by side in one run: feature extraction (Inception for FID/KID/IS,
AlexNet for LPIPS) in images/s, FID's matrix square root at 2048-d (ours vs torchmetrics'), and SSIM
(ours vs torchmetrics') per 256x256 RGB pair.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/metrics_features.py [--size 256] [--batch 8] [--rounds 3]
        [--inception FILE] [--alexnet FILE]

Without --inception/--alexnet (no network here) the networks are randomly initialised: the same
layers, so the same speed; the values mean nothing. Contenders alternate within each round; the
medians and the ratios are printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from typing import Callable

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="image side (Inception resizes to 299)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--inception", help="the real Inception weights (else random init)")
    ap.add_argument("--alexnet", help="torchvision's AlexNet weights (else random init)")
    args = ap.parse_args()

    import torch
    from torchmetrics.functional.image import structural_similarity_index_measure
    from torchmetrics.image.fid import _compute_fid

    import i2i.metrics as M
    from i2i_metrics.distribution import _to_uint8, inception, write_random_inception

    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp(prefix="i2i-bench-metrics-")
    weights = args.inception
    if not weights:
        weights = os.path.join(tmp, "random_inception.pth")
        write_random_inception(weights)
    net = inception("2048", torch.device("cpu"), weights)
    lpips = M.create("lpips", weights=args.alexnet) if args.alexnet else M.create("lpips", random_backbone=True)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    other = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    feats = torch.randn(4096, 2048, generator=g, dtype=torch.float64)
    cov1, cov2 = torch.cov(feats[:2048].T), torch.cov(feats[2048:].T)
    mu = torch.zeros(2048, dtype=torch.float64)
    ssim = M.create("ssim")
    x64, y64 = images[:4].double(), other[:4].double()

    def ours_ssim() -> None:
        ssim.reset()
        ssim.update(x64, y64)

    def tm_ssim() -> None:
        structural_similarity_index_measure(x64 * 255, y64 * 255, data_range=255.0, reduction="none")

    results: dict[str, list[float]] = {k: [] for k in ("inception", "lpips", "fid_tm", "ssim_ours", "ssim_tm")}
    with torch.no_grad():
        net.net(_to_uint8(images[:1]))  # warm-up
        lpips.update(images[:1], other[:1])
        for r in range(args.rounds):
            results["inception"].append(timed(lambda: net.net(_to_uint8(images))))
            results["lpips"].append(timed(lambda: lpips.update(images, other)))
            results["fid_tm"].append(timed(lambda: _compute_fid(mu, cov1, mu, cov2)))
            results["ssim_ours"].append(timed(ours_ssim))
            results["ssim_tm"].append(timed(tm_ssim))
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{platform.processor() or platform.machine()}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load {load:.1f}, {args.rounds} rounds, batch {args.batch}, {args.size}x{args.size}, "
          f"{'real' if args.inception else 'random'} Inception, {'real' if args.alexnet else 'random'} AlexNet")
    print(f"Inception (FID/KID/IS features): {args.batch / med['inception']:.2f} images/s ({med['inception'] / args.batch * 1000:.0f} ms/image)")
    print(f"LPIPS AlexNet: {args.batch / med['lpips']:.2f} pairs/s ({med['lpips'] / args.batch * 1000:.0f} ms/pair)")
    print(f"FID 2048-d from statistics (torchmetrics, which i2i's fid uses): {med['fid_tm']:.2f} s")
    print(f"SSIM, 4 RGB pairs float64: ours (separable) {med['ssim_ours']:.2f} s, torchmetrics {med['ssim_tm']:.2f} s, "
          f"ratio {med['ssim_ours'] / med['ssim_tm']:.2f}x")


if __name__ == "__main__":
    main()
