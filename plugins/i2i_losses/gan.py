"""GAN objectives on raw discriminator logits.

Every loss is called as ``loss(prediction, target_is_real, for_discriminator=True)``. Logit losses
keep autocast safe (BCEWithLogits instead of sigmoid + BCE). ``real_label < 1`` gives one-sided
label smoothing (applied to the discriminator's real targets only; config key ``real_label``).
The relativistic average loss (``ragan``) also takes ``reference=``, the other set's logits.
Which setting helps when: docs/stabilisers.md.
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


class RelativisticAverageLoss(nn.Module):
    """Relativistic average GAN loss (Jolicoeur-Martineau 2018, "The relativistic discriminator"; ESRGAN), on logits.

    Called like the other GAN losses, ``loss(prediction, target_is_real, for_discriminator)``, plus
    ``reference``: the discriminator's logits for the *other* set (fakes when ``prediction`` holds
    reals, and vice versa). It then scores ``D(x) - mean(D(reference))``; without a reference it
    reduces to the vanilla GAN loss. ESRGAN's discriminator loss is
    ``(loss(real, True, reference=fake.detach()) + loss(fake, False, reference=real)) / 2`` and the
    generator's ``(loss(real, False, False, fake) + loss(fake, True, False, real)) / 2``: in the
    relativistic game the generator also pushes the reals' relative score down.
    """

    #: methods check this to pass ``reference`` (and to score reals in the generator step)
    relativistic = True

    def forward(self, prediction: torch.Tensor, target_is_real: bool, for_discriminator: bool = True,
                reference: torch.Tensor | None = None) -> torch.Tensor:
        prediction = prediction.float()
        if reference is not None:
            prediction = prediction - reference.float().mean()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        return F.binary_cross_entropy_with_logits(prediction, target)
