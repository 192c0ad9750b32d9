"""The conformance suite (i2i.testing) over every registered generator, discriminator and loss.

The names are read from the registries at collection time, so whatever a plugin registers (the
built-ins, or an installed third-party plugin) is checked. The second half shows that each check
can fail: deliberately broken entries must raise ConformanceError with a message saying why.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from i2i import plugins
from i2i.registry import DiscriminatorSpec, GeneratorSpec, InputSpec, LossSpec
from i2i.testing import (
    ConformanceError,
    check_discriminator,
    check_generator,
    check_generator_onnx,
    check_loss,
    discriminator_names,
    export_generator_onnx,
    generator_names,
    loss_names,
    plugin_paths,
)

pytestmark = pytest.mark.usefixtures("one_thread")


GENERATORS = generator_names()
DISCRIMINATORS = discriminator_names()
LOSSES = loss_names()


def test_the_builtins_are_all_covered() -> None:
    assert {"unet_256", "unet_128", "deepfill_v2"} <= set(GENERATORS)  # deepfill_v2 takes a mask
    assert {"patch_70"} <= set(DISCRIMINATORS) and {"lsgan", "vanilla", "hinge", "wgan-gp", "l1"} <= set(LOSSES)


@pytest.mark.parametrize("name", GENERATORS)
def test_generator(name: str) -> None:
    check_generator(name)


@pytest.mark.parametrize("name", GENERATORS)
def test_generator_onnx(name: str, tmp_path: Path) -> None:
    check_generator_onnx(name, tmp_path)


@pytest.mark.parametrize("name", DISCRIMINATORS)
def test_discriminator(name: str) -> None:
    check_discriminator(name)


@pytest.mark.parametrize("name", LOSSES)
def test_loss(name: str) -> None:
    check_loss(name)


def test_third_party_example_plugin_conforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a plugin author runs: the suite on an entry from an entry-point plugin."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    for p in plugin_paths(examples / "i2i-example-plugin", tmp_path / "site"):
        monkeypatch.syspath_prepend(str(p))
    monkeypatch.setenv("I2I_PLUGINS", "example")
    plugins.reset()
    try:
        names = generator_names(plugin="example")
        assert names == ["example_resnet"]
        check_generator(names[0])
        check_generator_onnx(names[0], tmp_path)
    finally:
        plugins.reset()
        for m in [m for m in sys.modules if m.split(".")[0] == "i2i_example"]:
            del sys.modules[m]


# --------------------------------------------------------------------------- the checks can fail


def gen_spec(factory: Any, **cfg: Any) -> GeneratorSpec:
    return GeneratorSpec("bad", factory, plugin="tests", **cfg)


class Tanh(nn.Module):
    """A well-behaved generator, the base of the broken ones."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


class NoTanh(Tanh):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 10


class UnusedParameter(Tanh):
    def __init__(self) -> None:
        super().__init__()
        self.extra = nn.Conv2d(3, 3, 1)  # never called


class DropoutInEval(Tanh):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.dropout(self.conv(x), 0.5, training=True))


class Halves(Tanh):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), 2)


class BakedSize(Tanh):
    """Traced shapes become constants: fine in PyTorch, wrong in ONNX at another size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[2]), int(x.shape[3])
        return F.interpolate(super().forward(x)[:, :, ::2, ::2], size=(h, w), mode="nearest")


class Masked(nn.Module):
    """Inpainting-shaped: forward(image, mask), the mask marking holes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(self.conv(torch.cat([image * (1 - mask), mask], 1)))
        return image * (1 - mask) + out * mask


@pytest.mark.parametrize("factory, message", [
    (NoTanh, "outside value_range"),
    (UnusedParameter, "2 parameter(s) get no gradient (unused in forward?): extra.weight, extra.bias"),
    (DropoutInEval, "eval mode is not deterministic"),
    (Halves, "train-mode output shape (2, 3, 16, 16), expected (2, 3, 32, 32)"),
    (nn.Identity, "has no trainable parameters"),
    (lambda: "not a module", "factory returned str, not an nn.Module"),
])
def test_check_generator_catches(factory: Any, message: str) -> None:
    with pytest.raises(ConformanceError) as err:
        check_generator(gen_spec(factory))
    assert str(err.value).startswith("generator 'bad' (plugin 'tests'): ") or "'bad'" in str(err.value)
    assert message in str(err.value)


def test_check_generator_catches_a_bad_spec() -> None:
    with pytest.raises(ConformanceError, match="test_size 30 is not a multiple of 4"):
        check_generator(gen_spec(Tanh, size_multiple=4, test_size=30))


