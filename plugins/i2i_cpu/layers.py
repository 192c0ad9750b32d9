"""The CPU layers: ``nn.Conv2d`` / ``nn.ConvTranspose2d`` subclasses that pick faster kernels for
what oneDNN does slowly, and :func:`accelerate` / :func:`restore`, which swap them in and out of a
built network in place.

A swap changes only a layer's class (``module.__class__``): parameters, buffers and state_dict keys
stay what they were, so checkpoints, EMA copies and exports are unaffected. Each layer decides per
call; anything but a float32 4-D CPU tensor in eager mode (autocast, tracing, scripting, ONNX export,
other devices and dtypes) takes the standard ``nn.Conv2d`` path, so an accelerated network still
exports the standard operators.

**Convolutions on small maps as one GEMM.** With batch 1, a U-Net's innermost layers see 1x1 to 8x8
maps but hold most of its weights (512-1024 channels, 4x4 kernels: up to 33 MB each). oneDNN then
spends its time reordering those weights into its blocked layout on every call, forward and backward
(3-30 GFLOP/s measured on a 2-core EPYC against ~100 for the outer layers). Written as one matrix
product (unfold/fold around an MKL GEMM) the same sums run up to 2-3x faster there
(bench/conv_kernels.py). Only the kernel and the summation order differ.

**Few outputs, large kernels, on 2x2 pixel blocks** (:mod:`i2i_cpu.space_to_depth`): a generator's
last layer (7x7, 64 -> 3 channels) is one of oneDNN's slow cases; as a 4x4 convolution to 12 channels
on a quarter of the pixels it takes ~0.55x of the time forward + backward.

**Wide 3x3 and 4x4 convolutions as Winograd F(4x4, 3x3) and F(3x3, 4x4)** (:mod:`i2i_cpu.winograd`),
forward and both gradients with a quarter of the multiplications: a ResNet generator spends ~70% of a
CPU training step in its 3x3 256-channel residual convolutions, a PatchGAN much of its time in its one
stride-1 4x4 256 -> 512 layer. First derivatives only: a second derivative
through such a layer (a gradient penalty) raises instead of being wrong. Rounding differs from the
direct sum by ~1e-5 relative; the layer keeps its transformed input (2.25x the input) for the weight
gradient, so a CycleGAN generator step holds ~50% more activation memory.

The thresholds depend on the CPU (:func:`thresholds`: measured on a 2-core AVX2 EPYC and a 2-core
AVX-512 EPYC, BENCHMARKS.md); re-check them on another CPU with ``bench/conv_kernels.py``
(``--winograd-grid`` for the Winograd ones). :func:`winograd_pays` says where the Winograd layer is
used at all.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd
from .space_to_depth import space_to_depth_conv
from .winograd import winograd_conv


class Thresholds(NamedTuple):
    """Where each kernel beats oneDNN on a CPU (``bench/conv_kernels.py``, ``--winograd-grid``)."""

    #: largest GEMM width (batch x output positions) computed as a matrix product; larger maps keep oneDNN
    small_map_columns: int
    #: Winograd: narrower convolutions gain too little from the 36 GEMMs to pay for the transforms
    winograd_min_channels: int
    #: Winograd: smaller input maps stay direct, the transforms' fixed costs dominate there
    winograd_min_pixels: int


def thresholds(capability: str | None = None) -> Thresholds:
    """The thresholds for torch's CPU capability (``capability``), each measured on a 2-core EPYC.

    AVX2 (2026-11, Winograd transforms in torch operations): small maps up to 64 columns, Winograd from
    128 channels and 32x32 (8x8: 3-4x slower). AVX-512 (2026-12, freed memory kept as
    :mod:`i2i_cpu.allocator` keeps it, transforms in C): oneDNN's own kernels are faster there, so only
    the innermost U-Net layers (one column: 0.73-0.78x) take the GEMM (2-64 columns measured
    0.89-1.57x), and Winograd from 192 channels and 32x32 inputs (3x3: 192 channels 0.91x and 256
    0.86x at 32x32, 256 at 64x64 0.54x; 128 channels 1.31x at 32x32, 0.70x at 64x64; 4x4, 256 -> 512:
    0.74x at 32x32, 1.49x at 16x16)."""
    capability = winograd.cpu_capability(capability)
    if capability.startswith("AVX512"):
        return Thresholds(small_map_columns=1, winograd_min_channels=192, winograd_min_pixels=32 * 32)
    return Thresholds(small_map_columns=64, winograd_min_channels=128, winograd_min_pixels=32 * 32)


#: this CPU's thresholds (:func:`thresholds`), read once at import
SMALL_MAP_COLUMNS, WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_PIXELS = thresholds()
#: Space-to-depth for convolutions with at most this many outputs and kernels of at least this size
#: (bench/conv_kernels.py, AVX-512 EPYC: 64 -> 1-4 channels 7x7 0.54-0.56x forward + backward, 5x5 0.82x;
#: 8 outputs 0.93x, 3x3 1.31x). The same rule as ``i2i export --optimize cpu``'s narrow rewrite.
NARROW_MAX_OUT, NARROW_MIN_KERNEL = 4, 5
#: Below this GEMM width (but above 1) MKL's GEMMs turn erratic: the transposed convolution multiplies
#: with the map on the left, the convolution stays with oneDNN.
SKINNY_COLUMNS = 8


def _cpu_fp32_eager(x: torch.Tensor) -> bool:
    """Whether a CPU kernel may run: a 4-D float32 CPU tensor, no autocast, and no tracing, scripting
    or ONNX export (those keep the standard Conv/ConvTranspose operators in the graph)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and not torch.is_autocast_enabled("cpu")


