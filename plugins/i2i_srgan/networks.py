"""Super-resolution networks: SRResNet, the published architectures people bring weights for, and a
VGG-style discriminator.

Module and parameter names follow the published code exactly so that official checkpoints load
with ``strict=True``:

- :class:`SRVGGNetCompact`: Real-ESRGAN compact (xinntao/Real-ESRGAN ``srvgg_arch.py``), keys ``body.N``.
- :class:`RRDBNet`: ESRGAN / Real-ESRGAN x4plus (basicsr ``rrdbnet_arch.py``), keys ``conv_first``,
  ``body.N.rdbK.convJ`` ... The older xinntao/ESRGAN layout (``RRDB_trunk``, ``HRconv``) is renamed
  by :func:`i2i_srgan.weights.xinntao_to_basicsr`.
- :class:`SRGANLeftthomas`: leftthomas/SRGAN (``block1`` .. ``block8``; output ``(tanh + 1) / 2``).

Every generator here maps RGB in [0, 1] to RGB in [0, 1] (registered with ``value_range=(0, 1)``);
training outputs are unbounded, eval-mode outputs are clamped to [0, 1] (as the published
inference code does before saving).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from i2i.errors import I2IError


def _clamp_eval(module: nn.Module, out: torch.Tensor) -> torch.Tensor:
    """Outputs are unbounded while training (the loss needs the raw values); in eval mode they are
    clamped to [0, 1], which is what the published inference code does before saving."""
    return out if module.training else out.clamp(0.0, 1.0)


def _check_scale(scale: int, allowed: tuple[int, ...], arch: str) -> None:
    if scale not in allowed:
        raise I2IError(f"{arch} supports scale {', '.join(map(str, allowed))}, not {scale}")


class ResidualBlock(nn.Module):
    """conv-(BN)-PReLU-conv-(BN) + identity (SRGAN's generator block; no BN as in EDSR/MSRResNet)."""

    def __init__(self, num_feat: int, norm: str = "batch") -> None:
        super().__init__()
        bn = norm == "batch"
        self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(num_feat) if bn else nn.Identity()
        self.act = nn.PReLU(num_feat)
        self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not bn)
        self.bn2 = nn.BatchNorm2d(num_feat) if bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class Upsample(nn.Sequential):
    """log2(scale) x (conv to 4C, PixelShuffle(2), PReLU), or one PixelShuffle(3) for x3."""

    def __init__(self, num_feat: int, scale: int) -> None:
        layers: list[nn.Module] = []
        factors = [3] if scale == 3 else [2] * int(math.log2(scale))
        for f in factors:
            layers += [nn.Conv2d(num_feat, num_feat * f * f, 3, 1, 1), nn.PixelShuffle(f), nn.PReLU(num_feat)]
        super().__init__(*layers)