def test_check_generator_scale_and_value_range() -> None:
    class Up2(Tanh):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(F.interpolate(self.conv(x), scale_factor=2))

    check_generator(gen_spec(Up2, scale=2, value_range=(0.0, 1.0)))
    with pytest.raises(ConformanceError, match="expected \\(2, 3, 32, 32\\)"):
        check_generator(gen_spec(Up2, value_range=(0.0, 1.0)))


def test_generator_with_a_mask_input_passes_both_checks(tmp_path: Path) -> None:
    spec = gen_spec(Masked, extra_inputs=(InputSpec("mask", 1),))
    check_generator(spec)
    path = check_generator_onnx(spec, tmp_path)
    import onnx

    assert [i.name for i in onnx.load(str(path)).graph.input] == ["image", "mask"]


def test_check_generator_onnx_catches_sizes_baked_into_the_graph(tmp_path: Path) -> None:
    spec = gen_spec(BakedSize)
    check_generator(spec)  # PyTorch itself is fine
    with pytest.raises(ConformanceError, match="generator 'bad' \\(plugin 'tests'\\): onnxruntime "):
        check_generator_onnx(spec, tmp_path)


def test_check_generator_onnx_catches_a_mismatch_and_fixed_axes(tmp_path: Path) -> None:
    def other_weights(model: nn.Module, meta: Any, path: Path) -> Path:
        twin = Tanh().eval()
        with torch.no_grad():
            twin.conv.weight.copy_(model.conv.weight + 1e-3)
            twin.conv.bias.copy_(model.conv.bias)
        return export_generator_onnx(twin, meta, path)

    with pytest.raises(ConformanceError, match="onnxruntime differs from PyTorch by .* \\(> 0.0001\\)"):
        check_generator_onnx(gen_spec(Tanh), tmp_path, exporter=other_weights)

    def static(model: nn.Module, meta: Any, path: Path) -> Path:
        from i2i_export.exporter import export_onnx

        return export_onnx(model, meta, path, dynamic=False)

    with pytest.raises(ConformanceError, match="has fixed axes \\[0, 2, 3\\]"):
        check_generator_onnx(gen_spec(Tanh), tmp_path, exporter=static)

    def broken(model: nn.Module, meta: Any, path: Path) -> Path:
        raise RuntimeError("cannot trace this\nlong details")

    with pytest.raises(ConformanceError, match="ONNX export failed: RuntimeError: cannot trace this$"):
        check_generator_onnx(gen_spec(Tanh), tmp_path, exporter=broken)


class PatchD(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_check_discriminator_catches() -> None:
    spec = DiscriminatorSpec("d", PatchD, plugin="tests")
    check_discriminator(spec)

    class Flat(PatchD):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x).flatten(1)

    with pytest.raises(ConformanceError, match="output shape \\(2, 256\\) .* expected 4-D logits"):
        check_discriminator(DiscriminatorSpec("d", Flat, plugin="tests"))

    class Unused(PatchD):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(3, 1)

    with pytest.raises(ConformanceError, match="get no gradient .*head.weight"):
        check_discriminator(DiscriminatorSpec("d", Unused, plugin="tests"))

    with pytest.raises(RuntimeError):  # 6 input channels declared by test_in_channels, 3 accepted
        check_discriminator(DiscriminatorSpec("d", PatchD, plugin="tests", test_in_channels=6))


class IgnoresTarget(nn.Module):
    def forward(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        return pred.pow(2).mean()


class PerPixel(nn.Module):
    def forward(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        return F.softplus(-pred if target_is_real else pred)  # forgot the mean


class Detached(nn.Module):
    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (out.detach() - target).abs().mean()


def test_check_loss_catches() -> None:
    with pytest.raises(ConformanceError, match="the same for real and fake targets"):
        check_loss(LossSpec("x", IgnoresTarget, plugin="tests"))
    with pytest.raises(ConformanceError, match="returned \\(2, 1, 8, 8\\), expected a scalar tensor"):
        check_loss(LossSpec("x", PerPixel, plugin="tests"))
    with pytest.raises(ConformanceError, match="is not differentiable"):
        check_loss(LossSpec("x", Detached, plugin="tests", kind="pixel"))
    check_loss(LossSpec("x", nn.L1Loss, plugin="tests", kind="pixel"))
    with pytest.raises(pytest.skip.Exception, match="kind 'custom'"):
        check_loss(LossSpec("x", nn.L1Loss, plugin="tests", kind="custom"))
