"""Built-in losses usable by every method: GAN objectives and pixel losses."""

from __future__ import annotations

import i2i

# torch-using modules are imported inside the hooks: `i2i --help` and a torch-free `i2i serve`
# load this plugin without importing torch.


@i2i.hookimpl
def register_losses(register) -> None:
    from .gan import HingeLoss, LSGANLoss, RelativisticAverageLoss, VanillaGANLoss, WGANLoss
    from .pixel import L1Loss, MSELoss

    register("vanilla", VanillaGANLoss, kind="gan", description="BCE with logits (the original GAN objective)")
    register("lsgan", LSGANLoss, kind="gan", description="least-squares GAN (CycleGAN's default)")
    register("hinge", HingeLoss, kind="gan", description="hinge loss (SN-GAN, SN-PatchGAN)")
    register("wgan-gp", WGANLoss, kind="gan", needs_penalty=True,
             description="Wasserstein loss with gradient penalty (needs gp_weight > 0, e.g. 10)")
    register("ragan", RelativisticAverageLoss, kind="gan", needs_reference=True,
             description="relativistic average GAN (ESRGAN): each set scored against the other's mean logit")
    register("l1", L1Loss, kind="pixel", description="mean absolute error")
    register("mse", MSELoss, kind="pixel", description="mean squared error")