class SRResNet(nn.Module):
    """SRResNet (Ledig et al. 2017): 9x9 head, residual blocks, global skip, PixelShuffle upsampling.

    ``norm="batch"`` is the paper; ``norm="none"`` drops BatchNorm (EDSR / ESRGAN's observation that
    BN causes artifacts in SR). No output activation: the target is [0, 1] and MSE/L1 train it there.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64, num_block: int = 16,
                 scale: int = 4, norm: str = "batch") -> None:
        super().__init__()
        _check_scale(scale, (2, 3, 4, 8), "srresnet")
        if norm not in ("batch", "none"):
            raise I2IError(f"srresnet norm must be 'batch' or 'none', not {norm!r}")
        bn = norm == "batch"
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(in_channels, num_feat, 9, 1, 4), nn.PReLU(num_feat))
        self.body = nn.Sequential(*[ResidualBlock(num_feat, norm) for _ in range(num_block)])
        self.body_tail = nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=not bn),
                                       nn.BatchNorm2d(num_feat) if bn else nn.Identity())
        self.upsample = Upsample(num_feat, scale)
        self.tail = nn.Conv2d(num_feat, out_channels, 9, 1, 4)
        # Small residual branches make the untrained net start near identity-plus-upsampling, which
        # is what the MSRResNet/EDSR initialisations aim for (plain default init trains too, slower).
        for block in self.body:
            for conv in (block.conv1, block.conv2):
                nn.init.kaiming_normal_(conv.weight, a=0.25)
                conv.weight.data.mul_(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        return _clamp_eval(self, self.tail(self.upsample(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact VGG-style network: convs at LR resolution, one PixelShuffle, plus the
    nearest-upsampled input (the network learns the residual). Layout of ``srvgg_arch.py``."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_feat: int = 64, num_conv: int = 16,
                 scale: int = 4, act_type: str = "prelu") -> None:
        super().__init__()
        if act_type not in ("relu", "prelu", "leakyrelu"):
            raise I2IError(f"srvgg_compact act_type must be relu, prelu or leakyrelu, not {act_type!r}")
        if out_channels != in_channels:
            raise I2IError("srvgg_compact adds the upsampled input to its output: in_channels must equal out_channels")
        self.scale = scale

        def act() -> nn.Module:
            if act_type == "relu":
                return nn.ReLU()
            if act_type == "prelu":
                return nn.PReLU(num_parameters=num_feat)
            return nn.LeakyReLU(0.1)

        layers: list[nn.Module] = [nn.Conv2d(in_channels, num_feat, 3, 1, 1), act()]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), act()]
        layers.append(nn.Conv2d(num_feat, out_channels * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return _clamp_eval(self, out)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; the output is scaled by 0.2 and added (ESRGAN's RDB)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)
        # ESRGAN's initialisation: Kaiming scaled by 0.1 keeps the deep residual stack stable.
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, scaled by 0.2, plus identity."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator (basicsr layout). ``scale`` 4 upsamples twice by nearest + conv; scales 2
    and 1 first pixel-unshuffle the input (Real-ESRGAN x2plus), so their sides must be even (x2) or
    multiples of 4 (x1): such inputs are reflect-padded here and the output cropped back."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        _check_scale(scale, (1, 2, 4), "rrdbnet")
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.unshuffle > 1:
            f = self.unshuffle
            x = F.pad(x, (0, (-w) % f, 0, (-h) % f), mode="reflect")
            feat = F.pixel_unshuffle(x, f)
        else:
            feat = x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        if self.unshuffle > 1:
            out = out[..., : h * self.scale, : w * self.scale]
        return _clamp_eval(self, out)


class _LeftthomasResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.prelu = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.prelu(self.bn1(self.conv1(x)))))


class _LeftthomasUpsample(nn.Module):
    def __init__(self, channels: int, up: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * up * up, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(up)
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.pixel_shuffle(self.conv(x)))


class SRGANLeftthomas(nn.Module):
    """The SRGAN generator of leftthomas/SRGAN, key for key (``block1`` .. ``block8``).

    Five residual blocks with BatchNorm; ``block7`` is conv + PReLU in the released checkpoints
    (``netG_epoch_4_100.pth``) and conv + BatchNorm in the repository's later code: pick with
    ``block7="prelu"`` (default) or ``"batchnorm"``. Output ``(tanh + 1) / 2`` lies in [0, 1].
    """

    def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 5, block7: str = "prelu") -> None:
        super().__init__()
        _check_scale(scale, (2, 4, 8), "srgan_leftthomas")
        if block7 not in ("prelu", "batchnorm"):
            raise I2IError(f"srgan_leftthomas block7 must be 'prelu' or 'batchnorm', not {block7!r}")
        self.scale = scale
        self.num_block = num_block
        self.block1 = nn.Sequential(nn.Conv2d(3, num_feat, 9, padding=4), nn.PReLU())
        for i in range(num_block):  # block2 .. block6 in the published five-block net
            setattr(self, f"block{i + 2}", _LeftthomasResidualBlock(num_feat))
        last = nn.PReLU() if block7 == "prelu" else nn.BatchNorm2d(num_feat)
        setattr(self, f"block{num_block + 2}", nn.Sequential(nn.Conv2d(num_feat, num_feat, 3, padding=1), last))
        ups: list[nn.Module] = [_LeftthomasUpsample(num_feat, 2) for _ in range(int(math.log2(scale)))]
        ups.append(nn.Conv2d(num_feat, 3, 9, padding=4))
        setattr(self, f"block{num_block + 3}", nn.Sequential(*ups))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.block1(x)
        feat = first
        for i in range(self.num_block + 1):
            feat = getattr(self, f"block{i + 2}")(feat)
        out = getattr(self, f"block{self.num_block + 3}")(first + feat)
        return (torch.tanh(out) + 1) / 2


class VGGStyleDiscriminator(nn.Module):
    """SRGAN's discriminator: eight 3x3 convs (64 -> 512 features, stride 2 every second one),
    LeakyReLU(0.2), BatchNorm after all but the first, then dense 1024 -> 1.

    The paper's dense layer needs a fixed 96x96 input; an adaptive average pool to
    ``pool x pool`` in front of it accepts any input size. The dense layers are written as
    convolutions (a ``pool``-sized kernel, then 1x1), so the logits are 4-D: ``(N, 1, 1, 1)``.
    With BatchNorm at batch 1 the last norm needs more than one value per channel: sides of at least
    ``2**n_stages + 1`` (17). ``forward(x, features=True)`` also returns the activations after every
    LeakyReLU of the conv body, for feature matching.
    """

    def __init__(self, input_nc: int = 3, ndf: int = 64, norm: str = "batch", pool: int = 1, n_stages: int = 4) -> None:
        super().__init__()
        if norm not in ("batch", "none"):
            raise I2IError(f"vgg_style norm must be 'batch' or 'none', not {norm!r}")
        layers: list[nn.Module] = []
        c_in = input_nc
        for stage in range(n_stages):
            c_out = ndf * min(2**stage, 8)
            for stride in (1, 2):
                first = stage == 0 and stride == 1
                use_bn = norm == "batch" and not first
                layers += [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=not use_bn)]
                if use_bn:
                    layers.append(nn.BatchNorm2d(c_out))
                layers.append(nn.LeakyReLU(0.2))
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(nn.Conv2d(c_in, ndf * 16, pool), nn.LeakyReLU(0.2), nn.Conv2d(ndf * 16, 1, 1))

    def forward(self, x: torch.Tensor, features: bool = False) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        if not features:
            return self.classifier(self.pool(self.features(x)))
        feats = []
        for layer in self.features:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return self.classifier(self.pool(x)), feats


__all__ = ["SRResNet", "SRVGGNetCompact", "RRDBNet", "SRGANLeftthomas", "VGGStyleDiscriminator"]
