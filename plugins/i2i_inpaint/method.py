"""The "inpaint" method: DeepFill v2 generator + SN-PatchGAN, hinge loss, hole/valid-weighted L1.

Losses (Yu et al. 2019; weights default to the paper's: plain L1 on both stages + hinge GAN):

- ``G_hole`` / ``G_valid``: L1 of the refined prediction inside / outside the hole, each a mean
  over all pixels (so with both weights 1 their sum is the paper's plain L1);
- ``G_coarse``: the same weighted L1 for the coarse stage, times ``coarse_weight``;
- ``G_GAN``: hinge generator loss on D(composited output, mask), times ``gan_weight``;
- ``G_perceptual`` (``perceptual_weight`` > 0): a registered loss (``perceptual_loss``) on the output;
- ``D_real`` / ``D_fake``: hinge discriminator loss;
- ``hole_L1`` (:meth:`metrics`, a monitor without gradient): L1 inside the hole, per hole pixel, in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from i2i.config import TrainConfig
from i2i.errors import I2IError
from i2i.method import Batch, Method
from i2i.registry import create_loss

from .data import InpaintDataset
from .files import DEFAULT_HOLDOUT, image_files, split_files
from .masks import mask_from_spec


@dataclass
class InpaintConfig(TrainConfig):
    #: training crop side (images: short side resized to load_size, then cropped)
    crop_size: int = 256
    #: short side before cropping (0: crop_size, i.e. the whole image, centre-cropped square)
    load_size: int = 0
    #: random horizontal flips in training
    flip: bool = True
    #: the last N images (sorted) are held aside for `i2i eval inpaint`; training never sees them
    holdout: int = DEFAULT_HOLDOUT
    #: mask generator spec: a name ("free_form"), a mixture ("free_form:0.7,rect:0.3"),
    #: "union:free_form+rect" (the paper's), or a folder of mask images
    mask: str = "union:free_form+rect"
    #: kwargs of the mask generator (for a mixture: {component name: kwargs})
    mask_kwargs: dict[str, Any] = field(default_factory=dict)
    #: seed of the fixed masks of the eval split
    eval_seed: int = 0
    generator: str = "deepfill_v2"
    #: the generator's base width (paper: 48)
    cnum: int = 48
    discriminator: str = "sn_patch"
    ndf: int = 64
    d_layers: int = 6
    gan_mode: str = "hinge"
    gan_weight: float = 1.0
    #: L1 weights inside the hole and on the known pixels (partial conv uses 6 and 1)
    hole_weight: float = 1.0
    valid_weight: float = 1.0
    #: weight of the coarse stage's L1 relative to the refined stage's
    coarse_weight: float = 1.0
    #: > 0 adds a registered perceptual loss (perceptual_loss, built with perceptual_kwargs) on the
    #: composited output; e.g. vgg19_perceptual with {weights: PATH} (default: torchvision's VGG19)
    perceptual_weight: float = 0.0
    perceptual_loss: str = "vgg19_perceptual"
    perceptual_kwargs: dict[str, Any] = field(default_factory=dict)
    # the paper's optimiser: Adam(1e-4, 0.5, 0.999), constant rate
    lr: float = 1e-4
    lr_policy: str = "constant"


class Inpaint(Method):
    Config = InpaintConfig
    cfg: InpaintConfig

    def build_networks(self) -> None:
        c = self.cfg
        check_config(c)
        self.make_generator("G", c.generator, cnum=c.cnum)
        if c.gan_weight > 0:
            self.make_discriminator("D", c.discriminator, input_nc=4, ndf=c.ndf, n_layers=c.d_layers)
            self.gan_loss = create_loss(c.gan_mode)
        self.perceptual = create_loss(c.perceptual_loss, **c.perceptual_kwargs) if c.perceptual_weight > 0 else None

    def mask_generator(self):
        return mask_from_spec(self.cfg.mask, self.cfg.mask_kwargs)

    def build_dataset(self, root: str, train: bool = True) -> Dataset:
        c = self.cfg
        train_files, eval_files = split_files(image_files(root), c.holdout)
        return InpaintDataset(root, train_files if train else eval_files, self.mask_generator(), c.crop_size,
                              c.load_size, train=train, flip=c.flip, eval_seed=c.eval_seed)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        image, mask = batch["image"], batch["mask"]
        output, coarse, refined = self.nets["G"](image, mask, return_stages=True)
        return {"output": output, "coarse": coarse, "refined": refined}

    def _weighted_l1(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hole, valid) L1 terms, each a mean over all pixels (fp32: autocast-safe)."""
        err = (pred.float() - target.float()).abs()
        mask = mask.float()
        return self.cfg.hole_weight * (err * mask).mean(), self.cfg.valid_weight * (err * (1 - mask)).mean()

    def _d_input(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, mask.to(image.dtype)], dim=1)

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask, D = batch["mask"], self.nets["D"]
        real = D(self._d_input(batch["image"], mask))
        fake = D(self._d_input(out["output"].detach(), mask))
        return {"D_real": self.gan_loss(real, True), "D_fake": self.gan_loss(fake, False)}

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, image, mask = self.cfg, batch["image"], batch["mask"]
        hole, valid = self._weighted_l1(out["refined"], image, mask)
        losses = {"G_hole": hole, "G_valid": valid}
        if c.coarse_weight > 0:
            ch, cv = self._weighted_l1(out["coarse"], image, mask)
            losses["G_coarse"] = c.coarse_weight * (ch + cv)
        if c.gan_weight > 0:
            pred = self.nets["D"](self._d_input(out["output"], mask))
            losses["G_GAN"] = c.gan_weight * self.gan_loss(pred, True, for_discriminator=False)
        if self.perceptual is not None:  # perceptual losses take images in [0, 1]
            self.perceptual.to(image.device)
            losses["G_perceptual"] = c.perceptual_weight * self.perceptual((out["output"] + 1) / 2, (image + 1) / 2)
        return losses

    def metrics(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"hole_L1": hole_l1(out["output"], batch["image"], batch["mask"])}

    def visuals(self, batch: Batch, out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """masked input (holes white) | coarse | output | target."""
        mask = batch["mask"].to(batch["image"].dtype)
        masked = batch["image"] * (1 - mask) + mask
        coarse = out["coarse"] * mask + batch["image"] * (1 - mask)
        return [masked, coarse.detach(), out["output"].detach(), batch["image"]]


def hole_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A monitor, not a loss: mean |output - target| over hole pixels only, in [0, 1] image units
    (as ``i2i eval inpaint`` reports it). Detached, so adding it to the G losses (the engine logs
    every term it is given) changes no gradient; unlike ``G_hole`` it does not scale with the
    batch's hole ratio, so early and late values of a run compare directly."""
    with torch.no_grad():
        m = mask.float()
        err = (output.float() - target.float()).abs().mean(dim=1, keepdim=True) * m
        return (err.sum() / m.sum().clamp_min(1.0) / 2.0).detach()


def check_config(cfg: InpaintConfig) -> None:
    """Fail early, with the key to fix, on values the losses cannot use."""
    for key in ("hole_weight", "valid_weight", "coarse_weight", "gan_weight", "perceptual_weight"):
        if getattr(cfg, key) < 0:
            raise I2IError(f"config key {key!r} must be >= 0, got {getattr(cfg, key)}")
