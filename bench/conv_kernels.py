"""The i2i_cpu plugin's layers against torch's, layer by layer: forward and forward + backward.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/conv_kernels.py [--threads N] [--repeat 15]

The layers are the built-in networks' own, at batch 1 and 256x256 input: the U-Net's inner levels
(maps of 8x8 and less as one GEMM), a ResNet block's 3x3 wide convolutions (Winograd F(4x4, 3x3)),
its last 7x7 convolution to 3 channels (on 2x2 pixel blocks) and a 70x70 PatchGAN's stride-1 4x4
layer (Winograd F(3x3, 4x4)).
Each plain ``nn.Conv2d``/``nn.ConvTranspose2d`` is timed against a copy swapped by the plugin
(``i2i_cpu.layers.accelerate``), interleaved, median of ``--repeat``; outputs are checked first.
Use it to re-check the thresholds in ``i2i_cpu/layers.py`` on another CPU; ``--winograd-grid`` times
the Winograd path (forced on, thresholds off) over channels x map sizes, 3x3 and 4x4 kernels, the grid
its thresholds come from.
The Winograd rows time that layer even where the plugin keeps it off (``i2i_cpu.layers.winograd_pays``);
the header says which the plugin does on this CPU. Both columns run with freed memory kept in the
process, as the plugin's hook sets it (``--default-malloc``: glibc as it starts).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from datetime import datetime, timezone

import torch
from torch import nn

import i2i_cpu.layers as cpu_layers
from i2i_cpu import winograd
from i2i_cpu.allocator import keep_freed_memory
from i2i_cpu.layers import accelerate

#: (label, plain torch layer, input shape)
LAYERS = [
    ("unet conv 512->512, 16x16 in", lambda: nn.Conv2d(512, 512, 4, 2, 1, bias=False), (1, 512, 16, 16)),
    ("unet conv 512->512, 8x8 in", lambda: nn.Conv2d(512, 512, 4, 2, 1, bias=False), (1, 512, 8, 8)),
    ("unet conv 512->512, 4x4 in", lambda: nn.Conv2d(512, 512, 4, 2, 1, bias=False), (1, 512, 4, 4)),
    ("unet conv 512->512, 2x2 in", lambda: nn.Conv2d(512, 512, 4, 2, 1, bias=False), (1, 512, 2, 2)),
    ("unet convT 512->512, 1x1 in", lambda: nn.ConvTranspose2d(512, 512, 4, 2, 1, bias=False), (1, 512, 1, 1)),
    ("unet convT 1024->512, 2x2 in", lambda: nn.ConvTranspose2d(1024, 512, 4, 2, 1, bias=False), (1, 1024, 2, 2)),
    ("unet convT 1024->512, 4x4 in", lambda: nn.ConvTranspose2d(1024, 512, 4, 2, 1, bias=False), (1, 1024, 4, 4)),
    ("unet convT 1024->512, 8x8 in", lambda: nn.ConvTranspose2d(1024, 512, 4, 2, 1, bias=False), (1, 1024, 8, 8)),
    ("resnet conv3x3 256->256, 66x66 in", lambda: nn.Conv2d(256, 256, 3), (1, 256, 66, 66)),
    ("resnet conv3x3 256->256, 34x34 in", lambda: nn.Conv2d(256, 256, 3), (1, 256, 34, 34)),
    ("resnet conv3x3 128->128, 34x34 in", lambda: nn.Conv2d(128, 128, 3), (1, 128, 34, 34)),
    ("resnet last conv7x7 64->3, 262x262 in", lambda: nn.Conv2d(64, 3, 7), (1, 64, 262, 262)),
    ("patchgan conv4x4 256->512, 32x32 in", lambda: nn.Conv2d(256, 512, 4, padding=1), (1, 256, 32, 32)),
    ("conv5x5 64->3, 260x260 in", lambda: nn.Conv2d(64, 3, 5), (1, 64, 260, 260)),
]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def winograd_grid() -> list[tuple]:
    """3x3 stride-1 convolutions, C -> C channels, on (map + 2)^2 inputs without padding (F(4x4, 3x3)),
    and 4x4 ones from C to 2C channels on map^2 inputs with padding 1, as a PatchGAN's (F(3x3, 4x4))."""
    cpu_layers.WINOGRAD_MIN_CHANNELS = cpu_layers.WINOGRAD_MIN_PIXELS = 0  # time the Winograd path everywhere
    return [(f"winograd {c}->{c}, {hw}x{hw} out", lambda c=c: nn.Conv2d(c, c, 3), (1, c, hw + 2, hw + 2))
            for c in (64, 96, 128, 192, 256) for hw in (16, 24, 32, 48, 64, 96)] + [
            (f"winograd 4x4 {c}->{2 * c}, {hw}x{hw} in", lambda c=c: nn.Conv2d(c, 2 * c, 4, padding=1), (1, c, hw, hw))
            for c in (64, 128, 256) for hw in (16, 32, 64)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--winograd-grid", action="store_true", help="the Winograd layer over channels x map sizes")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's thresholds as they are (the plugin raises them when it swaps a layer)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, {args.threads} threads, load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}: the plugin's Winograd layer is "
          f"{'on' if cpu_layers.WINOGRAD else 'off'} here (timed below either way), its GEMMs in "
          f"{'MKL' if winograd.GEMM is None else 'oneDNN'}")
    # As the plugin's hook does when it swaps a layer; both columns run with it (--default-malloc: neither).
    if not args.default_malloc:
        print(f"freed memory kept in the process (i2i_cpu.allocator): {keep_freed_memory()}")
    cpu_layers.WINOGRAD = True
    print(f"{'layer':36s} {'torch fwd':>10s} {'i2i fwd':>8s} {'torch f+b':>10s} {'i2i f+b':>8s} {'f+b ratio':>10s}")
    for label, make, shape in winograd_grid() if args.winograd_grid else LAYERS:
        torch.manual_seed(0)
        stock = make()
        fast = copy.deepcopy(stock)
        assert accelerate(fast) == 1, label
        x = torch.randn(shape, requires_grad=True)
        with torch.no_grad():
            want, got = stock(x), fast(x)
        assert (got - want).abs().max() <= 1e-4 * want.abs().max() + 1e-6, f"{label}: outputs differ"
        g = torch.randn_like(want)

        def forward(m: nn.Module) -> None:
            with torch.no_grad():
                m(x)

        def both(m: nn.Module) -> None:
            torch.autograd.grad(m(x), [x, m.weight], g)

        times: dict[str, list[float]] = {k: [] for k in ("tf", "if", "tb", "ib")}
        for _ in range(2):  # warm-up
            forward(stock), forward(fast), both(stock), both(fast)
        for _ in range(args.repeat):
            times["tf"].append(timed(lambda: forward(stock)))
            times["if"].append(timed(lambda: forward(fast)))
            times["tb"].append(timed(lambda: both(stock)))
            times["ib"].append(timed(lambda: both(fast)))
        m = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{label:36s} {m['tf']:8.1f}ms {m['if']:6.1f}ms {m['tb']:8.1f}ms {m['ib']:6.1f}ms {m['ib'] / m['tb']:9.2f}x")


if __name__ == "__main__":
    main()
