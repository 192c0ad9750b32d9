"""pix2pix networks in the reference layout (junyanz/pytorch-CycleGAN-and-pix2pix).

Module and parameter names match the reference exactly, so the official pix2pix generators load
with ``strict=True`` (``model.model.1.model.3...``).
"""

from __future__ import annotations

import torch
from torch import nn

from i2i.nn import conv_bias, init_weights, norm_layer


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down -> submodule -> up, with the input concatenated to the output."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "batch",
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=bias)
        downrelu = nn.LeakyReLU(0.2)
        uprelu = nn.ReLU()
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, make_norm(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, make_norm(inner_nc), submodule, uprelu, upconv, make_norm(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        # The reference's in-place LeakyReLU also rewrites x before the skip concatenation, so the
        # skip carries LeakyReLU(x). We reproduce that result explicitly (and export-safely).
        x = self.model[0](x)
        y = x
        for layer in self.model[1:]:
            y = layer(y)
        return torch.cat([x, y], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` halvings: sides must be multiples of ``2 ** num_downs``."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        num_downs: int = 8,
        ngf: int = 64,
        norm: str = "batch",
        use_dropout: bool = True,
        init_type: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, norm=norm, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def unet_128(**kwargs) -> UnetGenerator:
    return UnetGenerator(num_downs=7, **kwargs)


def unet_256(**kwargs) -> UnetGenerator:
    return UnetGenerator(num_downs=8, **kwargs)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: n_layers=3 gives the 70x70 receptive field of the paper. Outputs logits.

    Takes sides of at least ``3 * 2**n_layers`` (24 for the 70x70 one): each of the ``n_layers``
    stride-2 convs halves the side and the two last 4x4 stride-1 convs take 1 each, leaving one logit.
    ``forward(x, features=True)`` also returns the activations after every LeakyReLU (pix2pixHD's
    feature-matching features).
    """

    def __init__(
        self,
        input_nc: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "batch",
        init_type: str = "normal",
        init_gain: float = 0.02,
    ) -> None:
        super().__init__()
        make_norm = norm_layer(norm)
        bias = conv_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias), make_norm(ndf * mult), nn.LeakyReLU(0.2)]
        prev, mult = mult, min(2**n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias), make_norm(ndf * mult), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor, features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if not features:
            return self.model(x)
        return _with_features(self.model, x)


def _with_features(body: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(body(x), [the output of every LeakyReLU in body])``."""
    feats = []
    for layer in body:
        x = layer(x)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(x)
    return x, feats


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN (PixelGAN): classifies every pixel on its own.

    Any side with ``norm="none"``; batch or instance norm need more than one value per channel, so
    at batch 1 a side of at least 2. ``features=True``: as :class:`NLayerDiscriminator`.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "batch", init_type: str = "normal", init_gain: float = 0.02) -> None:
        super().__init__()
        bias = conv_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_layer(norm)(ndf * 2),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )
        init_weights(self, init_type, init_gain)

    def forward(self, x: torch.Tensor, features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if not features:
            return self.net(x)
        return _with_features(self.net, x)
