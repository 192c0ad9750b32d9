"""Pixel losses, computed in fp32 so that autocast never rounds a small reconstruction error away."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class L1Loss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output.float(), target.float())


class MSELoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output.float(), target.float())
