"""DeepFill v2 (Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019).

Generator: a coarse network and a refinement network, both of gated convolutions, following the
layer list of the authors' ``inpaint_model.py`` (JiahuiYu/generative_inpainting, v2.0.0). The
refinement network's contextual-attention branch is replaced by a second gated-conv branch of the
same shape (the paper's ablations show attention mainly helps large, textured scenes; it is also
the one part that does not export cleanly to ONNX). Discriminator: SN-PatchGAN.

Both networks take the mask (1 = hole). The generator composites its output inside ``forward``:
``image * (1 - mask) + prediction * mask``, so known pixels come back exactly, also after ONNX
export and through ``i2i translate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


class GatedConv2d(nn.Module):
    """``act(features) * sigmoid(gate)`` from one convolution with twice the channels.

    ``activation=None`` gives a plain convolution (the output layer). Zero padding of
    ``dilation * (k - 1) / 2`` keeps the size, whatever the feature map's size (reflection would
    fail for dilation 16 on small maps).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 activation: str | None = "elu") -> None:
        super().__init__()
        self.gated = activation is not None
        pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(in_ch, out_ch * 2 if self.gated else out_ch, kernel, stride, pad, dilation)
        self.act = nn.ELU() if activation == "elu" else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if not self.gated:
            return x
        feat, gate = torch.chunk(x, 2, dim=1)
        return self.act(feat) * torch.sigmoid(gate)


class GatedUp(nn.Module):
    """DeepFill's ``gen_deconv``: nearest-neighbour upsampling, then a gated 3x3 convolution.

    It upsamples to the size of the matching encoder feature map rather than by exactly 2, so the
    network runs at any size (an odd side rounds consistently) and exports with free H and W.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = GatedConv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor, size_like: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size_like.shape[-2:], mode="nearest"))


class _Encoder(nn.Module):
    """conv5 -> down -> conv -> down -> convs, then dilated convs (rates 2, 4, 8, 16)."""

    def __init__(self, in_ch: int, widths: tuple[int, int, int, int, int], dilated: bool = True) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.conv1 = GatedConv2d(in_ch, c1, 5)
        self.down1 = GatedConv2d(c1, c2, 3, stride=2)
        self.conv3 = GatedConv2d(c2, c3, 3)
        self.down2 = GatedConv2d(c3, c4, 3, stride=2)
        body = [GatedConv2d(c4, c5, 3), GatedConv2d(c5, c5, 3)]
        if dilated:
            body += [GatedConv2d(c5, c5, 3, dilation=r) for r in (2, 4, 8, 16)]
        else:  # DeepFill's attention branch without the attention layer: two more convs
            body += [GatedConv2d(c5, c5, 3), GatedConv2d(c5, c5, 3)]
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deep features at 1/4, feature at full size, feature at 1/2) for upsampling sizes."""
        full = self.conv1(x)
        half = self.conv3(self.down1(full))
        return self.body(self.down2(half)), full, half


class _Decoder(nn.Module):
    """conv, conv, up, conv, up, conv(cnum/2), conv(3) + tanh."""

    def __init__(self, in_ch: int, cnum: int, out_ch: int) -> None:
        super().__init__()
        c4 = 4 * cnum
        self.conv11 = GatedConv2d(in_ch, c4, 3)
        self.conv12 = GatedConv2d(c4, c4, 3)
        self.up1 = GatedUp(c4, 2 * cnum)
        self.conv14 = GatedConv2d(2 * cnum, 2 * cnum, 3)
        self.up2 = GatedUp(2 * cnum, cnum)
        self.conv16 = GatedConv2d(cnum, max(cnum // 2, 1), 3)
        self.conv17 = GatedConv2d(max(cnum // 2, 1), out_ch, 3, activation=None)

    def forward(self, x: torch.Tensor, full: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
        x = self.conv12(self.conv11(x))
        x = self.conv14(self.up1(x, half))
        x = self.conv16(self.up2(x, full))
        return torch.tanh(self.conv17(x))


class DeepFillV2Generator(nn.Module):
    """Coarse-to-fine gated-convolution inpainting network; ``forward(image, mask) -> output``.

    ``image``: Bx3xHxW in [-1, 1]; ``mask``: Bx1xHxW, 1 = hole. Whatever ``image`` holds inside the
    hole is ignored. ``cnum`` is the base width (48 in the paper).
    """

    def __init__(self, cnum: int = 48, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__()
        if out_channels != in_channels:
            raise ValueError("DeepFill v2 fills holes in its input, so out_channels must equal in_channels")
        # The authors' gen_conv(x, n) convolves to n channels and splits them into n/2 features and
        # n/2 gates, so a layer "of width n" outputs n/2: with cnum 48 that is 24..96 features and
        # the paper's ~4M parameters. c is that effective base width.
        c = max(cnum // 2, 1)
        stage_in = in_channels + 2  # masked image, ones, mask (the paper's padding-aware input)
        # widths per layer as in the authors' code: conv1, down1, conv3, down2, the rest
        self.coarse_enc = _Encoder(stage_in, (c, 2 * c, 2 * c, 4 * c, 4 * c))
        self.coarse_dec = _Decoder(4 * c, c, out_channels)
        self.refine_conv = _Encoder(stage_in, (c, c, 2 * c, 2 * c, 4 * c))
        self.refine_ctx = _Encoder(stage_in, (c, c, 2 * c, 4 * c, 4 * c), dilated=False)
        self.refine_dec = _Decoder(8 * c, c, out_channels)

    @staticmethod
    def _stage_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([image * (1 - mask), torch.ones_like(mask), mask], dim=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, return_stages: bool = False):
        """The composited output; with ``return_stages``: (output, coarse, refined) raw predictions."""
        mask = mask.to(image.dtype)
        x = self._stage_input(image, mask)
        deep, full, half = self.coarse_enc(x)
        coarse = self.coarse_dec(deep, full, half)

        x = self._stage_input(coarse * mask + image * (1 - mask), mask)
        deep_a, full, half = self.refine_conv(x)
        deep_b, _, _ = self.refine_ctx(x)
        refined = self.refine_dec(torch.cat([deep_a, deep_b], dim=1), full, half)

        output = image * (1 - mask) + refined * mask
        if return_stages:
            return output, coarse, refined
        return output


def deepfill_v2(**kwargs) -> DeepFillV2Generator:
    return DeepFillV2Generator(**kwargs)


class SNPatchDiscriminator(nn.Module):
    """SN-PatchGAN: ``n_layers`` spectrally normalised 5x5 stride-2 convolutions with LeakyReLU.

    Widths ndf, 2ndf, 4ndf, 4ndf, ... (the paper: ndf 64, 6 layers). Every output element is a
    logit for one patch; train it with the hinge loss. Input: the image and the mask stacked
    (``input_nc`` = 4). As in the paper, the last layer also has the LeakyReLU. Any input side
    (each conv gives ``ceil(side / 2)``). ``forward(x, features=True)`` also returns the activations
    of every layer but the last (whose activation is the logits), for feature matching.
    """

    def __init__(self, input_nc: int = 4, ndf: int = 64, n_layers: int = 6) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = input_nc
        for i in range(n_layers):
            out = ndf * min(2**i, 4)
            layers += [spectral_norm(nn.Conv2d(ch, out, 5, stride=2, padding=2)), nn.LeakyReLU(0.2)]
            ch = out
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if not features:
            return self.model(x)
        feats = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return x, feats[:-1]
