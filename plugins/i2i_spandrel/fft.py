"""LaMa's Fourier units with real-valued DFT matrices, so the network exports to standard ONNX.

LaMa's fast Fourier convolutions (Suvorov et al. 2022, "Resolution-robust Large Mask Inpainting with
Fourier Convolutions"; reference: advimman/lama ``saicinpainting/training/modules/ffc.py``) take a
2-D real FFT (``torch.fft.rfftn``, norm "ortho"), a 1x1 convolution + BatchNorm + ReLU on the
stacked real and imaginary parts, and the inverse (``irfftn``). The ONNX exporters have no
complex tensors for those calls, which is why LaMa is rarely shipped as ONNX (advimman/lama#84).

:class:`RealDFTFourierUnit` computes the same transforms as matrix products with cosine and sine
DFT matrices built for the input's height and width inside the graph (``Range``, integer ``Mod``,
``Cos``, ``Sin``, ``MatMul``: opset 18 operators any runtime has), so one exported file takes any
size. For an H x W map (ortho scale s = 1/sqrt(HW), W' = W//2 + 1)::

    rfft over W:   A = x C_W^T,  B = -x S_W^T            C_W[l, w] = cos(2 pi l w / W), l < W'
    fft over H:    Re = s (C_H A + S_H B),  Im = s (C_H B - S_H A)
    ifft over H:   P = C_H Re - S_H Im,  Q = C_H Im + S_H Re
    irfft over W:  y = s (P (c * C_W) - Q (c * S_W))     c_l = 1 for l = 0 and l = W/2, else 2

(the imaginary parts of the 0 and W/2 bins drop out of the last line as ``sin`` is 0 there, which is
what ``irfft`` does). Angles are taken from ``(k * n) mod N`` in integers, so they stay exact at any
size. :func:`substitute` swaps the units of a copy at export time; spandrel's own code is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["RealDFTFourierUnit", "substitute", "dft_matrices"]


def dft_matrices(n: torch.Tensor | int, rows: torch.Tensor | int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) matrices ``rows x n`` with entries of angle ``2 pi k t / n`` (k < rows, t < n).

    ``n`` and ``rows`` may be traced sizes, so the ONNX graph builds them for each input.
    """
    k = torch.arange(rows, device=like.device).unsqueeze(1)
    t = torch.arange(n, device=like.device).unsqueeze(0)
    phase = torch.remainder(k * t, n).to(like.dtype)  # exact integer (k t mod n) before scaling
    angle = phase * (2 * math.pi) / torch.as_tensor(n, device=like.device).to(like.dtype)
    return torch.cos(angle), torch.sin(angle)


class RealDFTFourierUnit(nn.Module):
    """spandrel's LaMa ``FourierUnit`` (2-D, ortho, no SE / positional encoding / rescaling) with
    its FFTs as DFT matrix products; shares the unit's convolution and BatchNorm (same weights).

    Input and output N x C x H x W float32; the result matches the FFT unit within float32 rounding.
    """

    def __init__(self, unit: nn.Module) -> None:
        super().__init__()
        unsupported = [name for name, bad in (("ffc3d", unit.ffc3d), ("use_se", unit.use_se),
                                              ("spectral_pos_encoding", unit.spectral_pos_encoding),
                                              ("spatial_scale_factor", unit.spatial_scale_factor is not None),
                                              ("groups", unit.groups != 1)) if bad]
        if unsupported or unit.fft_norm != "ortho":
            from i2i.errors import I2IError

            raise I2IError(f"this Fourier unit ({', '.join(unsupported) or 'norm ' + str(unit.fft_norm)}) has no "
                           f"real-DFT form for ONNX export")
        self.conv_layer = unit.conv_layer
        self.bn = unit.bn
        self.relu = unit.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        batch, channels = x.shape[0], x.shape[1]
        h, w = x.shape[-2], x.shape[-1]
        wr = w // 2 + 1
        cw, sw = dft_matrices(w, wr, x)  # wr x w
        ch, sh = dft_matrices(h, h, x)   # h x h
        scale = torch.rsqrt((torch.as_tensor(h) * torch.as_tensor(w)).to(x.dtype))
        a = torch.matmul(x, cw.transpose(0, 1))          # N C H W'
        b = -torch.matmul(x, sw.transpose(0, 1))
        re = (torch.matmul(ch, a) + torch.matmul(sh, b)) * scale
        im = (torch.matmul(ch, b) - torch.matmul(sh, a)) * scale
        # the FFT unit's layout: channel c's (real, imag) are channels 2c, 2c+1
        spec = torch.stack((re, im), dim=2).reshape(batch, channels * 2, h, wr)
        spec = self.relu(self.bn(self.conv_layer(spec)))
        spec = spec.reshape(batch, -1, 2, h, wr)
        re, im = spec[:, :, 0], spec[:, :, 1]
        p = torch.matmul(ch, re) - torch.matmul(sh, im)  # inverse over H (C_H, S_H are symmetric)
        q = torch.matmul(ch, im) + torch.matmul(sh, re)
        l = torch.arange(wr, device=x.device)
        weight = torch.where((l == 0) | (2 * l == w), 1.0, 2.0).to(x.dtype).unsqueeze(1)  # wr x 1
        return (torch.matmul(p, weight * cw) - torch.matmul(q, weight * sw)) * scale


def substitute(module: nn.Module) -> int:
    """Replace every spandrel LaMa ``FourierUnit`` inside ``module`` (in place) with a
    :class:`RealDFTFourierUnit`; returns how many were replaced."""
    from .arches import spandrel

    spandrel()
    from spandrel.architectures.LaMa.__arch.LaMa import FourierUnit

    swaps = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if isinstance(child, FourierUnit)]
    for parent, name, child in swaps:
        setattr(parent, name, RealDFTFourierUnit(child))
    return len(swaps)
