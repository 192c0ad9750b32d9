"""The SR methods: ``srresnet`` (PSNR-oriented, no discriminator) and ``srgan`` (GAN fine-tuning).

``srresnet`` minimises a pixel loss (MSE as SRResNet, or L1), optionally plus a perceptual loss;
it has no discriminator, so the engine runs only the generator step. ``srgan`` adds a VGG-style
discriminator and an adversarial loss (vanilla as SRGAN, or relativistic average as ESRGAN) and
usually starts from a PSNR-trained generator: ``init_from: runs/srresnet_x`` (an i2i run, checkpoint
folder or weights file) or a published weights file (e.g. ESRGAN's PSNR model RRDB_PSNR_x4.pth).

Batches hold ``lr`` and ``hr`` in [0, 1]; networks see them in the generator's value range.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from i2i.config import TrainConfig
from i2i.errors import I2IError
from i2i.method import Batch, Method
from i2i.registry import DiscriminatorSpec, GeneratorSpec, create_loss, generators

from .data import SRDataset


@dataclass
class SRResNetConfig(TrainConfig):
    """PSNR-oriented SR training (SRResNet, ESRGAN's PSNR pre-training, Real-ESRNet ...)."""

    #: upscaling factor (the generator is built with it; LR = bicubic HR / scale)
    scale: int = 4
    #: generator registry name (srresnet, rrdbnet, srvgg_compact, srgan_leftthomas) and its kwargs
    generator: str = "srresnet"
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: HR crop side for training (a multiple of scale); LR crops are crop_size / scale
    crop_size: int = 96
    #: random crops per image and epoch (SR sets are few, large images)
    repeat: int = 1
    #: flips and 90-degree rotations
    augment: bool = True
    #: keep decoded training images in memory up to this many MB per data-loading process (0: off)
    cache_mb: int = 512
    #: paired data: folder of LR images matching the HR ones by name (default: HR/ + LR/ sub-folders, else bicubic)
    lr_dir: str = ""
    #: pixel loss: a registered loss name ("mse" as SRResNet, "l1" as ESRGAN) and its weight
    pixel_loss: str = "mse"
    pixel_weight: float = 1.0
    #: VGG19 perceptual loss weight (0: off), layers {name: weight}, "l1" or "mse"
    perceptual_weight: float = 0.0
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"conv5_4": 1.0})
    perceptual_criterion: str = "l1"
    #: VGG19 weights: "" = torchvision's ImageNet download (cached), a local .pth path, or "random" (tests only)
    perceptual_weights: str = ""
    #: start G from these weights (GAN fine-tuning after PSNR pre-training): an i2i run folder, checkpoint
    #: folder or weights.safetensors (its EMA weights when present), or a published .pth; loaded strictly
    init_from: str = ""
    #: start from any model ``i2i.load`` opens (a published .pth of any architecture i2i or spandrel knows,
    #: e.g. Real-ESRGAN x4plus or SwinIR; a zoo name; a run): its architecture becomes the generator
    #: (generator / generator_kwargs need not be set) and its weights the starting point (i2i.warmstart)
    init: str = ""
    # SRResNet's optimiser: Adam(1e-4, betas 0.9/0.999), batch 16, 96x96 HR crops
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    batch_size: int = 16


@dataclass
class SRGANConfig(SRResNetConfig):
    """GAN fine-tuning (SRGAN / ESRGAN); defaults are SRGAN's (VGG54 / 12.75^2 MSE + 1e-3 adversarial)."""

    discriminator: str = "vgg_style"
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: "vanilla" (SRGAN), "ragan" (relativistic average, ESRGAN), "lsgan", "hinge", "wgan-gp" (with gp_weight)
    gan_mode: str = "vanilla"
    gan_weight: float = 1e-3
    #: WGAN-GP gradient penalty weight (0: off; wgan-gp needs it)
    gp_weight: float = 0.0
    pixel_weight: float = 0.0
    perceptual_weight: float = 0.006
    perceptual_layers: dict[str, float] = field(default_factory=lambda: {"relu5_4": 1.0})
    perceptual_criterion: str = "mse"


