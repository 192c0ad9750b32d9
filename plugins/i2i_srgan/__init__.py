"""Super-resolution (SRGAN, ESRGAN, Real-ESRGAN): generators, discriminator, losses, methods,
the Real-ESRGAN model zoo entries and ``i2i eval sr``.

Every SR generator maps RGB in [0, 1] to RGB in [0, 1] at ``scale`` times the size.
"""

from __future__ import annotations

import i2i

# torch-using modules are imported inside the hooks: `i2i --help` and a torch-free `i2i serve`
# load this plugin without importing torch.

SR_RANGE = (0.0, 1.0)


@i2i.hookimpl
def register_generators(register) -> None:
    from .networks import RRDBNet, SRGANLeftthomas, SRResNet, SRVGGNetCompact

    # in_channels, out_channels and scale are keywords of these factories (read from their signatures)
    # srresnet / srgan_leftthomas: BatchNorm in training at batch 1 needs more than one LR pixel: min_size 2
    register("srresnet", SRResNet, scale=4, scales=(2, 3, 4, 8), value_range=SR_RANGE, min_size=2,
             test_kwargs={"num_feat": 8, "num_block": 1}, test_size=32,
             description="SRResNet (SRGAN paper): 16 residual blocks, BatchNorm or none, PixelShuffle x2/x3/x4/x8")
    register("srvgg_compact", SRVGGNetCompact, scale=4, value_range=SR_RANGE,
             test_kwargs={"num_feat": 8, "num_conv": 2}, test_size=32,
             description="Real-ESRGAN compact (SRVGGNetCompact): LR convs + PixelShuffle + nearest skip")
    register("rrdbnet", RRDBNet, scale=4, scales=(1, 2, 4), value_range=SR_RANGE,
             test_kwargs={"num_feat": 8, "num_block": 1, "num_grow_ch": 4}, test_size=32,
             description="RRDBNet (ESRGAN, Real-ESRGAN x4plus/x2plus), basicsr key layout")
    register("srgan_leftthomas", SRGANLeftthomas, scale=4, scales=(2, 4, 8), value_range=SR_RANGE, min_size=2,
             test_kwargs={"num_feat": 8, "num_block": 1}, test_size=32,
             description="SRGAN generator of leftthomas/SRGAN (block1..block8), output (tanh+1)/2")


@i2i.hookimpl
def register_discriminators(register) -> None:
    from .networks import VGGStyleDiscriminator

    register("vgg_style", VGGStyleDiscriminator, test_kwargs={"ndf": 8}, test_size=32,
             kwarg_names={"in_channels": "input_nc"}, norms=("batch", "none"), features=True,
             # BatchNorm after the last stride-2 conv needs 2x2 there at batch 1
             min_size=lambda kw: 1 if kw.get("norm", "batch") == "none" else 2 ** int(kw.get("n_stages", 4)) + 1,
             description="SRGAN/ESRGAN VGG-style discriminator, 8 convs + dense; any input size >= 17 px")


@i2i.hookimpl
def register_losses(register) -> None:
    from .losses import PerceptualLoss

    # "ragan" (ESRGAN's relativistic average loss) is registered by i2i_losses, for every method
    register("vgg19_perceptual", PerceptualLoss, kind="perceptual",
             test_kwargs={"layers": {"relu1_1": 1.0}, "weights": "random"},
             description="VGG19 feature distance (ImageNet weights via torchvision); layers e.g. conv5_4")


@i2i.hookimpl
def register_methods(register) -> None:
    from .method import SRGANMethod, SRResNetMethod

    register("srresnet", SRResNetMethod, description="PSNR-oriented super-resolution (pixel loss, no discriminator)")
    register("srgan", SRGANMethod, description="GAN super-resolution (SRGAN / ESRGAN): perceptual + adversarial")


@i2i.hookimpl
def register_models(register) -> None:
    from .zoo import ZOO

    for name, entry in ZOO.items():
        register(name, **entry)


@i2i.hookimpl
def register_commands(cli) -> None:
    from .evaluate import eval_sr

    cli.commands["eval"].add_command(eval_sr, "sr")


@i2i.hookimpl
def identify_weights(state: dict):
    """Real-ESRGAN compact, RRDBNet (ESRGAN / Real-ESRGAN, basicsr or xinntao keys), leftthomas
    SRGAN and i2i's SRResNet, recognised from their keys (:func:`i2i_srgan.weights.detect`)."""
    from .weights import detect, recognises

    if not recognises(state):
        return None
    return detect(state)
