"""A convolution with few output channels and a large kernel, computed on pixel blocks (space-to-depth).

A generator's last layer (7x7, 64 -> 3 channels at the full image size) is one of oneDNN's slow cases:
3 output channels fill little of its vector registers and give the input little reuse. On a 2-core
AVX-512 EPYC it took ~13 ms forward and ~40 ms backward at 256x256, ~8% of a CycleGAN step.
Rearranged on 2x2 pixel blocks it is a 4x4 convolution from 4c to 4 x 3 channels on a quarter of the
pixels (``pixel_unshuffle`` -> conv -> ``pixel_shuffle``): the same sums, with 12 outputs to vectorise
over and 4x the reduction length; ~0.6x of the time forward + backward (``bench/conv_kernels.py``).
The ONNX counterpart is ``i2i export --optimize cpu``'s ``rewrite_narrow_conv``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .winograd import _pad


@functools.lru_cache(maxsize=16)
def _taps(k: int) -> tuple[torch.Tensor, int]:
    """For a kernel of size ``k`` along one axis: the index (2, 2, k2) into the kernel padded by one on
    each side that output phase ``d`` reads for input phase ``s`` at block offset ``a`` (tap
    ``2a + s - d``; indices 0 and k + 1 are the padding's zeros), and k2, the blocked kernel's size."""
    k2 = k // 2 + 1
    d, s, a = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(k2), indexing="ij")
    return (2 * a + s - d + 1).clamp(0, k + 1), k2


def blocked_weight(weight: torch.Tensor) -> torch.Tensor:
    """The (o, c, kh, kw) kernel as the (4o, 4c, kh2, kw2) kernel of the 2x2-block convolution:
    out channel (o, dy, dx) as ``pixel_shuffle`` reads it, in channel (c, sy, sx) as ``pixel_unshuffle``
    writes it. Differentiable (a gather)."""
    o, c, kh, kw = weight.shape
    (iy, kh2), (ix, kw2) = _taps(kh), _taps(kw)
    w = F.pad(weight, (1, 1, 1, 1))  # tap -1 and tap k read zeros
    w = w[:, :, iy.to(weight.device)]  # (o, c, dy, sy, a, kw + 2)
    w = w[..., ix.to(weight.device)]  # (o, c, dy, sy, a, dx, sx, b)
    return w.permute(0, 2, 5, 1, 3, 6, 4, 7).reshape(4 * o, 4 * c, kh2, kw2)


def space_to_depth_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                        padding: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1, no groups or dilation, zero padding),
    computed on 2x2 pixel blocks. ``x``: (n, c, h, w); ``weight``: (o, c, kh, kw); returns (n, o, h + 2ph
    - kh + 1, w + 2pw - kw + 1)."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ph, pw = padding
    ho, wo = h + 2 * ph - kh + 1, w + 2 * pw - kw + 1
    # blocks enough for ceil(ho / 2) outputs of each phase: the padding, plus zeros to an even size
    hp, wp = 2 * (-(-ho // 2) + kh // 2), 2 * (-(-wo // 2) + kw // 2)
    pads = (pw, wp - w - pw, ph, hp - h - ph)
    y = F.conv2d(F.pixel_unshuffle(_pad(x, pads), 2), blocked_weight(weight),
                 None if bias is None else bias.repeat_interleave(4))
    return F.pixel_shuffle(y, 2)[:, :, :ho, :wo]
