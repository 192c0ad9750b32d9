"""Every registered discriminator declares the smallest input it takes (DiscriminatorSpec.min_size),
and every method checks its crop against it when it builds the networks, before any data is read.

The fault this guards: ``i2i train cyclegan --data horse2zebra --set crop_size=16`` ended in a raw
ValueError from the 70x70 PatchGAN (its 4x4 output convs had nothing left to convolve).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli
from i2i.config import build
from i2i.contract import ContractError, discriminator_kwargs, tiny_kwargs
from i2i.engine.trainer import build_method
from i2i.errors import I2IError
from i2i.registry import discriminator_min_size, discriminators, generators, methods
from i2i.testing import check_method_trains, discriminator_names

pytestmark = pytest.mark.usefixtures("one_thread")

HORSES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "horses"
#: methods with a discriminator, and a generator that takes small crops in each (size multiple 4)
GAN_METHODS = {"pix2pix": "resnet_6blocks", "cyclegan": "resnet_6blocks", "srgan": "srvgg_compact",
               "inpaint": "deepfill_v2"}


def _d_kwargs(name: str, in_channels: int) -> dict[str, Any]:
    spec = discriminators().get(name)
    return discriminator_kwargs(spec, tiny_kwargs(spec), method="test", in_channels=in_channels)


@pytest.mark.parametrize("name", discriminator_names())
def test_the_declared_minimum_is_exact(name: str) -> None:
    """At batch 1 in training mode (the worst case for a norm layer), the declared side gives logits
    and one pixel less fails: the declaration is neither too strict nor too lax."""
    spec = discriminators().get(name)
    kwargs = _d_kwargs(name, spec.test_in_channels)
    least = discriminator_min_size(spec, kwargs)
    net = spec.factory(**kwargs).train()
    out = net(torch.rand(1, spec.test_in_channels, least, least) * 2 - 1)
    assert out.numel() > 0 and torch.isfinite(out).all()
    if least > 1:
        with pytest.raises((RuntimeError, ValueError)):
            out = net(torch.rand(1, spec.test_in_channels, least - 1, least - 1) * 2 - 1)
            assert out.numel() > 0  # an empty output counts as not taking the input


def _cfg(method: str, dname: str, crop: int) -> Any:
    cls = methods().get(method).factory
    over = cls.conformance_config(None, discriminators().get(dname))
    over.update(generator=GAN_METHODS[method], crop_size=crop, device="cpu", precision="fp32", num_workers=0)
    over["generator_kwargs"] = {"ngf": 4} if method in ("pix2pix", "cyclegan") else over.get("generator_kwargs", {})
    if method == "pix2pix" or method == "cyclegan":
        over["load_size"] = crop
    if method == "inpaint":
        over.update(generator_kwargs={"cnum": 4}, coarse_weight=1.0)
    return build(cls.Config, overrides=over)


@pytest.mark.parametrize("method", list(GAN_METHODS))
@pytest.mark.parametrize("dname", discriminator_names())
def test_every_method_checks_every_discriminators_minimum(method: str, dname: str) -> None:
    """The smallest crop that fits the discriminator (and the generator's size multiple) trains a
    step; a smaller one is a one-line I2IError naming crop_size and that size, before any data."""
    try:
        m = build_method(method, _cfg(method, dname, 64))
    except ContractError as exc:
        pytest.skip(f"does not fit: {exc}")
    spec = discriminators().get(dname)
    least = discriminator_min_size(spec, m.discriminator_specs[m.discriminator_nets[0]][1])
    multiple = m.crop_multiple()
    gen_least = max(generators().get(n).min_size for n, _ in m.generator_specs.values())  # ResNet: 8
    fit = -(-max(least, gen_least) // multiple) * multiple
    # the fitting size trains: one engine-order step (forward, D loss + backward, G loss + backward)
    m = build_method(method, _cfg(method, dname, fit))
    torch.manual_seed(0)
    batch = m.example_batch(1)
    out = m.forward(batch)
    sum(m.discriminator_loss(batch, out).values()).backward()  # type: ignore[union-attr]
    sum(m.generator_loss(batch, out).values()).backward()  # type: ignore[union-attr]
    # one pixel less, and the largest crop below the minimum the generator would take
    smaller = [s for s in (least - 1, (least - 1) // multiple * multiple) if s >= 1]
    if not smaller:
        pytest.skip(f"{dname} takes any side")
    for size in smaller:
        with pytest.raises(I2IError) as err:
            build_method(method, _cfg(method, dname, size))
        line = str(err.value)
        assert "\n" not in line
        if size % multiple == 0:  # the generator takes it: the discriminator is what refuses it
            assert f"crop_size {size} is too small for discriminator {dname}, which takes sides of at least {least}" in line
        assert f"--set crop_size={fit}" in line  # fits the discriminator and the generator


def test_the_conformance_suite_still_trains_every_discriminator_at_its_test_size() -> None:
    for name in discriminator_names():
        check_method_trains("pix2pix", discriminator=name)


@pytest.mark.skipif(not HORSES.is_dir(), reason="needs ../shared/datasets/horses")
def test_the_reported_fault_through_the_cli(tmp_path: Path) -> None:
    """`i2i train cyclegan --set crop_size=16`: one line, before any image is read; 24 trains."""
    runner = CliRunner()
    base = ["train", "cyclegan", "--data", str(HORSES), "--out-dir", str(tmp_path), "--max-steps", "1",
            "--set", f"a_dir={HORSES}", "--set", f"b_dir={HORSES}", "--set", "generator_kwargs.ngf=4",
            "--set", "discriminator_kwargs.ndf=4", "--set", "num_workers=0", "--set", "save_every_minutes=0",
            "--set", "threads=1"]
    for crop, fix in ((16, 24), (23, 24), (20, 24)):
        result = runner.invoke(cli, [*base, "--name", f"c{crop}", "--set", f"crop_size={crop}", "--set", "load_size=32"])
        assert result.exit_code == 1, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.output, result.output
        assert f"crop_size {crop} is too small for discriminator patch_70, which takes sides of at least 24" in errors[0]
        assert f"--set crop_size={fix}" in errors[0]
        assert not (tmp_path / f"c{crop}").exists()  # nothing was started
    # the same on a made-up data folder: the config is checked before the data is looked for
    result = runner.invoke(cli, ["train", "cyclegan", "--data", str(tmp_path / "nothing_here"), "--set", "crop_size=16"])
    assert result.exit_code == 1 and "too small for discriminator patch_70" in result.output
    # the declared minimum trains on the real horses
    result = runner.invoke(cli, [*base, "--name", "c24", "--set", "crop_size=24", "--set", "load_size=28"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c24" / "metrics.jsonl").read_text().strip()
