"""GAN objectives on raw discriminator logits.

Every loss is called as ``loss(prediction, target_is_real, for_discriminator=True)``. Logit losses
keep autocast safe (BCEWithLogits instead of sigmoid + BCE). ``real_label < 1`` gives one-sided
label smoothing (applied to the discriminator's real targets only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _TargetLoss(nn.Module):
    def __init__(self, real_label: float = 1.0, fake_label: float = 0.0) -> None:
        super().__init__()
        self.real_label = real_label
        self.fake_label = fake_label

    def target(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        # One-sided smoothing: the generator always aims at 1.0.
        value = (self.real_label if for_discriminator else 1.0) if target_is_real else self.fake_label
        return torch.full_like(prediction, value)


class VanillaGANLoss(_TargetLoss):
    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        prediction = prediction.float()
        return F.binary_cross_entropy_with_logits(prediction, self.target(prediction, target_is_real, for_discriminator))


class LSGANLoss(_TargetLoss):
    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        prediction = prediction.float()
        return F.mse_loss(prediction, self.target(prediction, target_is_real, for_discriminator))


class HingeLoss(nn.Module):
    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        prediction = prediction.float()
        if not for_discriminator:
            return -prediction.mean()
        return F.relu(1.0 - prediction).mean() if target_is_real else F.relu(1.0 + prediction).mean()


class WGANLoss(nn.Module):
    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        prediction = prediction.float()
        return -prediction.mean() if target_is_real else prediction.mean()
