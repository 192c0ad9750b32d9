"""pix2pix: conditional GAN on aligned pairs, lambda * L1 + adversarial (Isola et al. 2017)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from i2i.artifact import GeneratorMeta
from i2i.config import TrainConfig
from i2i.errors import I2IError
from i2i.method import Batch, DomainPairMethod
from i2i.registry import create_loss


@dataclass
class Pix2PixConfig(TrainConfig):
    generator: str = "unet_256"
    #: e.g. {"ngf": 64, "norm": "batch", "use_dropout": true}
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    discriminator: str = "patch_70"
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: any registered GAN loss: vanilla, lsgan, hinge, wgan-gp (with gp_weight), ragan
    gan_loss: str = "vanilla"
    lambda_l1: float = 100.0
    #: WGAN-GP gradient penalty weight (0: off; wgan-gp needs it)
    gp_weight: float = 0.0
    #: AtoB or BtoA (facades: BtoA turns label maps into photos)
    direction: str = "AtoB"
    phase: str = "train"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    in_channels: int = 3
    out_channels: int = 3


class Pix2Pix(DomainPairMethod):
    conformance_generator = "unet_128"
    conformance_size = 128
    Config = Pix2PixConfig
    cfg: Pix2PixConfig

    def build_networks(self) -> None:
        cfg = self.cfg
        if cfg.direction not in ("AtoB", "BtoA"):
            raise I2IError(f"direction must be AtoB or BtoA, got {cfg.direction!r}")
        self.make_generator("G", cfg.generator, cfg.generator_kwargs, in_channels=cfg.in_channels,
                            out_channels=cfg.out_channels, scale=1, extra_inputs=())
        # The discriminator judges (input, output) pairs: it sees both images stacked.
        self.make_discriminator("D", cfg.discriminator, cfg.discriminator_kwargs,
                                in_channels=cfg.in_channels + cfg.out_channels, input_size=cfg.crop_size)
        self.check_crop_fits(cfg.generator, cfg.crop_size)  # after D: a suggested crop fits both
        # label smoothing and the other stabilisers come from the config (TrainConfig, Adversarial)
        self.adversarial = self.make_adversarial(cfg.gan_loss, gp_weight=cfg.gp_weight,
                                                 layout=(cfg.in_channels, cfg.out_channels))
        self.l1 = create_loss("l1")

    def build_dataset(self, root: str, train: bool = True):
        from i2i.data import AlignedDataset

        cfg = self.cfg
        dataset = AlignedDataset(
            root, phase=cfg.phase, direction=cfg.direction, load_size=cfg.load_size, crop_size=cfg.crop_size,
            flip=cfg.flip, train=train, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
            skip_bad=cfg.skip_bad_images,
        )
        if train and dataset.pairs and dataset.pairs[0][1] is None:  # side-by-side A|B files
            from PIL import Image

            with Image.open(dataset.pairs[0][0]) as first:
                w, h = first.size
            # what `i2i translate` needs to feed the input half of such a file, as the reference's test does
            self.ab_pairs = {"input": "left" if cfg.direction == "AtoB" else "right", "aspect": round(w / h, 4)}
        return dataset

    def generator_meta(self, net: str | None = None) -> GeneratorMeta:
        meta = super().generator_meta(net)
        if getattr(self, "ab_pairs", None):
            meta.info["ab_pairs"] = dict(self.ab_pairs)
        return meta

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"fake_B": self.generate("G", batch["A"])}

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        real_A, real_B = batch["A"], batch["B"]
        fake_AB = torch.cat([real_A, out["fake_B"].detach()], 1)
        real_AB = torch.cat([real_A, real_B], 1)
        terms = self.adversarial.discriminator_terms(self.nets["D"], real_AB, fake_AB)
        return {"D_fake": 0.5 * terms["fake"], "D_real": 0.5 * terms["real"],
                **self.adversarial.penalty_terms(terms, "D")}

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fake_AB = torch.cat([batch["A"], out["fake_B"]], 1)
        real_AB = torch.cat([batch["A"], batch["B"]], 1)
        adv = self.adversarial.generator_terms(self.nets["D"], fake_AB, real_AB)
        losses = {"G_GAN": adv.pop("gan"), "G_L1": self.cfg.lambda_l1 * self.l1(out["fake_B"], batch["B"])}
        return {**losses, **{f"G_{k}": v for k, v in adv.items()}}  # G_feat with feature matching

    def visuals(self, batch: Batch, out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return [self.to_net(t) for t in (batch["A"], out["fake_B"], batch["B"])]

    # validation: the translated input against its paired target (the reference's val/ or test/ split)
    default_val_metrics = ("psnr", "ssim")

    def validation_dataset(self, root: str, explicit: bool):
        from i2i.data import AlignedDataset

        cfg = self.cfg
        dataset = AlignedDataset(root, phase=self.validation_phase(root, explicit), direction=cfg.direction,
                                 load_size=cfg.crop_size, crop_size=cfg.crop_size, flip=False, train=False,
                                 in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                                 skip_bad=cfg.skip_bad_images)
        # a folder of single images (Set5) is not pairs: refused, not measured half against half
        dataset.check_side_by_side((getattr(self, "ab_pairs", None) or {}).get("aspect"),
                                   "val_data" if explicit else "")
        return dataset

    def validation_batch(self, batch: Batch):
        return self.to_unit(self.forward(batch)["fake_B"]), self.to_unit(batch["B"]), None