class SRResNetMethod(Method):
    """PSNR-oriented SR: a generator and a pixel (+ optional perceptual) loss; no discriminator."""

    Config = SRResNetConfig
    cfg: SRResNetConfig
    data_range = (0.0, 1.0)

    def build_networks(self) -> None:
        cfg = self.cfg
        if not self._has_discriminator():
            self.refuse_unused(["lr_D"], f"{self.method_name} has no discriminator")
            self.refuse_stabilisers(f"{self.method_name} has no discriminator")
        name, kwargs, start = cfg.generator, cfg.generator_kwargs, None
        if cfg.init:  # the loaded model's architecture becomes the generator (i2i.warmstart)
            if cfg.init_from:
                raise I2IError("set init or init_from, not both (init also brings the architecture)")
            from i2i.warmstart import warm_start

            name, kwargs, start = warm_start(cfg.init, generator=cfg.generator, generator_kwargs=cfg.generator_kwargs,
                                             default_generator=type(cfg)().generator, method=self.method_name)
            from i2i.contract import generator_io
            from i2i.registry import generators

            init_scale = generator_io(generators().get(name), kwargs)["scale"]
            if init_scale != cfg.scale:  # say the setting the user has, not the generator kwarg they never set
                raise I2IError(f"init={cfg.init} is an x{init_scale} model but scale is {cfg.scale}: "
                               f"add --set scale={init_scale} (the data's LR images are made at the scale)")
        G = self.make_generator("G", name, kwargs, in_channels=3, out_channels=3, scale=cfg.scale, extra_inputs=())
        if start is not None:
            from i2i.zoo import load_strict

            load_strict(G, start, f"init={cfg.init} weights", name)
        if cfg.init_from:
            load_init(G, cfg.generator, self.generator_specs["G"][1], cfg.init_from)
        self.pixel = create_loss(cfg.pixel_loss) if cfg.pixel_weight > 0 else None
        self.perceptual = None
        if cfg.perceptual_weight > 0:
            from .losses import PerceptualLoss

            self.perceptual = PerceptualLoss(cfg.perceptual_layers, cfg.perceptual_criterion, cfg.perceptual_weights)
        if self.pixel is None and self.perceptual is None and not self._has_gan():
            raise I2IError("every loss weight is 0: set pixel_weight or perceptual_weight above 0")

    def _has_gan(self) -> bool:
        return False

    def crop_multiple(self) -> int:
        # crop_size is the HR side: the LR side (crop_size / scale) must fit the generator
        return self.cfg.scale * super().crop_multiple()

    def generator_min_crop(self) -> int:
        # the generator sees LR crops (crop_size / scale)
        return self.cfg.scale * super().generator_min_crop()

    def _has_discriminator(self) -> bool:
        return False

    def build_dataset(self, root: str, train: bool = True) -> Dataset:
        cfg = self.cfg
        return SRDataset(root, scale=cfg.scale, crop_size=cfg.crop_size, train=train, lr_dir=cfg.lr_dir or None,
                         repeat=cfg.repeat, augment=cfg.augment, cache_mb=cfg.cache_mb)

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"sr": self.generate("G", batch["lr"])}  # [0, 1] <-> the generator's value range

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {}

    def content_losses(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg, sr, hr = self.cfg, out["sr"], batch["hr"]
        losses: dict[str, torch.Tensor] = {}
        if self.pixel is not None:
            losses[f"G_{cfg.pixel_loss}"] = cfg.pixel_weight * self.pixel(sr, hr)
        if self.perceptual is not None:
            self.perceptual.to(sr.device)
            losses["G_perceptual"] = cfg.perceptual_weight * self.perceptual(sr, hr)
        return losses

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.content_losses(batch, out)

    def visuals(self, batch: Batch, out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        hr = batch["hr"]
        up = F.interpolate(batch["lr"].float(), size=hr.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        return [self.to_net(up), self.to_net(out["sr"].detach().float().clamp(0, 1)), self.to_net(hr)]

    # validation: whole held-aside images (val_data, e.g. Set5) against their HR originals
    default_val_metrics = ("psnr_y", "ssim_y")
    validation_batch_size = 1  # whole images of different sizes

    def validation_dataset(self, root: str, explicit: bool) -> Dataset:
        if not explicit:
            raise I2IError(f"{self.method_name} validates on a folder of its own: --set val_data=FOLDER "
                           f"(HR images, e.g. Set5)")
        cfg = self.cfg
        return SRDataset(root, scale=cfg.scale, crop_size=cfg.crop_size, train=False, lr_dir=cfg.lr_dir or None,
                         augment=False, cache_mb=0)

    def validation_batch(self, batch: Batch):
        return self.to_unit(self.forward(batch)["sr"]), self.to_unit(batch["hr"]), None

    def validation_metric_kwargs(self, name: str) -> dict[str, Any]:
        # the SR papers measure PSNR/SSIM with `scale` pixels cropped from every side (as `i2i eval sr`)
        return {"crop_border": self.cfg.scale} if name in ("psnr", "psnr_y", "ssim", "ssim_y") else {}

    @classmethod
    def conformance_config(cls, generator: GeneratorSpec | None = None,
                           discriminator: DiscriminatorSpec | None = None) -> dict[str, Any] | None:
        from i2i.contract import keyword, tiny_kwargs

        spec = generator or generators().get("srvgg_compact")
        if keyword(spec, "scale") is None:
            scale = spec.scale
        else:
            scale = 4 if not spec.scales or 4 in spec.scales else max(spec.scales)
        if discriminator is not None and not issubclass(cls, SRGANMethod):
            return None  # no discriminator here
        out: dict[str, Any] = {"generator": spec.name, "generator_kwargs": tiny_kwargs(spec), "scale": scale,
                               "crop_size": spec.test_size * scale, "pixel_loss": "l1", "pixel_weight": 1.0,
                               "perceptual_weight": 0.0}
        if issubclass(cls, SRGANMethod):
            out["discriminator_kwargs"] = tiny_kwargs(discriminator) if discriminator else {"ndf": 8}
            if discriminator:
                out["discriminator"] = discriminator.name
        return out

    def example_batch(self, batch_size: int = 2) -> Batch:
        s, scale = self.cfg.crop_size, self.cfg.scale
        return {"lr": torch.rand(batch_size, 3, s // scale, s // scale), "hr": torch.rand(batch_size, 3, s, s)}


class SRGANMethod(SRResNetMethod):
    """SRGAN / ESRGAN: content losses plus an adversarial loss from a VGG-style discriminator."""

    Config = SRGANConfig
    cfg: SRGANConfig

    def build_networks(self) -> None:
        super().build_networks()
        cfg = self.cfg
        if not cfg.init_from and not cfg.init:
            # not an error (a GAN can train from scratch), but rarely what SRGAN/ESRGAN users mean
            print("i2i: srgan starts from a random generator; SRGAN and ESRGAN fine-tune a PSNR-trained one "
                  "(--set init_from=RUN_OR_WEIGHTS)", file=sys.stderr)
        self.make_discriminator("D", cfg.discriminator, cfg.discriminator_kwargs, in_channels=3,
                                input_size=cfg.crop_size)  # D sees HR crops
        # D sees images in the generator's value range (to_net), which DiffAugment needs to know
        self.adversarial = self.make_adversarial(cfg.gan_mode, gp_weight=cfg.gp_weight, source="gan_mode",
                                                 value_range=self.value_ranges["G"])

    def _has_gan(self) -> bool:
        return self.cfg.gan_weight > 0

    def _has_discriminator(self) -> bool:
        return True

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        terms = self.adversarial.discriminator_terms(self.nets["D"], self.to_net(batch["hr"]), self.to_net(out["sr"].detach()))
        return {"D_real": 0.5 * terms["real"], "D_fake": 0.5 * terms["fake"],
                **self.adversarial.penalty_terms(terms, "D")}

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = self.content_losses(batch, out)
        cfg = self.cfg
        if cfg.gan_weight > 0 or self.adversarial.feat_match_weight > 0:
            adv = self.adversarial.generator_terms(self.nets["D"], self.to_net(out["sr"]), self.to_net(batch["hr"]))
            if cfg.gan_weight > 0:
                losses["G_gan"] = cfg.gan_weight * adv["gan"]
            if "feat" in adv:  # weighted by feat_match_weight, not gan_weight (pix2pixHD's lambda_feat)
                losses["G_feat"] = adv["feat"]
        return losses


def load_init(G: torch.nn.Module, name: str, kwargs: dict[str, Any], path: str) -> None:
    """Load ``G``'s weights from anything :func:`i2i.load` opens (an i2i checkpoint, a published
    weights file, a zoo name), strictly: the architecture must be the one this run builds."""
    from i2i.loader import load

    if str(path).lower().endswith(".onnx"):
        raise I2IError(f"init_from {path}: an .onnx file cannot seed training; give the checkpoint or .pth it came from")
    g = load(path, device="cpu")
    found = g.meta.name
    if found != name:
        raise I2IError(f"init_from {path} holds {found} weights but this run builds {name}; set generator={found}")
    if g.meta.info.get("checkpoint") and _filled(name, g.meta.kwargs) != _filled(name, kwargs):
        raise I2IError(f"init_from {path} holds {found}({g.meta.kwargs}) but this run builds "
                       f"{name}({kwargs}); set generator / generator_kwargs / scale to match")
    try:
        G.load_state_dict(g.module.state_dict(), strict=True)
    except RuntimeError as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines()[1:3])[:300]
        raise I2IError(f"init_from {path} does not fit {name}({kwargs}): {detail}") from None


def _filled(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the factory's defaults filled in, so that {} and {"scale": 4} compare equal."""
    import inspect

    try:
        params = inspect.signature(generators().get(name).factory).parameters.values()
    except (TypeError, ValueError):
        return dict(kwargs)
    return {**{p.name: p.default for p in params if p.default is not inspect.Parameter.empty}, **kwargs}


__all__ = ["SRResNetConfig", "SRGANConfig", "SRResNetMethod", "SRGANMethod", "load_init"]
