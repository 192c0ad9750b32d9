"""Gradient penalties, always computed in fp32 (autocast off): their second-order terms overflow in fp16.

``critic`` is any callable from images to logits (a discriminator, or a discriminator behind
DiffAugment: the gradient is then taken through the augmentation, as StyleGAN2-ADA does). Logit maps
(PatchGAN: ``(N, 1, h, w)``) are summed per sample before the gradient is taken, so every patch's
logit counts.
"""

from __future__ import annotations

from typing import Callable

import torch

Critic = Callable[[torch.Tensor], torch.Tensor]


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E (||grad critic(x_hat)||_2 - 1)^2`` on random interpolates
    ``x_hat`` of real and fake. Scalar fp32, >= 0; weight it with ``gp_weight`` (the paper: 10)."""
    with torch.autocast(device_type=real.device.type, enabled=False):
        real, fake = real.detach().float(), fake.detach().float()
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
        x = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
        out = critic(x).float()
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def grad_norm_penalty(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    """``E_i ||grad_x sum_p D_p(x_i)||_2^2 / P``: the squared gradient norm of the critic at ``x``
    (N, C, H, W) per logit, averaged over the batch, where ``P`` is the number of logits per image
    (1 for a single-logit D, 30 x 30 for a 70x70 PatchGAN at 256 px); scalar fp32, >= 0,
    differentiable in the critic's parameters (``create_graph``), never in ``x`` (detached first).

    Why ``/ P``: a PatchGAN is P discriminators on patches, and its loss is their mean. The gradient
    of the summed logit map has squared norm ``sum_p ||grad D_p||^2`` plus overlap terms, so without
    the division the penalty grew with the patch count (``D_r1`` ~1100 vs ``D_real`` 0.44 on facades
    at gamma 1). Divided by P it is the mean of the per-patch R1 when the patches' receptive fields
    do not overlap (and the single-logit R1 of Mescheder et al. / StyleGAN2 when P = 1), so gamma
    means the same for both kinds of D. (The gradient of the per-image *mean* instead would divide
    by P^2 and shrink the penalty with the patch count the other way.)"""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.detach().float().requires_grad_(True)
        out = critic(x).float()
        per_image = max(1, out[0].numel()) if out.dim() > 0 and out.shape[0] == x.shape[0] else 1
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return grad.pow(2).flatten(1).sum(1).mean() / per_image


def r1_penalty(critic: Critic, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?"): the squared
    gradient norm on real data, :func:`grad_norm_penalty` at ``real``. The paper's term is
    ``gamma / 2 * R1``; StyleGAN2 uses gamma 10 at 1024 px, smaller at low resolution."""
    return grad_norm_penalty(critic, real)


def r2_penalty(critic: Critic, fake: torch.Tensor) -> torch.Tensor:
    """R2 (same paper): R1's term on generated data, :func:`grad_norm_penalty` at ``fake``."""
    return grad_norm_penalty(critic, fake)


__all__ = ["gradient_penalty", "grad_norm_penalty", "r1_penalty", "r2_penalty"]
