"""CycleGAN (Zhu et al. 2017): ResNet generators in the reference layout, unpaired training with
cycle and identity losses and an image pool, and the official CycleGAN / pix2pix model zoo.

The discriminator is pix2pix's registered ``patch_70`` PatchGAN (with InstanceNorm).
"""

from __future__ import annotations

import i2i

# torch-using modules are imported inside the hooks: `i2i --help` and a torch-free `i2i serve`
# load this plugin without importing torch.


@i2i.hookimpl
def register_generators(register) -> None:
    from .networks import resnet_6blocks, resnet_9blocks

    tiny = {"ngf": 8}
    channels = {"in_channels": "input_nc", "out_channels": "output_nc"}  # the reference's keywords
    register("resnet_6blocks", resnet_6blocks, size_multiple=4, min_size=8, test_kwargs=tiny, test_size=32,
             kwarg_names=channels, description="ResNet, 6 residual blocks (CycleGAN at 128x128; reference layout)")
    register("resnet_9blocks", resnet_9blocks, size_multiple=4, min_size=8, test_kwargs=tiny, test_size=32,
             kwarg_names=channels, description="ResNet, 9 residual blocks (CycleGAN at 256x256; official models load strictly)")


@i2i.hookimpl
def register_methods(register) -> None:
    from .method import CycleGAN

    register("cyclegan", CycleGAN,
             description="unpaired translation: 2 ResNet G + 2 PatchGAN D, LSGAN, cycle + identity, image pool")


@i2i.hookimpl
def register_models(register) -> None:
    from .zoo import entries

    for name, entry in entries().items():
        register(name, **entry)


@i2i.hookimpl
def identify_weights(state: dict):
    """A generator of the reference (junyanz) layouts: a pix2pix U-Net (``model.model.0.weight``,
    nested ``model.model.1.model.3...``; unet_256 or unet_128 from its depth, ngf from its first conv,
    BatchNorm) or a ResNet (``model.1.weight`` .. with ``model.N.conv_block`` residual blocks; norm,
    dropout, ngf and the block count read from the file)."""
    from i2i.errors import I2IError

    from .zoo import resnet_blocks, resnet_reference

    unet = _unet_reference(state)
    if unet is not None:
        return unet
    try:
        sd, kwargs = resnet_reference(state)
    except I2IError:
        return None
    blocks = resnet_blocks(sd)
    if blocks not in (6, 9):
        return None
    return f"resnet_{blocks}blocks", kwargs, sd


def _unet_reference(state: dict):
    """(name, kwargs, state_dict) for a reference pix2pix U-Net with BatchNorm, else None."""
    from i2i.errors import I2IError
    from i2i.zoo import unwrap_state_dict

    from .zoo import unet_reference

    try:
        sd = unet_reference(unwrap_state_dict(state))
    except I2IError:
        return None
    first = sd.get("model.model.0.weight")
    if first is None or getattr(first, "ndim", 0) != 4:
        return None
    depth = max(k.count("model.") for k in sd)  # one "model." per U-Net level, plus the outer one
    name = {9: "unet_256", 8: "unet_128"}.get(depth)
    if name is None:
        return None
    kwargs = {"ngf": int(first.shape[0]), "input_nc": int(first.shape[1]), "norm": "batch", "use_dropout": True}
    return name, kwargs, sd