def _use_gemm(columns: int, skinny: bool = True) -> bool:
    """Whether to compute a layer as one GEMM of ``columns`` columns (``skinny``: also 2-7 of them)."""
    return columns <= SMALL_MAP_COLUMNS and (skinny or not 1 < columns < SKINNY_COLUMNS)


def winograd_pays(capability: str | None = None, setting: str | None = None) -> bool:
    """Whether this CPU runs the Winograd layer faster than oneDNN's direct convolution.

    Measured with ``bench/conv_kernels.py`` (256 channels, 64x64, forward + backward, 2 threads): on an
    AVX2 EPYC Winograd took 0.57x of oneDNN's time with MKL's GEMMs; on an AVX-512 EPYC 1.17x with
    MKL's GEMMs (MKL's sgemm keeps to AVX2 on AMD CPUs while oneDNN runs AVX-512) and 0.71x with
    oneDNN's (:data:`i2i_cpu.winograd.GEMM`). So it is used where torch's CPU capability
    (``torch.backends.cpu.get_cpu_capability()``, or ``capability``) is AVX2, or AVX-512 with oneDNN's
    GEMM at hand, and nowhere else. ``I2I_CPU_WINOGRAD=1`` (or ``setting``) forces it on, ``0`` off,
    for a CPU where ``python bench/conv_kernels.py`` says otherwise."""
    setting = os.environ.get("I2I_CPU_WINOGRAD", "") if setting is None else setting
    if setting.strip() in ("0", "1"):
        return setting.strip() == "1"
    capability = winograd.cpu_capability(capability)
    return capability == "AVX2" or (capability.startswith("AVX512") and winograd.GEMM is not None)


#: Winograd on this CPU at all (:func:`winograd_pays`, read once at import).
WINOGRAD = winograd_pays()


def _winograd_shape(conv: nn.Conv2d) -> bool:
    """A 3x3 or 4x4 stride-1 layer wide enough for the Winograd path on this CPU (map size aside)."""
    return (WINOGRAD and conv.kernel_size in ((3, 3), (4, 4)) and conv.stride == (1, 1)
            and min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS)


