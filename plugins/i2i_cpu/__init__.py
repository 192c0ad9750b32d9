"""Opt-in CPU kernels for the PyTorch path: faster convolutions for fp32 on the CPU, no network changed.

The built-in networks are plain ``torch.nn`` modules. When a user asks for CPU kernels
(``i2i train ... --set cpu_kernels=true``, ``i2i translate --cpu-kernels``,
``i2i.load(source, cpu_kernels=True)``), the host hands each generator to every plugin's
``accelerate`` hook, and this one swaps eligible ``nn.Conv2d`` / ``nn.ConvTranspose2d`` layers for
subclasses with other kernels, in place, with the same parameters and state_dict keys
(:mod:`i2i_cpu.layers`):

- convolutions and transposed convolutions on small maps (a U-Net's inner levels) as one GEMM;
- convolutions to at most 4 channels with kernels of 5 and more (a ResNet generator's last layer) on
  2x2 pixel blocks (:mod:`i2i_cpu.space_to_depth`);
- wide 3x3 and 4x4 stride-1 convolutions (a ResNet generator's residual blocks, a PatchGAN's
  stride-1 layer) as Winograd F(4x4, 3x3) and F(3x3, 4x4), forward and backward
  (:mod:`i2i_cpu.winograd`; first derivatives only), their transforms in C (:mod:`i2i_cpu.native`:
  compiled on first use with the system C compiler, else torch operations).

Once it has swapped a layer, freed memory stays in the process for its lifetime (:mod:`i2i_cpu.allocator`:
glibc told not to map and unmap large blocks), since the layers' transient buffers and large gradients
would otherwise page-fault on every call.

Only on the CPU in fp32: anything else (CUDA, autocast, tracing, ONNX export) keeps the standard
operators. Block it like any plugin: ``I2I_BLOCK_PLUGINS=i2i_cpu``. The ONNX counterpart is an
export-time choice of the export package: ``i2i export --optimize cpu``.
"""

from __future__ import annotations

import i2i

# torch is imported inside the hook: `i2i --help` and a torch-free `i2i serve` load this plugin.


@i2i.hookimpl
def accelerate(module, device, precision: str) -> int:
    """Swap ``module``'s eligible convolutions for the CPU layers when it runs in fp32 on the CPU."""
    import torch

    if torch.device(device).type != "cpu" or precision != "fp32":
        return 0
    from . import layers, native
    from .allocator import keep_freed_memory

    count = layers.accelerate(module)
    if count:
        keep_freed_memory()  # the layers' transient buffers would otherwise page-fault on every call
        if layers.may_use_winograd(module):
            native.kernels()  # built (or its warning given) now, not inside the first training step
    return count
