"""pix2pix (Isola et al. 2017): U-Net generators, PatchGAN discriminators, L1 + adversarial."""

from __future__ import annotations

import i2i

# torch-using modules are imported inside the hooks: `i2i --help` and a torch-free `i2i serve`
# load this plugin without importing torch.


@i2i.hookimpl
def register_generators(register) -> None:
    from .networks import unet_128, unet_256

    tiny = {"ngf": 8}
    channels = {"in_channels": "input_nc", "out_channels": "output_nc"}  # the reference's keywords
    register("unet_128", unet_128, size_multiple=128, test_kwargs=tiny, test_size=128, kwarg_names=channels,
             description="U-Net, 7 downsamplings (pix2pix, 128x128)")
    register("unet_256", unet_256, size_multiple=256, test_kwargs=tiny, test_size=256, kwarg_names=channels,
             description="U-Net, 8 downsamplings (pix2pix, 256x256)")


@i2i.hookimpl
def register_discriminators(register) -> None:
    from i2i.nn import NORMS

    from .networks import NLayerDiscriminator, PixelDiscriminator

    contract = {"kwarg_names": {"in_channels": "input_nc", "norm": "norm"}, "norms": NORMS, "features": True}
    # n_layers stride-2 convs, then two 4x4 stride-1 convs that take one pixel each: 3 * 2**n_layers
    patch_min = {"min_size": lambda kw: 3 * 2 ** max(int(kw.get("n_layers", 3)), 1)}
    register("patch_70", NLayerDiscriminator, test_kwargs={"ndf": 8, "input_nc": 6}, test_in_channels=6,
             **contract, **patch_min, description="70x70 PatchGAN (n_layers=3); sides >= 24")
    register("patch", NLayerDiscriminator, test_kwargs={"ndf": 8, "n_layers": 2}, **contract, **patch_min,
             description="PatchGAN with n_layers; sides >= 3 * 2**n_layers")
    # a norm needs more than one value per channel: 2x2 at batch 1
    register("pixel", PixelDiscriminator, test_kwargs={"ndf": 8}, **contract,
             min_size=lambda kw: 1 if kw.get("norm", "batch") == "none" else 2, description="1x1 PixelGAN")


@i2i.hookimpl
def register_methods(register) -> None:
    from .method import Pix2Pix

    register("pix2pix", Pix2Pix, description="paired translation: U-Net + PatchGAN, L1 + adversarial")
