"""CycleGAN (Zhu et al. 2017): two generators, two PatchGAN discriminators, unpaired data.

Names follow the reference: ``G_A``: A -> B, ``G_B``: B -> A; ``D_A`` judges domain B (real B
vs G_A's fakes), ``D_B`` judges domain A. Generator objective::

    GAN(D_A(G_A(A))) + GAN(D_B(G_B(B)))
    + lambda_A |G_B(G_A(A)) - A| + lambda_B |G_A(G_B(B)) - B|                         (cycle)
    + lambda_identity * (lambda_B |G_A(B) - B| + lambda_A |G_B(A) - A|)               (identity)

Discriminators see fakes through an image pool of 50 (``extra_state``, so resume is exact). The
shared engine trains both generators with one optimizer and both discriminators with another,
as the reference does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from i2i.config import TrainConfig
from i2i.errors import I2IError
from i2i.method import Batch, DomainPairMethod
from i2i.registry import create_loss

from .pool import ImagePool


@dataclass
class CycleGANConfig(TrainConfig):
    generator: str = "resnet_9blocks"
    #: e.g. {"ngf": 64, "norm": "instance", "use_dropout": false}
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    discriminator: str = "patch_70"
    #: e.g. {"ndf": 64, "n_layers": 3}; the method asks for InstanceNorm (the reference's) where the
    #: discriminator offers it, unless a norm is set here
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: any registered GAN loss; the reference uses least squares (wgan-gp with gp_weight; ragan)
    gan_loss: str = "lsgan"
    #: WGAN-GP gradient penalty weight for both discriminators (0: off; wgan-gp needs it)
    gp_weight: float = 0.0
    #: cycle-consistency weights: A -> B -> A and B -> A -> B
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    #: identity loss weight, relative to lambda_A / lambda_B (0: off)
    lambda_identity: float = 0.5
    #: past fakes the discriminators also see (0: no pool)
    pool_size: int = 50
    direction: str = "AtoB"
    phase: str = "train"
    #: the two image folders under the data root (default: <phase>A/<phase>B, or the only two folders)
    a_dir: str = ""
    b_dir: str = ""
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    in_channels: int = 3
    out_channels: int = 3


class CycleGAN(DomainPairMethod):
    conformance_generator = "resnet_6blocks"
    conformance_size = 32
    paired = False  # unpaired domains: feature matching compares feature statistics
    Config = CycleGANConfig
    cfg: CycleGANConfig

    def build_networks(self) -> None:
        cfg = self.cfg
        if cfg.direction not in ("AtoB", "BtoA"):
            raise I2IError(f"direction must be AtoB or BtoA, got {cfg.direction!r}")
        if cfg.lambda_identity > 0 and cfg.in_channels != cfg.out_channels:
            raise I2IError(f"the identity loss needs in_channels == out_channels ({cfg.in_channels} vs "
                           f"{cfg.out_channels}); use --set lambda_identity=0")
        a, b = cfg.in_channels, cfg.out_channels
        g = {"scale": 1, "extra_inputs": ()}
        self.make_generator("G_A", cfg.generator, cfg.generator_kwargs, in_channels=a, out_channels=b, **g)
        self.make_generator("G_B", cfg.generator, cfg.generator_kwargs, in_channels=b, out_channels=a, **g)
        self.make_discriminator("D_A", cfg.discriminator, cfg.discriminator_kwargs, in_channels=b, norm="instance",
                                input_size=cfg.crop_size)
        self.make_discriminator("D_B", cfg.discriminator, cfg.discriminator_kwargs, in_channels=a, norm="instance",
                                input_size=cfg.crop_size)
        self.check_crop_fits(cfg.generator, cfg.crop_size)  # after the Ds: a suggested crop fits them too
        self.main_generator = "G_A"
        self.adversarial = self.make_adversarial(cfg.gan_loss, gp_weight=cfg.gp_weight)
        self.l1 = create_loss("l1")
        # separate streams, so the two pools never depend on each other's draws
        self.pool_A = ImagePool(cfg.pool_size, seed=cfg.seed * 2 + 1)  # fakes of domain A (G_B's)
        self.pool_B = ImagePool(cfg.pool_size, seed=cfg.seed * 2 + 2)  # fakes of domain B (G_A's)

    def build_dataset(self, root: str, train: bool = True):
        from i2i.data import UnalignedDataset

        cfg = self.cfg
        return UnalignedDataset(
            root, phase=cfg.phase, load_size=cfg.load_size, crop_size=cfg.crop_size, flip=cfg.flip, train=train,
            direction=cfg.direction, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
            a_dir=cfg.a_dir or None, b_dir=cfg.b_dir or None, skip_bad=cfg.skip_bad_images,
        )

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        fake_B = self.generate("G_A", batch["A"])
        fake_A = self.generate("G_B", batch["B"])
        return {"fake_B": fake_B, "rec_A": self.generate("G_B", fake_B), "fake_A": fake_A,
                "rec_B": self.generate("G_A", fake_A)}

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake_B = self.pool_B.query(out["fake_B"].detach())
        fake_A = self.pool_A.query(out["fake_A"].detach())
        losses = {}
        for name, real, fake in (("D_A", batch["B"], fake_B), ("D_B", batch["A"], fake_A)):
            terms = self.adversarial.discriminator_terms(self.nets[name], real, fake)
            losses[name] = 0.5 * (terms["real"] + terms["fake"])
            losses.update(self.adversarial.penalty_terms(terms, name))
        return losses

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        real_A, real_B = batch["A"], batch["B"]
        adv = self.adversarial.generator_terms
        adv_A, adv_B = adv(self.nets["D_A"], out["fake_B"], real_B), adv(self.nets["D_B"], out["fake_A"], real_A)
        losses = {
            "G_A": adv_A.pop("gan"),
            "G_B": adv_B.pop("gan"),
            "cycle_A": cfg.lambda_A * self.l1(out["rec_A"], real_A),
            "cycle_B": cfg.lambda_B * self.l1(out["rec_B"], real_B),
            **{f"G_A_{k}": v for k, v in adv_A.items()},  # G_A_feat with feature matching
            **{f"G_B_{k}": v for k, v in adv_B.items()},
        }
        if cfg.lambda_identity > 0:
            # G_A should leave an image that is already in domain B unchanged, and G_B likewise for A
            losses["idt_A"] = cfg.lambda_identity * cfg.lambda_B * self.l1(self.generate("G_A", real_B), real_B)
            losses["idt_B"] = cfg.lambda_identity * cfg.lambda_A * self.l1(self.generate("G_B", real_A), real_A)
        return losses

    def visuals(self, batch: Batch, out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [self.to_net(t) for t in (batch["A"], out["fake_B"], out["rec_A"], batch["B"], out["fake_A"], out["rec_B"])]

    def diversity_images(self, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """G_A's translations against real B images (the grid's last column is a reconstruction)."""
        return self.to_net(out["fake_B"]), self.to_net(batch["B"])

    # validation: unpaired, so distribution metrics between G_A's translations and real B images
    validation_kinds = ("distribution",)
    default_val_metrics = ("kid",)

    def validation_dataset(self, root: str, explicit: bool):
        from i2i.data import UnalignedDataset

        cfg = self.cfg
        return UnalignedDataset(root, phase=self.validation_phase(root, explicit), load_size=cfg.crop_size,
                                crop_size=cfg.crop_size, flip=False, train=False, serial=True, direction=cfg.direction,
                                in_channels=cfg.in_channels, out_channels=cfg.out_channels, skip_bad=cfg.skip_bad_images)

    def validation_batch(self, batch: Batch):
        return self.to_unit(self.generate("G_A", batch["A"])), self.to_unit(batch["B"]), None

    def extra_state(self) -> dict[str, Any]:
        return {"pool_A": self.pool_A.state_dict(), "pool_B": self.pool_B.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "pool_A" in state:
            self.pool_A.load_state_dict(state["pool_A"], self.device)
            self.pool_B.load_state_dict(state["pool_B"], self.device)
