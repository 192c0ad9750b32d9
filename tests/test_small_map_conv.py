"""The GEMM path for convolutions on small maps computes what nn.Conv2d / nn.ConvTranspose2d compute."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import i2i.nn as inn
from i2i.nn import SmallMapConv2d, SmallMapConvTranspose2d, plain_convs

pytestmark = pytest.mark.usefixtures("one_thread")


def _grads(module: nn.Module, forward, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_()
    y = forward(x)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    grads = torch.autograd.grad(y, [x, *module.parameters()], g)
    return y.detach(), list(grads)


def _check_matches_standard(module: nn.Module, base: type, x: torch.Tensor, spy: list[tuple]) -> None:
    y, grads = _grads(module, module, x)
    assert spy, "the GEMM path was not taken"
    y_ref, grads_ref = _grads(module, lambda t: base.forward(module, t), x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def gemm_calls(record_true) -> list[tuple]:
    """The (input, columns) of each layer that took the GEMM path."""
    return record_true(inn, "_use_gemm")


@pytest.mark.parametrize("batch,side", [(1, 2), (1, 8), (1, 16), (3, 8), (2, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_conv_matches_nn_conv2d(batch: int, side: int, bias: bool, gemm_calls: list[tuple]) -> None:
    torch.manual_seed(0)
    conv = SmallMapConv2d(12, 10, kernel_size=4, stride=2, padding=1, bias=bias)
    _check_matches_standard(conv, nn.Conv2d, torch.randn(batch, 12, side, side), gemm_calls)


@pytest.mark.parametrize("batch,side", [(1, 1), (1, 2), (1, 4), (1, 8), (4, 1), (3, 2), (2, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_transposed_conv_matches_nn_conv_transpose2d(batch: int, side: int, bias: bool, gemm_calls: list[tuple]) -> None:
    # (1, 1), (1, 2), (4, 1) and (3, 2) take the skinny orientation; the others the plain one.
    torch.manual_seed(0)
    conv = SmallMapConvTranspose2d(12, 10, kernel_size=4, stride=2, padding=1, bias=bias)
    _check_matches_standard(conv, nn.ConvTranspose2d, torch.randn(batch, 12, side, side), gemm_calls)


def test_large_maps_and_unusual_layers_take_the_standard_path(gemm_calls: list[tuple]) -> None:
    SmallMapConv2d(4, 4, 4, stride=2, padding=1)(torch.randn(1, 4, 64, 64))  # 1024 columns
    SmallMapConv2d(4, 4, 4, stride=2, padding=1)(torch.randn(1, 4, 4, 4))  # 4 columns: oneDNN is faster
    SmallMapConv2d(4, 4, 3, padding=1, dilation=2)(torch.randn(1, 4, 4, 4))
    SmallMapConv2d(4, 4, 3, padding=1, padding_mode="reflect")(torch.randn(1, 4, 4, 4))
    SmallMapConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)(torch.randn(1, 4, 2, 2))
    SmallMapConvTranspose2d(4, 4, 4, stride=2, padding=1)(torch.randn(4, 2, 2))  # unbatched input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        SmallMapConv2d(4, 4, 4, stride=2, padding=1)(torch.randn(1, 4, 4, 4))
    SmallMapConv2d(4, 4, 4, stride=2, padding=1).double()(torch.randn(1, 4, 4, 4, dtype=torch.float64))
    assert gemm_calls == []


def test_tracing_keeps_the_standard_operators(gemm_calls: list[tuple]) -> None:
    net = nn.Sequential(SmallMapConv2d(4, 8, 4, 2, 1), SmallMapConvTranspose2d(8, 4, 4, 2, 1))
    traced = torch.jit.trace(net, torch.randn(1, 4, 4, 4), check_trace=False)
    assert gemm_calls == []
    graph = str(traced.inlined_graph)
    assert "aten::_convolution" in graph and "aten::im2col" not in graph and "aten::col2im" not in graph


def test_plain_convs_restores_the_torch_classes_with_the_same_parameters() -> None:
    net = nn.Sequential(SmallMapConv2d(4, 8, 4, 2, 1), SmallMapConvTranspose2d(8, 4, 4, 2, 1))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    plain_convs(net)
    assert [type(m) for m in net] == [nn.Conv2d, nn.ConvTranspose2d]
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_unet_256_output_and_gradients_unchanged_by_the_gemm_path() -> None:
    """The full pix2pix generator (every inner level takes the GEMM path) against stock layers."""
    import copy

    from i2i_pix2pix.networks import UnetGenerator

    torch.manual_seed(0)
    fast = UnetGenerator(3, 3, num_downs=8, ngf=8, norm="batch", use_dropout=False)
    stock = plain_convs(copy.deepcopy(fast))
    x = torch.randn(1, 3, 256, 256)
    y_fast, y_stock = fast(x), stock(x)
    torch.testing.assert_close(y_fast, y_stock, rtol=1e-4, atol=1e-5)
    y_fast.square().mean().backward()
    y_stock.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), stock.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6, msg=name)
