"""Every registered generator's declared smallest side (GeneratorSpec.min_size) is checked with the
config, for every method, before any data is read.

The fault this guards: ``i2i train cyclegan --set crop_size=4 --set discriminator=pixel ...`` ended in
``ValueError: Expected more than 1 spatial element when training`` from the ResNet generator's
InstanceNorm at its 1/4-size bottleneck (crop 4 is a multiple of its size multiple, so the
divisibility check let it through).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli
from i2i.config import build as build_config
from i2i.contract import ContractError
from i2i.engine.trainer import build_method
from i2i.errors import I2IError
from i2i.registry import generators, methods
from i2i.testing import build, generator_inputs, generator_names, method_network_pairs

pytestmark = pytest.mark.usefixtures("one_thread")

HORSES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "horses"


def _sizes(name: str) -> tuple[int, int | None]:
    """(the smallest side the tiny instance should train at, the next smaller allowed side or None)."""
    spec = generators().get(name)
    multiple = spec.test_size_multiple or spec.size_multiple
    fit = -(-max(spec.min_size, 1) // multiple) * multiple
    below = fit - multiple
    return fit, (below if below >= 1 and below < spec.min_size else None)


@pytest.mark.parametrize("name", generator_names())
def test_the_declared_minimum_trains_and_the_next_smaller_side_fails(name: str) -> None:
    """Batch 1 in training mode (a norm layer's worst case): the declared minimum gives a finite output
    and gradients; the next smaller allowed side (when it is below the declaration) fails."""
    spec = generators().get(name)
    if spec.describe is not None:
        pytest.skip("min_size is read off each built instance (describe)")
    fit, below = _sizes(name)
    net = build(spec).train()
    out = net(*generator_inputs(spec, batch=1, height=fit))
    out = out[0] if isinstance(out, tuple) else out
    assert torch.isfinite(out).all()
    out.float().mean().backward()
    if below is not None:
        with pytest.raises((RuntimeError, ValueError)):
            net(*generator_inputs(spec, batch=1, height=below))


@pytest.mark.parametrize("method,name", method_network_pairs("generator"))
def test_every_method_refuses_a_crop_below_the_generators_minimum(method: str, name: str) -> None:
    """The smallest crop the generator takes (HR side for super-resolution) builds; the next smaller
    allowed crop is a one-line I2IError naming the generator and that crop, before any data."""
    spec = generators().get(name)
    if _sizes(name)[1] is None:
        pytest.skip(f"{name} takes its smallest allowed side")
    cls = methods().get(method).factory
    over = cls.conformance_config(spec, None)
    if over is None:
        pytest.skip("takes no part")
    over = {**over, "device": "cpu", "precision": "fp32", "num_workers": 0}
    if "discriminator" in vars(cls.Config()):  # a discriminator that takes any side, so only the generator can refuse
        over.update(discriminator="pixel", discriminator_kwargs={"ndf": 4, "norm": "none"})
    sized = "load_size" in vars(cls.Config())

    def cfg(crop: int):
        return build_config(cls.Config, overrides={**over, "crop_size": crop, **({"load_size": crop} if sized else {})})

    try:
        m = build_method(method, cfg(over["crop_size"]))
    except ContractError as exc:
        pytest.skip(f"does not fit: {exc}")
    multiple = m.crop_multiple()
    fit = -(-m.generator_min_crop() // multiple) * multiple
    build_method(method, cfg(fit))
    with pytest.raises(I2IError) as err:
        build_method(method, cfg(fit - multiple))
    line = str(err.value)
    assert "\n" not in line and f"too small for generator {name}" in line and f"--set crop_size={fit}" in line


@pytest.mark.skipif(not HORSES.is_dir(), reason="needs ../shared/datasets/horses")
def test_the_reported_fault_through_the_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, [
        "train", "cyclegan", "--data", str(HORSES), "--out-dir", str(tmp_path), "--max-steps", "1",
        "--set", "crop_size=4", "--set", "load_size=4", "--set", "discriminator=pixel",
        "--set", "discriminator_kwargs.norm=none", "--set", "generator_kwargs.ngf=4"])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "too small for generator resnet_9blocks" in errors[0], result.output
    assert "--set crop_size=8" in errors[0]
