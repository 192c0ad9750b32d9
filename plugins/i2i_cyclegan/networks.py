"""CycleGAN's ResNet generator in the reference layout (junyanz/pytorch-CycleGAN-and-pix2pix).

Module and parameter names match the reference's ``ResnetGenerator`` exactly (``model.N.*``,
residual blocks ``model.N.conv_block.*``), so the 18 official CycleGAN generators load with
``strict=True``. Layout of ``model`` for 2 downsamplings and ``n_blocks`` blocks::

    0 ReflectionPad2d(3)  1 Conv 7x7  2 norm  3 ReLU
    4 Conv s2  5 norm  6 ReLU  7 Conv s2  8 norm  9 ReLU
    10 .. 10+n_blocks-1  ResnetBlock (conv_block: pad, conv, norm, ReLU, [dropout], pad, conv, norm)
    then 2 x (ConvTranspose s2, norm, ReLU), ReflectionPad2d(3), Conv 7x7, Tanh
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from i2i.errors import I2IError
from i2i.nn import conv_bias, init_weights, norm_layer

#: norms this generator takes: i2i.nn's choices plus InstanceNorm with a learned scale and shift
#: (what several community CycleGAN checkpoints, e.g. vintagify, were trained with).
NORMS = ("instance", "instance_affine", "batch", "none")
PADDINGS = ("reflect", "replicate", "zero")


def make_norm(norm: str) -> Callable[[int], nn.Module]:
    if norm == "instance_affine":
        return lambda channels: nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if norm not in NORMS:
        raise I2IError(f"unknown norm {norm!r} for a ResNet generator; choose one of {', '.join(NORMS)}")
    return norm_layer(norm)


def _pad(padding_type: str) -> tuple[list[nn.Module], int]:
    """The padding layer(s) before a 3x3 conv and the conv's own padding (the reference's choice)."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise I2IError(f"unknown padding_type {padding_type!r}; choose one of {', '.join(PADDINGS)}")


class ResnetBlock(nn.Module):
    """x + conv_block(x): two 3x3 convolutions with padding, norm, ReLU and optional dropout."""

    def __init__(self, dim: int, padding_type: str, norm: str, use_dropout: bool, use_bias: bool) -> None:
        super().__init__()
        norm_fn = make_norm(norm)
        layers: list[nn.Module] = []
        pad, p = _pad(padding_type)
        layers += pad + [nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_fn(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _pad(padding_type)
        layers += pad + [nn.Conv2d(dim, dim, 3, padding=p, bias=use_bias), norm_fn(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Encoder (2 stride-2 convs), ``n_blocks`` residual blocks, decoder (2 transposed convs).

    Sides must be multiples of 4 (the two downsamplings), or the output comes back smaller.
    """

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        n_blocks: int = 9,
        norm: str = "instance",
        use_dropout: bool = False,
        padding_type: str = "reflect",
        init_type: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise I2IError(f"n_blocks must be >= 0, got {n_blocks}")
        _pad(padding_type)  # validate early, with the clear message
        norm_fn = make_norm(norm)
        use_bias = conv_bias(norm)
        model: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, padding=0, bias=use_bias),
            norm_fn(ngf),
            nn.ReLU(True),
        ]
        n_down = 2
        for i in range(n_down):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                norm_fn(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_down
        model += [ResnetBlock(ngf * mult, padding_type, norm, use_dropout, use_bias) for _ in range(n_blocks)]
        for i in range(n_down):
            mult = 2 ** (n_down - i)
            model += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=use_bias),
                norm_fn(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def resnet_6blocks(**kwargs) -> ResnetGenerator:
    """The reference's ``resnet_6blocks`` (CycleGAN at 128x128)."""
    return ResnetGenerator(n_blocks=6, **kwargs)


def resnet_9blocks(**kwargs) -> ResnetGenerator:
    """The reference's ``resnet_9blocks`` (CycleGAN at 256x256, all official models)."""
    return ResnetGenerator(n_blocks=9, **kwargs)
