"""SR losses: the VGG19 perceptual loss (the relativistic average GAN loss moved to i2i_losses.gan).

The perceptual loss compares VGG19 feature maps of output and target (both [0, 1] RGB, normalised
with the ImageNet mean/std). Layer names follow the papers: ``conv5_4`` is the 16th conv before
its ReLU (ESRGAN), ``relu5_4`` after it (SRGAN's "VGG54"). Only the layers up to the deepest
requested one are built, so a shallow cut (``relu1_1``) is tiny.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from i2i.errors import I2IError

#: VGG19 ("E") convolution widths per block; "M" = max pool
_VGG19_CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"


def vgg19_layer_names() -> list[str]:
    """Names of ``torchvision.models.vgg19().features`` modules in order (conv1_1, relu1_1, ..., pool5)."""
    names, block, conv = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


def vgg19_features(depth: int) -> nn.Sequential:
    """The first ``depth`` modules of torchvision's VGG19 ``features`` (same indices, same keys)."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU()]
            c_in = int(v)
    return nn.Sequential(*layers[:depth])


def _torchvision_state() -> dict[str, torch.Tensor]:
    """The ImageNet VGG19 weights through torchvision's download and cache (``$TORCH_HOME``)."""
    from torchvision.models import VGG19_Weights

    try:
        return VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except Exception as exc:  # URLError, socket errors, HTTP errors ...
        from torch.hub import get_dir

        cached = Path(get_dir()) / "checkpoints" / TORCHVISION_FILE
        raise I2IError(
            f"the perceptual loss needs the ImageNet VGG19 weights and downloading them failed "
            f"({type(exc).__name__}: {str(exc)[:120]}); put {TORCHVISION_FILE} at {cached}, or pass a local copy "
            f"with --set perceptual_weights=FILE"
        ) from None


def load_vgg19_state(source: str) -> dict[str, torch.Tensor]:
    """``""``: torchvision's ImageNet weights (download + cache); a path: a local torchvision VGG19
    state_dict (full model or ``features`` only); ``"random"``: no weights (tests, smoke runs)."""
    if source == "random":
        return {}
    if not source:
        sd = _torchvision_state()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise I2IError(f"perceptual_weights file {path} does not exist")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise I2IError(f"cannot load perceptual_weights {path}: {type(exc).__name__}: {str(exc)[:160]}") from None
    if isinstance(sd, dict) and any(k.startswith("features.") for k in sd):
        sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    return sd


class PerceptualLoss(nn.Module):
    """Weighted distance between VGG19 features of output and target (inputs in [0, 1]).

    ``layers`` maps layer names (``conv5_4``, ``relu2_2`` ...) to weights; ``criterion`` is "l1"
    (ESRGAN) or "mse" (SRGAN). The VGG is frozen and always in eval mode.
    """

    def __init__(self, layers: Mapping[str, float] | None = None, criterion: str = "l1", weights: str = "",
                 normalize: bool = True) -> None:
        super().__init__()
        layers = dict(layers or {"conv5_4": 1.0})
        names = vgg19_layer_names()
        unknown = [n for n in layers if n not in names]
        if unknown:
            from i2i.errors import did_you_mean

            raise I2IError(f"unknown VGG19 layer {unknown[0]!r}{did_you_mean(unknown[0], names)}")
        if criterion not in ("l1", "mse"):
            raise I2IError(f"perceptual criterion must be 'l1' or 'mse', not {criterion!r}")
        self.layers = {names.index(n): (n, float(w)) for n, w in layers.items()}
        depth = max(self.layers) + 1
        self.vgg = vgg19_features(depth)
        state = load_vgg19_state(weights)
        if state:
            state = {k: v for k, v in state.items() if int(k.split(".")[0]) < depth}
            missing, _ = self.vgg.load_state_dict(state, strict=False)
            if missing:
                raise I2IError(f"perceptual_weights lack VGG19 layers {', '.join(missing[:4])}: is it a torchvision vgg19 state_dict?")
        self.vgg.eval().requires_grad_(False)
        self.criterion = criterion
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.vgg.eval()  # never let a .train() call switch the frozen feature extractor
        return self

    def features(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        if self.normalize:
            x = (x - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.vgg):
            x = layer(x)
            if i in self.layers:
                out[i] = x
        return out

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        f_out = self.features(output)
        with torch.no_grad():
            f_tgt = self.features(target.detach())
        dist = F.l1_loss if self.criterion == "l1" else F.mse_loss
        return sum(w * dist(f_out[i].float(), f_tgt[i].float()) for i, (_, w) in self.layers.items())  # type: ignore[return-value]


# The relativistic average loss is a GAN loss for every method: it lives in i2i_losses (registered
# there as "ragan"); this name keeps working for code that imported it from here.
from i2i_losses.gan import RelativisticAverageLoss  # noqa: E402


__all__ = ["PerceptualLoss", "RelativisticAverageLoss", "vgg19_layer_names", "vgg19_features", "load_vgg19_state"]
