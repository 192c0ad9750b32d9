"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), v0.1 with the AlexNet backbone, through the authors' ``lpips`` package.

The package ships the learned linear layers in its wheel; the AlexNet backbone is torchvision's
ImageNet file, which we fetch ourselves (:func:`i2i_metrics.weights.weights_path`) and load into the
package's network instead of letting torchvision download it. Lower is better; LPIPS(x, x) = 0.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from i2i.errors import I2IError

from .pixel import _PerImageMean
from .weights import describe, load_state, weights_path

#: AlexNet's five conv blocks (stride 4, three 3x3/2 max-pools) leave nothing of a smaller image
MIN_SIDE = 32


def lpips_network(weights: str | None = None, random_backbone: bool = False) -> torch.nn.Module:
    """lpips.LPIPS(net="alex", version 0.1) with the backbone from ``weights`` (or the cache)."""
    import lpips

    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" for the random backbone
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    if not random_backbone:
        path = weights_path("lpips_alex", weights)
        state = load_state(path, "AlexNet")
        # torchvision keys features.<i>.<param> -> the package's slices (slice1.0.weight, slice2.3.weight, ...)
        target = {}
        for slice_name, block in net.net.named_children():
            for index, _layer in block.named_children():
                for param in ("weight", "bias"):
                    key = f"features.{index}.{param}"
                    if key in state:
                        target[f"{slice_name}.{index}.{param}"] = state[key]
        missing = set(net.net.state_dict()) - set(target)
        if missing:
            raise I2IError(f"{path} is not torchvision's AlexNet (no {sorted(missing)[0]}); download "
                           "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
        net.net.load_state_dict(target)
        net.weights_record = describe("lpips_alex", path)
    else:
        net.weights_record = "a random AlexNet backbone (random_backbone=True)"
    return net.eval().requires_grad_(False)


class LPIPS(_PerImageMean):
    """LPIPS distance per image pair, averaged. ``random_backbone``: an untrained AlexNet, for tests
    and speed benchmarks only (the figures mean nothing)."""

    def __init__(self, device: torch.device | None = None, weights: str | None = None,
                 random_backbone: bool = False) -> None:
        super().__init__()
        self.device = device or torch.device("cpu")
        self.net = lpips_network(weights, random_backbone).to(self.device)
        #: the AlexNet weights (file, sha256 prefix; eval --json and the model card say it)
        self.weights_record = self.net.weights_record

    def update(self, output: Tensor | None, target: Tensor | None = None, mask: Tensor | None = None) -> None:
        if output is None or target is None:
            raise I2IError("lpips is a paired metric: update(output, target) needs both images")
        if output.shape != target.shape or output.dim() != 4:
            raise I2IError(f"lpips: output {tuple(output.shape)} and target {tuple(target.shape)} must be equal NxCxHxW")
        if min(output.shape[-2:]) < MIN_SIDE:
            raise I2IError(f"lpips (AlexNet) needs images of at least {MIN_SIDE}x{MIN_SIDE}, got "
                           f"{output.shape[-1]}x{output.shape[-2]}")
        if output.shape[1] == 1:
            output, target = output.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
        with torch.no_grad():
            d = self.net(output.to(self.device).float(), target.to(self.device).float(), normalize=True)
        self.values += d.reshape(-1).double().tolist()
