"""Small building blocks shared by the built-in networks (norm layers, the reference init)."""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import I2IError
from .winograd import winograd_conv3x3

NORMS = ("batch", "instance", "none")


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The reference's norm choices: BatchNorm (affine, running stats), InstanceNorm (neither), none."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise I2IError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Convolutions followed by BatchNorm carry no bias (the reference layout)."""
    return norm != "batch"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """The reference initialisation: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    for m in net.modules():
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise I2IError(f"unknown init_type {init_type!r}; choose normal, xavier, kaiming or orthogonal")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


# --- Convolutions on small feature maps (CPU) -----------------------------------------------------
#
# With batch 1, a U-Net's innermost layers see 1x1 to 8x8 maps but hold most of its weights
# (512-1024 channels, 4x4 kernels: up to 33 MB each). oneDNN then spends its time reordering
# those weights into its blocked layout on every call, forward and backward: measured on the
# 2-core EPYC, the inner transposed convolutions ran at 3-30 GFLOP/s against ~100 for the outer
# layers. Written as one matrix product (unfold/fold around an MKL GEMM), the same sums run up to
# 2-3x faster there (bench/conv_kernels.py; bench/train_step.py: the pix2pix step went from 0.88x to
# ~0.77x of the reference). The maths is the convolution's; only the kernel and the summation order differ.
# Larger maps, other devices, autocast, tracing and export take the standard path.

#: Largest GEMM width (batch x map positions) computed as a matrix product; larger maps keep oneDNN.
SMALL_MAP_COLUMNS = 64
#: Below this GEMM width (but above 1) MKL's GEMMs turn erratic: the transposed convolution multiplies
#: with the map on the left, the convolution stays with oneDNN (see each).
SKINNY_COLUMNS = 8


def _cpu_fp32_eager(x: torch.Tensor) -> bool:
    """Whether the CPU kernels below may run: a 4-D float32 CPU tensor, no autocast, and no tracing,
    scripting or ONNX export (those keep the standard Conv/ConvTranspose operators in the graph)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and not torch.is_autocast_enabled("cpu")


def _use_gemm(x: torch.Tensor, columns: int, skinny: bool = True) -> bool:
    """Whether to compute a layer as one GEMM of ``columns`` columns (``skinny``: also 2-7 of them)."""
    return (
        _cpu_fp32_eager(x)
        and columns <= SMALL_MAP_COLUMNS
        and (skinny or not 1 < columns < SKINNY_COLUMNS)
    )


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes small feature maps on the CPU as one GEMM (same parameters, same maths)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape if x.dim() == 4 else (0, 0, 0, 0)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding  # type: ignore[misc]
        ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        # 2-7 columns: MKL's skinny GEMMs in the backward pass make this 2x slower than oneDNN
        # (bench/conv_kernels.py: 512->512 on a 4x4 map, 27 vs 14 ms forward + backward).
        if not (self._plain() and _use_gemm(x, n * ho * wo, skinny=False)):
            return super().forward(x)
        cols = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # n, c*kh*kw, ho*wo
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # one GEMM over the whole batch
        out = self.weight.reshape(self.out_channels, -1) @ cols  # out, n*ho*wo
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.reshape(self.out_channels, n, ho, wo).transpose(0, 1).contiguous()

    def _plain(self) -> bool:
        return self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros" \
            and not isinstance(self.padding, str)


class SmallMapConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` that computes small input maps on the CPU as one GEMM and a fold."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        n, _, h, w = x.shape if x.dim() == 4 else (0, 0, 0, 0)
        if output_size is not None or not (self._plain() and _use_gemm(x, n * h * w)):
            return super().forward(x, output_size)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding  # type: ignore[misc]
        ho, wo = (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw
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

    def _plain(self) -> bool:
        return self.groups == 1 and self.dilation == (1, 1) and self.output_padding == (0, 0) \
            and self.padding_mode == "zeros"


# --- wide 3x3 convolutions as Winograd F(4x4, 3x3) (CPU) -----------------------------------------------
#
# A ResNet generator spends ~70% of a CPU training step in its 3x3, 256-channel residual convolutions.
# ``WinogradConv2d`` computes them, forward and both gradients, as Winograd F(4x4, 3x3) with a quarter
# of the multiplications (i2i/winograd.py). Same parameters, same maths; Winograd's rounding differs
# from the direct sum by ~1e-5 relative (tests/test_winograd_conv.py). Measured forward + backward
# against oneDNN on the 2-core EPYC (bench/conv_kernels.py --winograd-grid): 256 channels 0.45-0.51x
# at 64x64, 0.57-0.75x at 32x32, 1.0-1.6x at 16x16; 128 channels 0.68-0.73x at 64x64, 0.68-0.92x at
# 32x32; 64 channels 1.2-1.8x (slower) at every size.

#: Narrower convolutions gain too little from the 36 GEMMs to pay for the transforms.
WINOGRAD_MIN_CHANNELS = 128
#: Smaller input maps stay direct: the transforms' fixed costs dominate there (8x8: 3-4x slower).
WINOGRAD_MIN_PIXELS = 32 * 32


def _use_winograd(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (
        conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
        and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
        and min(conv.in_channels, conv.out_channels) >= WINOGRAD_MIN_CHANNELS
        and _cpu_fp32_eager(x) and x.shape[-2] * x.shape[-1] >= WINOGRAD_MIN_PIXELS
    )


class WinogradConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose wide 3x3 stride-1 convolutions run as Winograd F(4x4, 3x3) on the CPU.

    First derivatives only: a second one through this layer (a gradient penalty on a critic built
    from it) raises on the CPU path; such a network should use ``nn.Conv2d``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _use_winograd(self, x):
            return super().forward(x)
        return winograd_conv3x3(x, self.weight, self.bias, self.padding)


def plain_convs(net: nn.Module) -> nn.Module:
    """Turn the small-map and Winograd layers back into ``nn.Conv2d``/``nn.ConvTranspose2d``, in place
    (a like-for-like reference in benchmarks and tests)."""
    for m in net.modules():
        if isinstance(m, (SmallMapConv2d, WinogradConv2d)):
            m.__class__ = nn.Conv2d
        elif isinstance(m, SmallMapConvTranspose2d):
            m.__class__ = nn.ConvTranspose2d
    return net
