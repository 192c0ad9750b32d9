"""The Winograd F(4x4, 3x3) path for wide 3x3 convolutions computes what nn.Conv2d computes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import i2i.nn as inn
from i2i.nn import WinogradConv2d, plain_convs

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def winograd_calls(record_true) -> list[tuple]:
    """The (conv, input) of each layer that took the Winograd path."""
    return record_true(inn, "_use_winograd")


@pytest.fixture
def any_map_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The maths on small maps: the speed threshold on the map size off."""
    monkeypatch.setattr(inn, "WINOGRAD_MIN_PIXELS", 0)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach(), want.detach()
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("padding", [0, 1, 2, 3, (1, 0)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 11, 9), (2, 8, 8)])
@pytest.mark.usefixtures("any_map_size")
def test_output_and_gradients_match_nn_conv2d(padding: int | tuple[int, int], bias: bool, shape: tuple[int, int, int],
                                              winograd_calls: list[tuple]) -> None:
    torch.manual_seed(0)
    conv = WinogradConv2d(128, 128, 3, padding=padding, bias=bias)
    n, h, w = shape
    x = torch.randn(n, 128, h, w)
    params = [p for p in conv.parameters()]

    def run(forward) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        xi = x.clone().requires_grad_()
        y = forward(xi)
        g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        return y.detach(), torch.autograd.grad(y, [xi, *params], g)

    y, grads = run(conv)
    assert winograd_calls, "the Winograd path was not taken"
    y_ref, grads_ref = run(lambda t: nn.Conv2d.forward(conv, t))
    assert y.shape == y_ref.shape
    # Winograd rounds differently from the direct sum: ~1e-5 relative, far from a wrong result
    # (a transposed or misaligned kernel gives errors of order 1).
    assert _relative_error(y, y_ref) < 1e-4
    for got, want in zip(grads, grads_ref):
        assert _relative_error(got, want) < 1e-4


def test_small_maps_take_the_standard_path(winograd_calls: list[tuple]) -> None:
    WinogradConv2d(128, 128, 3, padding=1)(torch.randn(1, 128, 16, 16))
    assert winograd_calls == []
    WinogradConv2d(128, 128, 3, padding=1)(torch.randn(1, 128, 32, 32))
    assert len(winograd_calls) == 1


@pytest.mark.usefixtures("any_map_size")
def test_narrow_strided_and_traced_convolutions_take_the_standard_path(winograd_calls: list[tuple]) -> None:
    WinogradConv2d(64, 64, 3, padding=1)(torch.randn(1, 64, 8, 8))  # below WINOGRAD_MIN_CHANNELS
    WinogradConv2d(128, 128, 3, stride=2, padding=1)(torch.randn(1, 128, 8, 8))
    WinogradConv2d(128, 128, 3, padding=1, padding_mode="reflect")(torch.randn(1, 128, 8, 8))
    WinogradConv2d(128, 128, 3, padding=1).double()(torch.randn(1, 128, 8, 8, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        WinogradConv2d(128, 128, 3, padding=1)(torch.randn(1, 128, 8, 8))
    traced = torch.jit.trace(WinogradConv2d(128, 128, 3), torch.randn(1, 128, 6, 6), check_trace=False)
    assert winograd_calls == []
    assert "aten::_convolution" in str(traced.inlined_graph)


@pytest.mark.usefixtures("any_map_size")
def test_resnet_generator_trains_like_the_stock_layers() -> None:
    """resnet_6blocks at ngf 32 (128-channel residual convolutions, all on the Winograd path)."""
    from i2i_cyclegan.networks import ResnetGenerator

    torch.manual_seed(0)
    fast = ResnetGenerator(3, 3, ngf=32, n_blocks=6)
    assert sum(isinstance(m, WinogradConv2d) for m in fast.modules()) == 12
    stock = plain_convs(copy.deepcopy(fast))
    assert not any(isinstance(m, WinogradConv2d) for m in stock.modules())
    assert fast.state_dict().keys() == stock.state_dict().keys()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y_fast, y_stock = fast(x), stock(x)
    assert (y_fast - y_stock).abs().max() < 1e-4
    y_fast.square().mean().backward()
    y_stock.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), stock.parameters()):
        assert a.grad is not None and b.grad is not None
        # A bias before InstanceNorm has a zero gradient in theory (~1e-8 here): hence the floor.
        assert (a.grad - b.grad).abs().max() <= 1e-3 * b.grad.abs().max() + 1e-6, name


@pytest.mark.usefixtures("any_map_size")
def test_gradients_for_the_weights_alone_and_the_input_alone() -> None:
    """A first layer's input needs no gradient, a frozen layer's weights none: each is left out."""
    torch.manual_seed(0)
    conv = WinogradConv2d(128, 128, 3, padding=1)
    x = torch.randn(1, 128, 12, 12)
    conv(x).sum().backward()
    want = torch.autograd.grad(nn.Conv2d.forward(conv, x).sum(), conv.weight)[0]
    assert _relative_error(conv.weight.grad, want) < 1e-4

    conv.requires_grad_(False)
    xi = x.clone().requires_grad_()
    conv(xi).sum().backward()
    want = torch.autograd.grad(nn.Conv2d.forward(conv, xi).sum(), xi)[0]
    assert _relative_error(xi.grad, want) < 1e-4


def test_winograd_conv3x3_rejects_other_kernels() -> None:
    from i2i.winograd import winograd_conv3x3

    with pytest.raises(ValueError, match="3x3 kernel"):
        winograd_conv3x3(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 5, 5))


@pytest.mark.usefixtures("any_map_size")
def test_channels_last_input(winograd_calls: list[tuple]) -> None:
    """The engine's channels_last switch hands the layer NHWC-strided tensors; same results."""
    torch.manual_seed(0)
    conv = WinogradConv2d(128, 128, 3, padding=1)
    x = torch.randn(2, 128, 10, 10)
    xi = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y = conv(xi)
    assert winograd_calls
    y_ref = nn.Conv2d.forward(conv, x.clone().requires_grad_())
    assert _relative_error(y, y_ref) < 1e-4
    g = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
    (grad_x,) = torch.autograd.grad(y, xi, g)
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(nn.Conv2d.forward(conv, xr), xr, g)
    assert _relative_error(grad_x, want) < 1e-4


@pytest.mark.usefixtures("any_map_size")
def test_second_derivatives_are_refused_not_wrong() -> None:
    """A gradient penalty through the layer needs double backward, which the Winograd backward does
    not provide: it must raise rather than return a wrong derivative."""
    conv = WinogradConv2d(128, 128, 3, padding=1)
    x = torch.randn(1, 128, 8, 8, requires_grad=True)
    (grad_x,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad_x.square().sum().backward()