def _use_winograd(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return _winograd_shape(conv) and x.shape[-2] * x.shape[-1] >= WINOGRAD_MIN_PIXELS


def _same_dtype(layer: nn.Module, x: torch.Tensor) -> bool:
    """Weight and bias in ``x``'s dtype; else the standard layer runs and raises its own error (the
    plugin's kernels would compute in another dtype, or read a half weight as float32)."""
    return layer.weight.dtype == x.dtype and (layer.bias is None or layer.bias.dtype == x.dtype)


def _use_space_to_depth(conv: nn.Conv2d) -> bool:
    return conv.stride == (1, 1) and conv.out_channels <= NARROW_MAX_OUT and min(conv.kernel_size) >= NARROW_MIN_KERNEL


def _plain_conv(m: nn.Conv2d) -> bool:
    """Ungrouped, undilated, zero-padded with explicit padding: what both CPU paths compute."""
    return (m.groups == 1 and m.dilation == (1, 1) and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def _plain_conv_transpose(m: nn.ConvTranspose2d) -> bool:
    return m.groups == 1 and m.dilation == (1, 1) and m.output_padding == (0, 0) and m.padding_mode == "zeros"


class CpuConv2d(nn.Conv2d):
    """``nn.Conv2d`` that runs wide 3x3 and 4x4 convolutions as Winograd F(4x4, 3x3) and F(3x3, 4x4),
    narrow large-kernel ones on 2x2 pixel blocks and small maps as one GEMM on the CPU (same
    parameters, same maths). Made by :func:`accelerate`, not built directly."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _cpu_fp32_eager(x):
            return super().forward(x)
        n, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding  # type: ignore[misc]
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1 or not _same_dtype(self, x):  # the standard layer, for its own error
            return super().forward(x)
        if _use_winograd(self, x):
            return winograd_conv(x, self.weight, self.bias, self.padding)  # type: ignore[arg-type]
        if _use_space_to_depth(self):
            return space_to_depth_conv(x, self.weight, self.bias, self.padding)  # type: ignore[arg-type]
        # 2-7 columns: MKL's skinny GEMMs in the backward pass make this 2x slower than oneDNN
        # (bench/conv_kernels.py: 512->512 on a 4x4 map, 27 vs 14 ms forward + backward).
        if not _use_gemm(n * ho * wo, skinny=False):
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # n, c*kh*kw, ho*wo
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # one GEMM over the whole batch
        out = self.weight.reshape(self.out_channels, -1) @ cols  # out, n*ho*wo
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.reshape(self.out_channels, n, ho, wo).transpose(0, 1).contiguous()


class CpuConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that computes small input maps on the CPU as one GEMM and a fold."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None or not _cpu_fp32_eager(x):
            return super().forward(x, output_size)
        n, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding  # type: ignore[misc]
        ho, wo = (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw
        # an empty output or mixed dtypes: the standard layer, for its own error
        if ho < 1 or wo < 1 or not _same_dtype(self, x) or not _use_gemm(n * h * w):
            return super().forward(x, output_size)
        weight = self.weight.reshape(self.in_channels, -1)  # in, out*kh*kw
        if n * h * w < SKINNY_COLUMNS:
            # A handful of positions: MKL is several times faster with the skinny operand on the left.
            cols = (x.reshape(n, self.in_channels, h * w).transpose(1, 2) @ weight).transpose(1, 2)
        else:
            cols = weight.t() @ x.transpose(0, 1).reshape(self.in_channels, n * h * w)  # out*kh*kw, n*h*w
            cols = cols.reshape(cols.shape[0], n, h * w).transpose(0, 1)
        out = F.fold(cols, (ho, wo), (kh, kw), padding=(ph, pw), stride=(sh, sw))
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out


#: torch class -> (CPU class, which of its layers the CPU class computes)
_SWAPS = {nn.Conv2d: (CpuConv2d, _plain_conv), nn.ConvTranspose2d: (CpuConvTranspose2d, _plain_conv_transpose)}
_PLAIN = {cpu: torch_cls for torch_cls, (cpu, _) in _SWAPS.items()}


def may_use_winograd(module: nn.Module) -> bool:
    """Whether any CPU layer of ``module`` is of a shape the Winograd path takes on this CPU (its map
    size is only known per call)."""
    return any(type(m) is CpuConv2d and _winograd_shape(m) for m in module.modules())


def accelerate(module: nn.Module) -> int:
    """Swap every plain ``nn.Conv2d`` / ``nn.ConvTranspose2d`` of ``module`` (exactly those classes:
    a subclass, or a layer another accelerator took, is left alone) for its CPU layer, in place.
    Returns how many layers were swapped."""
    count = 0
    for m in module.modules():
        swap = _SWAPS.get(type(m))
        if swap is not None and swap[1](m):  # type: ignore[operator]
            m.__class__ = swap[0]
            count += 1
    return count


def restore(module: nn.Module) -> int:
    """Turn the CPU layers of ``module`` back into ``nn.Conv2d`` / ``nn.ConvTranspose2d``, in place;
    returns how many."""
    count = 0
    for m in module.modules():
        plain = _PLAIN.get(type(m))
        if plain is not None:
            m.__class__ = plain
            count += 1
    return count
