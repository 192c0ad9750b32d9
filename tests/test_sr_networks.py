"""SR networks and losses: behaviour the conformance suite does not cover."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from i2i.errors import I2IError
from i2i.plugins import manager
from i2i.registry import create_discriminator, create_generator, create_loss


@pytest.fixture(scope="module", autouse=True)
def _plugins() -> None:
    manager()


@pytest.mark.parametrize("size", [16, 24, 40, 96])
def test_vgg_style_discriminator_takes_any_size(size: int) -> None:
    D = create_discriminator("vgg_style", ndf=8)
    assert D(torch.rand(2, 3, size, size + 8)).shape == (2, 1, 1, 1)


@pytest.mark.parametrize("scale, side", [(2, (13, 10)), (1, (9, 14)), (4, (7, 5))])
def test_rrdbnet_odd_sizes_for_pixel_unshuffle_scales(scale: int, side: tuple[int, int]) -> None:
    G = create_generator("rrdbnet", scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    with torch.no_grad():
        out = G(torch.rand(1, 3, *side))
    assert out.shape == (1, 3, side[0] * scale, side[1] * scale)


@pytest.mark.parametrize("name, kwargs", [
    ("srresnet", {"num_feat": 8, "num_block": 1}), ("srresnet", {"num_feat": 8, "num_block": 1, "scale": 3}),
    ("srvgg_compact", {"num_feat": 8, "num_conv": 2, "scale": 2}), ("srgan_leftthomas", {"num_feat": 8, "num_block": 1, "scale": 2}),
])
def test_generators_upscale_by_their_scale_into_unit_range(name: str, kwargs: dict) -> None:
    G = create_generator(name, **kwargs).eval()
    s = kwargs.get("scale", 4)
    with torch.no_grad():
        out = G(torch.rand(2, 3, 10, 12))
    assert out.shape == (2, 3, 10 * s, 12 * s) and 0 <= float(out.min()) and float(out.max()) <= 1


def test_compact_learns_a_residual_over_nearest_upsampling() -> None:
    G = create_generator("srvgg_compact", num_feat=8, num_conv=2, scale=4).eval()
    for p in G.parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 6, 7)
    with torch.no_grad():
        torch.testing.assert_close(G(x), F.interpolate(x, scale_factor=4, mode="nearest"))


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(I2IError, match="srresnet supports scale"):
        create_generator("srresnet", scale=5)
    with pytest.raises(I2IError, match="rrdbnet supports scale"):
        create_generator("rrdbnet", scale=3)
    with pytest.raises(I2IError, match="unknown VGG19 layer 'conv5_5'"):
        create_loss("vgg19_perceptual", layers={"conv5_5": 1.0}, weights="random")


def test_relativistic_average_loss() -> None:
    ragan = create_loss("ragan")
    real, fake = torch.tensor([2.0, 3.0]), torch.tensor([-1.0, 0.0])
    # D(x_r) - E[D(x_f)] = [2.5, 3.5] scored as real
    expected = F.binary_cross_entropy_with_logits(torch.tensor([2.5, 3.5]), torch.ones(2))
    torch.testing.assert_close(ragan(real, True, reference=fake), expected)
    # the discriminator's loss falls as reals score above fakes; the generator's rises
    d_good = ragan(real, True, reference=fake) + ragan(fake, False, reference=real)
    d_bad = ragan(fake, True, reference=real) + ragan(real, False, reference=fake)
    assert d_good < d_bad
    g = ragan(real, False, False, reference=fake) + ragan(fake, True, False, reference=real)
    assert g > d_good
    assert ragan(real, True) == F.binary_cross_entropy_with_logits(real, torch.ones(2))  # no reference: vanilla


def test_perceptual_layer_names_follow_the_papers() -> None:
    from i2i_srgan.losses import vgg19_layer_names

    names = vgg19_layer_names()
    # torchvision vgg19.features indices: conv5_4 = 34 (ESRGAN, before ReLU), relu5_4 = 35 (SRGAN VGG54)
    assert names.index("conv5_4") == 34 and names.index("relu5_4") == 35 and len(names) == 37
    loss = create_loss("vgg19_perceptual", layers={"relu2_2": 1.0}, weights="random")
    assert len(loss.vgg) == names.index("relu2_2") + 1  # only the layers it needs
