"""The "inpaint" method: DeepFill v2 generator + SN-PatchGAN, hinge loss, hole/valid-weighted L1.

Losses (Yu et al. 2019; weights default to the paper's: plain L1 on both stages + hinge GAN):

- ``G_hole`` / ``G_valid``: L1 of the refined prediction inside / outside the hole, each a mean
  over all pixels (so with both weights 1 their sum is the paper's plain L1);
- ``G_coarse``: the same weighted L1 for the coarse stage, times ``coarse_weight`` (a generator
  without a coarse stage, i.e. whose forward takes no ``return_stages``, needs coarse_weight 0);
- ``G_GAN``: hinge generator loss on D(composited output, mask), times ``gan_weight``;
- ``G_perceptual`` (``perceptual_weight`` > 0): a registered loss (``perceptual_loss``) on the output;
- ``D_real`` / ``D_fake``: hinge discriminator loss;
- ``hole_L1`` (:meth:`metrics`, a monitor without gradient): L1 inside the hole, per hole pixel, in [0, 1].
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from i2i.config import TrainConfig
from i2i.errors import I2IError
from i2i.method import Batch, Method
from i2i.registry import DiscriminatorSpec, GeneratorSpec, create_loss, generators

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
    #: any registered generator that takes a mask (forward(image, mask)), and its kwargs
    generator: str = "deepfill_v2"
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: start from any inpainting model ``i2i.load`` opens (a published big-lama / LaMa file through
    #: spandrel, a zoo name such as big-lama, a run): its architecture becomes the generator and its
    #: weights the starting point (i2i.warmstart); a generator without a coarse stage needs coarse_weight=0
    init: str = ""
    #: shorthand for generator_kwargs.cnum: deepfill_v2's base width (None: its default, the paper's 48)
    cnum: int | None = None
    #: any registered discriminator (it sees image + mask: 4 channels), and its kwargs
    discriminator: str = "sn_patch"
    discriminator_kwargs: dict[str, Any] = field(default_factory=dict)
    #: shorthands for discriminator_kwargs.ndf / .n_layers (None: the network's default; sn_patch: 64, 6)
    ndf: int | None = None
    d_layers: int | None = None
    #: any registered GAN loss (hinge as the paper; wgan-gp with gp_weight; ragan ...)
    gan_mode: str = "hinge"
    gan_weight: float = 1.0
    #: WGAN-GP gradient penalty weight (0: off; wgan-gp needs it)
    gp_weight: float = 0.0
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
    layers_key = "d_layers"  # the shorthand: --set discriminator_kwargs.n_layers disagrees with it

    def build_networks(self) -> None:
        c = self.cfg
        check_config(c)
        if c.gan_weight == 0:
            self.refuse_unused(["discriminator", "discriminator_kwargs", "ndf", "d_layers", "gan_mode", "gp_weight",
                                "lr_D"], "gan_weight is 0, so inpaint builds no discriminator")
            self.refuse_stabilisers("gan_weight is 0, so inpaint builds no discriminator")
        if c.perceptual_weight == 0:
            self.refuse_unused(["perceptual_loss", "perceptual_kwargs"], "perceptual_weight is 0")
        gk = _shorthands(c, "generator", {"cnum": c.cnum}, c.generator_kwargs)
        name, start = c.generator, None
        if c.init:  # the loaded model's architecture becomes the generator (i2i.warmstart), e.g. big-lama
            from i2i.warmstart import warm_start

            name, gk, start = warm_start(c.init, generator=c.generator, generator_kwargs=gk,
                                         default_generator=InpaintConfig().generator, method=self.method_name)
        G = self.make_generator("G", name, gk, in_channels=3, out_channels=3, scale=1, extra_inputs=("mask",))
        if start is not None:
            from i2i.zoo import load_strict

            load_strict(G, start, f"init={c.init} weights", name)
        self.stages = has_stages(G)
        if not self.stages and c.coarse_weight > 0:
            raise I2IError(f"coarse_weight={c.coarse_weight} does nothing: generator {c.generator} has no coarse stage "
                           f"(its forward takes no return_stages); --set coarse_weight=0")
        if c.gan_weight > 0:
            dk = _shorthands(c, "discriminator", {"ndf": c.ndf, "n_layers": c.d_layers}, c.discriminator_kwargs)
            self.make_discriminator("D", c.discriminator, dk, in_channels=4, input_size=c.crop_size)  # image + mask
            self.adversarial = self.make_adversarial(c.gan_mode, gp_weight=c.gp_weight, source="gan_mode",
                                                     layout=(3, -1))  # DiffAugment: recolour the image, not the mask
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
        if not self.stages:  # one prediction: the L1 terms read the output itself
            output = self.generate("G", image, mask)
            return {"output": output, "coarse": output, "refined": output}
        output, coarse, refined = self.generate("G", image, mask, return_stages=True)
        return {"output": output, "coarse": coarse, "refined": refined}

    def _weighted_l1(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(hole, valid) L1 terms, each a mean over all pixels (fp32: autocast-safe)."""
        err = (pred.float() - target.float()).abs()
        mask = mask.float()
        return self.cfg.hole_weight * (err * mask).mean(), self.cfg.valid_weight * (err * (1 - mask)).mean()

    def _d_input(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.cat([image, mask.to(image.dtype)], dim=1)

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        terms = self.adversarial.discriminator_terms(
            self.nets["D"], self._d_input(batch["image"], mask), self._d_input(out["output"].detach(), mask))
        return {"D_real": terms["real"], "D_fake": terms["fake"], **self.adversarial.penalty_terms(terms, "D")}

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, image, mask = self.cfg, batch["image"], batch["mask"]
        hole, valid = self._weighted_l1(out["refined"], image, mask)
        losses = {"G_hole": hole, "G_valid": valid}
        if c.coarse_weight > 0:
            ch, cv = self._weighted_l1(out["coarse"], image, mask)
            losses["G_coarse"] = c.coarse_weight * (ch + cv)
        if c.gan_weight > 0:
            adv = self.adversarial.generator_terms(self.nets["D"], self._d_input(out["output"], mask),
                                                   self._d_input(image, mask))
            losses["G_GAN"] = c.gan_weight * adv["gan"]
            if "feat" in adv:  # weighted by feat_match_weight only (pix2pixHD's lambda_feat)
                losses["G_feat"] = adv["feat"]
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
        return [self.to_net(t) for t in (masked, coarse.detach(), out["output"].detach(), batch["image"])]

    # validation: the held-aside images (holdout) with their fixed eval masks, or val_data's images
    validation_kinds = ("paired", "distribution", "masked")
    default_val_metrics = ("masked_l1", "psnr")

    def validation_dataset(self, root: str, explicit: bool) -> Dataset:
        c = self.cfg
        if not explicit:
            return self.build_dataset(root, train=False)
        return InpaintDataset(root, image_files(root), self.mask_generator(), c.crop_size, c.load_size, train=False,
                              flip=False, eval_seed=c.eval_seed)

    def validation_batch(self, batch: Batch):
        output = self.forward(batch)["output"]
        return self.to_unit(output), self.to_unit(batch["image"]), batch["mask"].float()

    @classmethod
    def conformance_config(cls, generator: GeneratorSpec | None = None,
                           discriminator: DiscriminatorSpec | None = None) -> dict[str, Any]:
        from i2i.contract import tiny_kwargs

        spec = generator or generators().get("deepfill_v2")
        kwargs = tiny_kwargs(spec)
        out: dict[str, Any] = {"generator": spec.name, "generator_kwargs": kwargs, "crop_size": spec.test_size,
                               "discriminator_kwargs": {"ndf": 8, "n_layers": 3}, "perceptual_weight": 0.0}
        if not has_stages(spec.factory(**kwargs)):
            out["coarse_weight"] = 0.0
        if discriminator:
            out.update(discriminator=discriminator.name, discriminator_kwargs=tiny_kwargs(discriminator))
        return out

    def example_batch(self, batch_size: int = 2) -> Batch:
        s = self.cfg.crop_size
        mask = torch.zeros(batch_size, 1, s, s)
        mask[:, :, s // 4 : s // 2, s // 4 : 3 * s // 4] = 1.0  # a box: some hole, some known pixels
        return {"image": torch.rand(batch_size, 3, s, s) * 2 - 1, "mask": mask}


def has_stages(generator: torch.nn.Module) -> bool:
    """Whether the generator's forward gives its coarse and refined predictions (``return_stages``)."""
    try:
        return "return_stages" in inspect.signature(generator.forward).parameters
    except (TypeError, ValueError):
        return False


def _shorthands(cfg: InpaintConfig, kind: str, values: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the config's shorthand keys (cnum; ndf, d_layers) that are set; a key set both
    ways must agree, and a network that does not take it is refused naming the shorthand."""
    from i2i.contract import _parameters
    from i2i.registry import registry

    out = dict(kwargs)
    spec = registry(kind).get(getattr(cfg, kind))
    names, var_kw = _parameters(spec.factory)
    config_key = {"cnum": "cnum", "ndf": "ndf", "n_layers": "d_layers"}
    for key, value in values.items():
        if value is None:
            continue
        if not var_kw and key not in names:
            raise I2IError(f"{config_key[key]}={value} is a setting of deepfill_v2 / sn_patch; {kind} {spec.name!r} "
                           f"does not take {key!r} (use {kind}_kwargs)")
        if key in out and out[key] != value:
            raise I2IError(f"{config_key[key]}={value} and {kind}_kwargs.{key}={out[key]!r} disagree; set one of them")
        out[key] = value
    return out


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
