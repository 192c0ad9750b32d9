"""3x3 and 4x4 stride-1 convolutions as Winograd F(4x4, 3x3) and F(3x3, 4x4), forward and backward.

A ResNet generator spends most of a CPU training step in its 3x3, 256-channel residual convolutions,
a PatchGAN much of its own in its one stride-1 4x4 layer (256 -> 512), which oneDNN computes directly.
F(4x4, 3x3) computes each 4x4 output tile from a 6x6 input tile with 36 multiplications per (input,
output) channel pair instead of 144, F(3x3, 4x4) each 3x3 tile with 36 instead of 144 (Lavin & Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016):

    input transform   V = B^T d B    36 numbers per 6x6 input tile and channel
    36 channel GEMMs  M = U . V      U = G g G^T from the weights
    output transform  Y = A^T M A    m x m outputs per tile, tiles back into the image

The backward pass stays in the Winograd domain, where the two gradients are again 36 GEMMs each:
dM = A dY A^T, dU = dM . V^T (then dg = G^T dU G) and dV = U^T . dM (then dx = B dV B^T, the
overlapping 6x6 tiles summed). So all three products of a training step do a quarter of the direct
convolution's multiplications. The transforms are memory-bound passes, in C where a C compiler is
at hand (:mod:`i2i_cpu.native`: one pass each), else in torch operations (several passes each: a
depthwise convolution, matmuls, permutes, ``fold``).

The 36 GEMMs run where they are fastest (:data:`GEMM`): MKL's batched sgemm (``torch.bmm``) on AVX2
CPUs, oneDNN's on AVX-512 CPUs, where MKL's sgemm keeps to AVX2 on AMD. A 256-channel 64x64
convolution, forward + backward, 2 threads (bench/conv_kernels.py): 61 ms against oneDNN's direct
107 ms on an AVX2 EPYC (torch transforms); on an AVX-512 EPYC 16 ms against 30 ms with the C
transforms, 23 ms with the torch ones (freed memory kept, as :mod:`i2i_cpu.allocator` keeps it: else
~9000 page faults a call). The rounding differs from the direct sum by ~1e-5 relative. The saved
activation is V (2.25x the input for F(4x4, 3x3)) instead of the input.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import native
from .winograd_transforms import MATRICES


class _Transforms(NamedTuple):
    m: int                       # output tile size: 4 for 3x3 kernels, 3 for 4x4 ones (6x6 input tiles)
    input_kernels: torch.Tensor  # (36, 1, 6, 6): kernel a*6+b computes (B^T d B)[a, b]
    weight: torch.Tensor         # (36, r*r): (G (x) G), vec(g) -> vec(G g G^T)
    b: torch.Tensor              # (6, 6): B, for dx = B dV B^T
    at: torch.Tensor             # (m, 6): A^T, for Y = A^T M A and dM = A dY A^T


@functools.lru_cache(maxsize=8)
def _transforms(r: int, dtype: torch.dtype, device: torch.device) -> _Transforms:
    """The transforms for an r x r kernel (3 or 4)."""
    bt, g, at = (torch.tensor(m, dtype=torch.float64) for m in MATRICES[r])
    as_ = functools.partial(torch.Tensor.to, dtype=dtype, device=device)
    return _Transforms(7 - r, as_(torch.kron(bt, bt).reshape(36, 1, 6, 6)), as_(torch.kron(g, g)),
                       as_(bt.t().contiguous()), as_(at))


def _pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    return F.pad(x, pads) if any(pads) else x  # F.pad copies even when there is nothing to add


def _sandwich(left: torch.Tensor, tiles: torch.Tensor) -> torch.Tensor:
    """``left @ T @ left.T`` for every tile T of ``tiles`` (r, r, ...): (l, l, ...). Two passes with the
    small matrix, ~1.5x faster here than one with their Kronecker product (36 x 36 for a 6x6 tile)."""
    r, rest = tiles.shape[0], tiles.shape[2:]
    rows = (left @ tiles.reshape(r, -1)).view(left.shape[0], r, -1)
    return torch.matmul(left, rows).view(left.shape[0], left.shape[0], *rest)


def _transform_weight(weight: torch.Tensor, t: _Transforms, lib: Any = None, *, transposed: bool = False) -> torch.Tensor:
    """U = G g G^T for every (output, input) channel pair: (36, k, c); (36, c, k) with ``transposed``
    (U^T, for dV = U^T dM). ``lib``: the C transforms, or None for torch operations (one GEMM with
    G (x) G, whose 9- or 16-long inner dimension leaves it memory-bound: ~2.5x the C loop's time)."""
    k, c, r = weight.shape[:3]
    if lib is not None:
        g = weight.detach().contiguous()
        u = weight.new_empty(36, c, k) if transposed else weight.new_empty(36, k, c)
        lib.winograd_weight(g.data_ptr(), u.data_ptr(), k, c, int(transposed), t.m, torch.get_num_threads())
        return u
    if transposed:
        weight, k, c = weight.transpose(0, 1).contiguous(), c, k  # contiguous for the GEMMs
    return (t.weight @ weight.reshape(k * c, r * r).t()).view(36, k, c)


def cpu_capability(capability: str | None = None) -> str:
    """``capability``, or torch's for this CPU (``torch.backends.cpu.get_cpu_capability()``), upper case:
    AVX2, AVX512, DEFAULT ... what the plugin's choices are made on."""
    return (torch.backends.cpu.get_cpu_capability() if capability is None else capability).upper()


def _onednn_linear(capability: str | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """oneDNN's float32 matrix product ``x @ w.T`` where the CPU has AVX-512, else None (``torch.bmm``).

    ``torch.bmm`` runs MKL's sgemm, which takes its AVX2 code on AMD CPUs, while oneDNN uses the widest
    vectors the CPU has: the 36 products of a 256-channel 64x64 layer took 3.4 ms in oneDNN against
    5.8 ms in MKL on a 2-core AVX-512 EPYC. On AVX2 CPUs MKL's product is the one measured (and kept).
    On Intel AVX-512 CPUs MKL runs AVX-512 too; oneDNN's product is used there as well (not measured).
    oneDNN's product is a private operator (``torch.ops.mkldnn``, there for torch.compile's CPU
    backend), so it is probed once, and ``torch.bmm`` is used where it is missing or differs."""
    if not cpu_capability(capability).startswith("AVX512"):
        return None
    try:
        op = torch.ops.mkldnn._linear_pointwise.default  # the overload itself: no resolution per call
        a = torch.arange(6.0).view(2, 3)
        if torch.backends.mkldnn.is_available() and torch.equal(op(a, a, None, "none", [], ""), a @ a.t()):
            return lambda x, w: op(x, w, None, "none", [], "")
    except (AttributeError, RuntimeError, TypeError):
        pass
    return None


#: oneDNN's matrix product for the 36 GEMMs, or None for ``torch.bmm`` (:func:`_onednn_linear`).
GEMM = _onednn_linear()


def _product_list(a: torch.Tensor, b: torch.Tensor, *, b_transposed: bool = False) -> list[torch.Tensor]:
    """The 36 channel GEMMs, ``a[i] @ b[i]`` (``a[i] @ b[i].T`` with ``b_transposed``), each a contiguous
    (rows, cols) tensor: what the C transforms read in place, without a copy into one tensor.

    ``a`` and ``b`` must be contiguous: oneDNN reads ``b[i].T`` (a plain transpose) at full speed, but a
    row-strided operand (V's view for n == 1) takes its reference path, 355 ms against 0.13 ms."""
    if GEMM is None or a.dtype != torch.float32:
        return list(torch.bmm(a, b.transpose(1, 2) if b_transposed else b).unbind())
    return list(_gemms(a, b, b_transposed))


def _products(a: torch.Tensor, b: torch.Tensor, *, b_transposed: bool = False) -> torch.Tensor:
    """:func:`_product_list` as one (36, rows, cols) tensor."""
    if GEMM is None or a.dtype != torch.float32:
        return torch.bmm(a, b.transpose(1, 2) if b_transposed else b)
    out = a.new_empty(36, a.shape[1], b.shape[1] if b_transposed else b.shape[2])
    for dst, product in zip(out.unbind(), _gemms(a, b, b_transposed)):
        dst.copy_(product)  # each product is copied into place while it is still in cache
    return out


def _gemms(a: torch.Tensor, b: torch.Tensor, b_transposed: bool) -> Iterator[torch.Tensor]:
    """oneDNN's 36 products, one at a time. ``GEMM(x, w)`` is ``x @ w.T``; unbind makes the 36 operand
    views in one call each (indexing in a loop cost ~2 us a view, 108 a layer)."""
    return (GEMM(x, w) for x, w in zip(a.unbind(), (b if b_transposed else b.transpose(1, 2)).unbind()))


class _Geometry(NamedTuple):
    batch: int
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    tiles: tuple[int, int]
    padding: tuple[int, int]


def _native(x: torch.Tensor) -> Any:
    """The C transforms (:func:`i2i_cpu.native.kernels`) for a float32 ``x``, else None (torch operations)."""
    return native.kernels() if x.dtype == torch.float32 else None


class _Winograd(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        n, c, h0, w0 = x.shape
        k, r = weight.shape[0], weight.shape[2]
        t = _transforms(r, x.dtype, x.device)
        m, (ph, pw) = t.m, padding
        h, w = h0 + 2 * ph - r + 1, w0 + 2 * pw - r + 1
        th, tw = -(-h // m), -(-w // m)
        lib, threads = _native(x), torch.get_num_threads()  # torch's count for this thread, for the C loops
        u = _transform_weight(weight, t, lib)
        if lib is not None:
            x = x.contiguous()
            v = x.new_empty(36, c, n * th * tw)
            lib.winograd_input(x.data_ptr(), v.data_ptr(), n, c, h0, w0, ph, pw, th, tw, m, threads)
            prods = _product_list(u, v)  # 36 x (k, n*tiles)
            y = x.new_empty(n, k, h, w)
            b = None if bias is None else bias.contiguous()
            lib.winograd_output(native.pointers(prods), None if b is None else b.data_ptr(), y.data_ptr(),
                                n, k, h, w, th, tw, m, threads)
        else:
            # ceil(h/m) tiles of m outputs read m*th + 6 - m input rows: zero-pad the bottom/right to that.
            x = _pad(x, (pw, m * tw + 6 - m - w0 - pw, ph, m * th + 6 - m - h0 - ph))
            v = F.conv2d(x.reshape(n * c, 1, m * th + 6 - m, m * tw + 6 - m), t.input_kernels, stride=m)
            # (n*c, 36, th, tw) -> V: (36, c, n*tiles); a view for n == 1, which oneDNN's GEMM cannot read.
            v = v.view(n, c, 36, th * tw).permute(2, 1, 0, 3).reshape(36, c, n * th * tw)
            v = v if GEMM is None else v.contiguous()
            prod = _products(u, v)  # (36, k, n*tiles)
            y = _sandwich(t.at, prod.view(6, 6, k, n, th, tw))  # Y = A^T M A: (m, m, k, n, th, tw)
            y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, m * th, m * tw)[:, :, :h, :w]
            if bias is not None:
                y = y + bias.view(1, -1, 1, 1)
        # V, not x, for the weight gradient. U is recomputed (~2 ms) rather than kept: it is as large
        # as V at batch 1, and a CycleGAN step holds ~100 of these layers' activations.
        ctx.save_for_backward(v if ctx.needs_input_grad[1] else None, weight)
        ctx.geometry = _Geometry(n, c, k, (h0, w0), (h, w), (th, tw), (ph, pw))
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @once_differentiable  # V was computed without a graph: a second derivative would be silently wrong
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        v, weight = ctx.saved_tensors
        n, c, k, (h0, w0), (h, w), (th, tw), (ph, pw) = ctx.geometry
        r = weight.shape[2]
        t = _transforms(r, grad.dtype, grad.device)
        m = t.m
        grad_b = grad.sum((0, 2, 3)) if ctx.has_bias and ctx.needs_input_grad[2] else None
        lib, threads = _native(grad), torch.get_num_threads()
        if lib is not None:
            grad = grad.contiguous()
            grad_m = grad.new_empty(36, k, n * th * tw)
            lib.winograd_grad_output(grad.data_ptr(), grad_m.data_ptr(), n, k, h, w, th, tw, m, threads)
        else:
            grad = _pad(grad, (0, m * tw - w, 0, m * th - h))
            tiles = grad.reshape(n, k, th, m, tw, m).permute(3, 5, 1, 0, 2, 4)
            grad_m = _sandwich(t.at.t(), tiles).reshape(36, k, n * th * tw)  # dM = A dY A^T per tile
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            u_t = _transform_weight(weight, t, lib, transposed=True)  # dV = U^T dM
            if lib is not None:
                grad_v = _product_list(u_t, grad_m)  # 36 x (c, n*tiles)
                grad_x = grad.new_empty(n, c, h0, w0)
                lib.winograd_grad_input(native.pointers(grad_v), grad_x.data_ptr(), n, c, h0, w0, ph, pw, th, tw, m,
                                        threads)
            else:
                grad_v = _products(u_t, grad_m)  # (36, c, n*tiles)
                pixels = _sandwich(t.b, grad_v.view(6, 6, c, n, th * tw))  # B dV B^T per tile
                pixels = pixels.permute(3, 2, 0, 1, 4).reshape(n, c * 36, th * tw)
                # Neighbouring 6x6 tiles overlap by 6 - m: fold sums their contributions.
                grad_x = F.fold(pixels, (m * th + 6 - m, m * tw + 6 - m), 6, stride=m)[:, :, ph:ph + h0, pw:pw + w0]
        if ctx.needs_input_grad[1]:
            if lib is not None:
                grad_u = _product_list(grad_m, v, b_transposed=True)  # dU = dM V^T: 36 x (k, c), kept alive
                grad_w = weight.new_empty(k, c, r, r)  # dg = G^T dU G
                lib.winograd_grad_weight(native.pointers(grad_u), grad_w.data_ptr(), k, c, m, threads)
            else:
                grad_u = _products(grad_m, v, b_transposed=True)  # dU = dM V^T: (36, k, c)
                grad_w = (t.weight.t() @ grad_u.view(36, k * c)).t().reshape(k, c, r, r)
        return grad_x, grad_w, grad_b, None


def winograd_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  padding: int | tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` for a 3x3 or 4x4 kernel, stride 1, no groups or
    dilation, zero padding, computed as Winograd F(4x4, 3x3) or F(3x3, 4x4) with a Winograd-domain
    backward.

    ``x``: (n, c, h, w) float32 or float64; ``weight``: (k, c, r, r) and ``bias`` (k,) of the same dtype.
    The output has the input's memory format, as ``F.conv2d``'s does (channels_last stays channels_last).
    Raises ValueError for another kernel size or dtype (the transforms' constants lose ~1-10% in
    float16/bfloat16), mixed dtypes, or a map smaller than the kernel."""
    if tuple(weight.shape[2:]) not in ((3, 3), (4, 4)):
        raise ValueError(f"winograd_conv needs a 3x3 or 4x4 kernel, got {tuple(weight.shape[2:])}")
    if x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"winograd_conv computes in float32 or float64, got {x.dtype}")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise ValueError(f"winograd_conv needs the input, weight and bias in one dtype, got {x.dtype}, {weight.dtype}"
                         f"{'' if bias is None else ', ' + str(bias.dtype)}")
    pads = (padding, padding) if isinstance(padding, int) else tuple(padding)
    if min(x.shape[2] + 2 * pads[0], x.shape[3] + 2 * pads[1]) < weight.shape[2]:
        raise ValueError(f"winograd_conv: the padded input {tuple(x.shape[2:])} + 2 x {pads} is smaller than the "
                         f"{weight.shape[2]}x{weight.shape[3]} kernel")
    y = _Winograd.apply(x, weight, bias, pads)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = y.contiguous(memory_format=torch.channels_last)  # the transforms write NCHW
    return y
