"""Peak memory of the CycleGAN generator step's six passes, the plain networks against cpu_kernels.

    NO_ALBUMENTATIONS_UPDATE=1 python bench/generator_memory.py [--size 256] [--blocks 9]

Two resnet generators (ngf 64) run what a CycleGAN G step runs, fake_B = G_A(A), rec_A = G_B(fake_B),
fake_A = G_B(B), rec_B = G_A(fake_A) and the identity passes G_A(B), G_B(A), then one backward
through all of it. Each variant runs in a fresh process, and the figure is that process's peak RSS
above what it held once the models were built: the activations autograd keeps, which is where
the i2i_cpu plugin's Winograd layer (it keeps the transformed input V, 2.25x the input) differs from nn.Conv2d.
The Winograd layer is forced on (``I2I_CPU_WINOGRAD=1``) and the plugin's allocator setting made as
its hook makes it (freed memory kept: ``i2i_cpu.allocator``), so the figure is what a user's
``cpu_kernels`` process holds.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("I2I_CPU_WINOGRAD", "1")  # measure the Winograd layer on any CPU
PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def run_variant(variant: str, size: int, blocks: int) -> None:
    """One G step's passes and backward; prints the peak RSS growth in MiB."""
    import torch

    sys.path.insert(0, str(PLUGINS))  # a source checkout without `pip install -e .` still works
    from i2i_cyclegan.networks import ResnetGenerator

    torch.manual_seed(0)
    g_a, g_b = (ResnetGenerator(3, 3, ngf=64, n_blocks=blocks) for _ in range(2))
    if variant == "cpu_kernels":
        from i2i_cpu.allocator import keep_freed_memory
        from i2i_cpu.layers import accelerate

        accelerate(g_a), accelerate(g_b)
        keep_freed_memory()
    a, b = torch.rand(1, 3, size, size) * 2 - 1, torch.rand(1, 3, size, size) * 2 - 1
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fake_b, fake_a = g_a(a), g_b(b)
    rec_a, rec_b, idt_a, idt_b = g_b(fake_b), g_a(fake_a), g_a(b), g_b(a)
    loss = sum((x - y).abs().mean() for x, y in [(rec_a, a), (rec_b, b), (idt_a, b), (idt_b, a)])
    (loss + fake_a.square().mean() + fake_b.square().mean()).backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print((peak - base) // 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--variant", choices=["plain", "cpu_kernels"], help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args()
    if args.variant:
        run_variant(args.variant, args.size, args.blocks)
        return
    print(f"2 x resnet_{args.blocks}blocks (ngf 64), {args.size}x{args.size}, batch 1, fp32: "
          "peak RSS growth of the G step's six passes + backward")
    for variant, label in (("plain", "plain nn.Conv2d"), ("cpu_kernels", "cpu_kernels (Winograd)")):
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--size", str(args.size),
                              "--blocks", str(args.blocks)], capture_output=True, text=True, check=True)
        print(f"  {label:24s} {int(out.stdout.split()[-1]):6d} MiB")


if __name__ == "__main__":
    main()
