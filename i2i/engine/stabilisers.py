"""The GAN stabilisers' pieces that are not a loss: spectral normalisation, feature matching, config checks.

:class:`i2i.method.Adversarial` puts them together, so every method gets them from one place; the
config keys are :class:`i2i.config.TrainConfig`'s (``real_label``, ``d_spectral_norm``,
``feat_match_weight``, ``r1_gamma``, ``r2_gamma``, ``diffaugment``), documented in docs/stabilisers.md.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import I2IError

#: the config keys of the stabilisers that act on a discriminator (refused by methods without one)
STABILISER_KEYS = ("real_label", "d_spectral_norm", "feat_match_weight", "r1_gamma", "r2_gamma", "diffaugment")


def check_stabiliser_config(cfg: Any) -> None:
    """One-line errors for values the stabilisers cannot use (ranges, DiffAugment policy names)."""
    from .augment import parse_policy

    if not 0.0 < cfg.real_label <= 1.0:
        raise I2IError(f"real_label must be in (0, 1] (one-sided label smoothing, e.g. 0.9), got {cfg.real_label}")
    for key in ("feat_match_weight", "r1_gamma", "r2_gamma"):
        if getattr(cfg, key) < 0:
            raise I2IError(f"{key} must be >= 0, got {getattr(cfg, key)}")
    parse_policy(cfg.diffaugment)


def spectral_normalise(module: nn.Module) -> int:
    """Spectral normalisation (Miyato et al. 2018) on every Conv and Linear layer of ``module``, with
    torch's parametrization (``torch.nn.utils.parametrizations.spectral_norm``: one power iteration
    per training forward; the weight's keys become ``parametrizations.weight.original`` and its
    ``_u``/``_v`` vectors are buffers, so checkpoints keep them and resume is exact).

    Layers that already have it (SN-PatchGAN's, or the older hook form) are left as they are.
    Returns the number of layers it was added to.
    """
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm

    done = 0
    for layer in list(module.modules()):
        if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)):
            continue
        if parametrize.is_parametrized(layer, "weight") or hasattr(layer, "weight_orig"):
            continue
        spectral_norm(layer, dim=1 if isinstance(layer, nn.ConvTranspose2d) else 0)
        done += 1
    return done


def feature_matching(fake_feats: Sequence[torch.Tensor], real_feats: Sequence[torch.Tensor],
                     paired: bool = True) -> torch.Tensor:
    """pix2pixHD's feature-matching loss (Wang et al. 2018, ``loss_G_GAN_Feat``) for one discriminator:
    ``4 / K * sum_k L1(fake_k, real_k)`` over its K intermediate feature maps (pix2pixHD weights each
    layer ``4 / (n_layers_D + 1)``, i.e. ``4 / K``; its ``lambda_feat`` 10 is ``feat_match_weight``).
    The real features are targets (detached).

    ``paired`` False (unpaired data: CycleGAN, where a fake and a real in the same batch position
    show different scenes) matches feature statistics instead, Salimans et al. 2016's form: the L1
    between the per-channel means over batch and positions. Scalar fp32.
    """
    if len(fake_feats) != len(real_feats) or not fake_feats:
        raise I2IError(f"feature matching needs the same, non-zero number of real and fake features "
                       f"({len(real_feats)} vs {len(fake_feats)})")
    total = fake_feats[0].new_zeros((), dtype=torch.float32)
    for f, r in zip(fake_feats, real_feats):
        f, r = f.float(), r.detach().float()
        if not paired:
            f, r = f.mean(dim=(0, 2, 3)), r.mean(dim=(0, 2, 3))
        total = total + F.l1_loss(f, r)
    return total * (4.0 / len(fake_feats))


__all__ = ["STABILISER_KEYS", "check_stabiliser_config", "spectral_normalise", "feature_matching"]
