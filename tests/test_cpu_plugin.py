"""The i2i_cpu plugin: each swapped layer computes what the plain torch layer computes, forward and
backward; the hook swaps only on request, only fp32 on the CPU, keeping every state_dict key; and
with the plugin blocked everything runs on the plain layers."""

from __future__ import annotations

import copy
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import i2i
import i2i_cpu.allocator as allocator
import i2i_cpu.layers as layers
import i2i_cpu.native as native
import i2i_cpu.winograd as winograd
from i2i import plugins
from i2i.accelerate import AccelerateWarning, cpu_kernels
from i2i.errors import I2IError
from i2i_cpu.layers import CpuConv2d, CpuConvTranspose2d, accelerate, restore

pytestmark = pytest.mark.usefixtures("one_thread")


def _cpu(layer: nn.Module) -> nn.Module:
    """``layer`` swapped in place as the plugin swaps it."""
    assert accelerate(layer) == 1
    return layer


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach(), want.detach()
    return float((got - want).abs().max() / want.abs().max())


def _grads(module: nn.Module, forward, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x = x.clone().requires_grad_()
    y = forward(x)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    return y.detach(), list(torch.autograd.grad(y, [x, *module.parameters()], g))


def _assert_matches_plain(layer: nn.Module, plain: type, x: torch.Tensor, rtol: float, atol: float) -> None:
    """Output, input gradient and parameter gradients of ``layer`` against ``plain.forward`` on it."""
    y, grads = _grads(layer, layer, x)
    y_ref, grads_ref = _grads(layer, lambda t: plain.forward(layer, t), x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=rtol, atol=atol)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=10 * rtol, atol=atol)


@pytest.fixture(autouse=True)
def winograd_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Winograd layer on whatever this CPU is (on AVX-512 it is off by default: winograd_pays)."""
    monkeypatch.setattr(layers, "WINOGRAD", True)


@pytest.fixture(autouse=True)
def avx2_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The maths tests take both kernels on small layers whatever this CPU is: the AVX2 thresholds (on
    AVX-512 CPUs only the innermost U-Net layers take the GEMM path)."""
    for name, value in layers.thresholds("AVX2")._asdict().items():
        monkeypatch.setattr(layers, name.upper(), value)


@pytest.fixture(autouse=True)
def allocator_calls(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """The hook's glibc setting recorded instead of made: it is process-wide (tested in a subprocess)."""
    calls: list[None] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(None) or True)
    return calls


@pytest.fixture(params=["mkl", "onednn"])
def gemm(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Winograd layer with either GEMM: torch.bmm (MKL) or oneDNN's product, where torch has it."""
    if request.param == "mkl":
        monkeypatch.setattr(winograd, "GEMM", None)
    else:
        onednn = winograd._onednn_linear("AVX512")
        if onednn is None:
            pytest.skip("this torch has no oneDNN matrix product")
        monkeypatch.setattr(winograd, "GEMM", onednn)
    return request.param


@pytest.fixture(params=["c", "torch"])
def transforms(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Winograd transforms in C (built here, or skipped without a compiler) or in torch operations."""
    if request.param == "torch":
        monkeypatch.setattr(winograd, "_native", lambda x: None)
    elif native.kernels() is None:
        pytest.skip("no C compiler here to build the C transforms")
    return request.param


@pytest.fixture
def winograd_calls(record_true) -> list[tuple]:
    """The (conv, input) of each layer that took the Winograd path."""
    return record_true(layers, "_use_winograd")


@pytest.fixture
def gemm_calls(record_true) -> list[tuple]:
    """The (columns, ...) of each layer that took the GEMM path."""
    return record_true(layers, "_use_gemm")


@pytest.fixture
def any_map_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Winograd maths on small maps: the speed threshold on the map size off."""
    monkeypatch.setattr(layers, "WINOGRAD_MIN_PIXELS", 0)


# --------------------------------------------------------------------------- Winograd F(4x4, 3x3)


@pytest.mark.parametrize("padding", [0, 1, 2, 3, (1, 0)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 11, 9), (2, 8, 8)])
@pytest.mark.parametrize("kernel", [3, 4])  # F(4x4, 3x3) and F(3x3, 4x4)
@pytest.mark.usefixtures("any_map_size", "gemm", "transforms")
def test_winograd_output_and_gradients_match_nn_conv2d(padding: int | tuple[int, int], bias: bool, kernel: int,
                                                       shape: tuple[int, int, int], winograd_calls: list[tuple]) -> None:
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(128, 128, kernel, padding=padding, bias=bias))
    n, h, w = shape
    # Winograd rounds differently from the direct sum: ~1e-5 relative, far from a wrong result
    # (a transposed or misaligned kernel gives errors of order 1).
    x = torch.randn(n, 128, h, w)
    y, grads = _grads(conv, conv, x)
    assert winograd_calls, "the Winograd path was not taken"
    y_ref, grads_ref = _grads(conv, lambda t: nn.Conv2d.forward(conv, t), x)
    assert y.shape == y_ref.shape and _relative_error(y, y_ref) < 1e-4
    for got, want in zip(grads, grads_ref):
        assert _relative_error(got, want) < 1e-4


def test_winograd_is_used_where_it_was_measured_faster(monkeypatch: pytest.MonkeyPatch) -> None:
    """AVX2: on (0.57x of oneDNN, MKL's GEMMs); AVX-512: on with oneDNN's GEMMs (0.71x), off without
    them (1.17x: MKL's GEMMs run AVX2 on AMD); I2I_CPU_WINOGRAD=0/1 overrides either way."""
    monkeypatch.delenv("I2I_CPU_WINOGRAD", raising=False)
    assert layers.winograd_pays("AVX2") is True
    assert layers.winograd_pays("DEFAULT") is False
    monkeypatch.setattr(winograd, "GEMM", None)
    assert layers.winograd_pays("AVX512") is False
    assert layers.winograd_pays("AVX512", setting="1") is True
    monkeypatch.setattr(winograd, "GEMM", lambda x, w: x @ w.t())
    assert layers.winograd_pays("AVX512") is True
    assert layers.winograd_pays("AVX2", setting="0") is False
    monkeypatch.setenv("I2I_CPU_WINOGRAD", "0")
    assert layers.winograd_pays("AVX512") is False


def test_winograd_off_takes_the_standard_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layers, "WINOGRAD", False)
    conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(1, 128, 32, 32)
    calls = []
    monkeypatch.setattr(layers, "winograd_conv", lambda *a: calls.append(a))
    torch.testing.assert_close(conv(x), nn.Conv2d.forward(conv, x))
    assert calls == []


def test_thresholds_follow_the_cpu() -> None:
    """On AVX-512 oneDNN's own kernels win more often: fewer layers take the plugin's kernels."""
    avx2, avx512 = layers.thresholds("AVX2"), layers.thresholds("AVX512")
    assert (avx2.small_map_columns, avx2.winograd_min_channels, avx2.winograd_min_pixels) == (64, 128, 32 * 32)
    assert (avx512.small_map_columns, avx512.winograd_min_channels, avx512.winograd_min_pixels) == (1, 192, 32 * 32)
    assert layers.thresholds("DEFAULT") == avx2


def test_the_gemm_is_onednn_on_avx512_only() -> None:
    """MKL's product stays on AVX2 CPUs (where it was measured); oneDNN's, where torch has it, on AVX-512."""
    assert winograd._onednn_linear("AVX2") is None and winograd._onednn_linear("DEFAULT") is None
    onednn = winograd._onednn_linear("AVX512")
    if onednn is not None:
        a, b = torch.randn(5, 7), torch.randn(3, 7)
        torch.testing.assert_close(onednn(a, b), a @ b.t())


def test_winograd_only_on_maps_of_32x32_and_more(winograd_calls: list[tuple]) -> None:
    conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
    conv(torch.randn(1, 128, 16, 16))
    assert winograd_calls == []
    conv(torch.randn(1, 128, 32, 32))
    assert len(winograd_calls) == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.usefixtures("any_map_size")
def test_narrow_strided_autocast_float64_and_traced_convolutions_take_the_standard_path(
        winograd_calls: list[tuple]) -> None:
    _cpu(nn.Conv2d(64, 64, 3, padding=1))(torch.randn(1, 64, 12, 12))  # below WINOGRAD_MIN_CHANNELS
    _cpu(nn.Conv2d(128, 128, 3, stride=2, padding=1))(torch.randn(1, 128, 20, 20))
    _cpu(nn.Conv2d(128, 128, 3, padding=1)).double()(torch.randn(1, 128, 12, 12, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _cpu(nn.Conv2d(128, 128, 3, padding=1))(torch.randn(1, 128, 12, 12))
    traced = torch.jit.trace(_cpu(nn.Conv2d(128, 128, 3)), torch.randn(1, 128, 12, 12), check_trace=False)
    assert winograd_calls == []
    assert "aten::_convolution" in str(traced.inlined_graph)


@pytest.mark.usefixtures("any_map_size", "gemm", "transforms")
def test_winograd_gradients_for_the_weights_alone_and_the_input_alone() -> None:
    """A first layer's input needs no gradient, a frozen layer's weights none: each is left out."""
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(1, 128, 12, 12)
    conv(x).sum().backward()
    want = torch.autograd.grad(nn.Conv2d.forward(conv, x).sum(), conv.weight)[0]
    assert _relative_error(conv.weight.grad, want) < 1e-4

    conv.requires_grad_(False)
    xi = x.clone().requires_grad_()
    conv(xi).sum().backward()
    want = torch.autograd.grad(nn.Conv2d.forward(conv, xi).sum(), xi)[0]
    assert _relative_error(xi.grad, want) < 1e-4


def test_winograd_conv_rejects_other_kernels_and_half_precision_and_takes_int_padding() -> None:
    from i2i_cpu.winograd import winograd_conv

    with pytest.raises(ValueError, match="3x3 or 4x4 kernel, got .5, 5."):
        winograd_conv(torch.randn(1, 4, 8, 8), torch.randn(4, 4, 5, 5))
    with pytest.raises(ValueError, match="float32 or float64, got torch.bfloat16"):
        winograd_conv(torch.randn(1, 4, 8, 8, dtype=torch.bfloat16), torch.randn(4, 4, 3, 3, dtype=torch.bfloat16))
    x, w = torch.randn(1, 4, 9, 7, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(winograd_conv(x, w, None, 1), torch.nn.functional.conv2d(x, w, padding=1))
    w4 = torch.randn(5, 4, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(winograd_conv(x, w4, None, 1), torch.nn.functional.conv2d(x, w4, padding=1))


@pytest.mark.usefixtures("any_map_size", "gemm", "transforms")
def test_winograd_takes_channels_last_input(winograd_calls: list[tuple]) -> None:
    """The engine's channels_last switch hands the layer NHWC-strided tensors; same results, and the
    same memory format out as the plain layer gives (the next layers keep running channels_last)."""
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(2, 128, 10, 10)
    xi = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    y = conv(xi)
    assert winograd_calls
    assert _relative_error(y, nn.Conv2d.forward(conv, x)) < 1e-4
    assert y.is_contiguous(memory_format=torch.channels_last) == nn.Conv2d.forward(conv, xi).is_contiguous(
        memory_format=torch.channels_last) == True  # noqa: E712
    g = torch.randn_like(y).contiguous(memory_format=torch.channels_last)
    (grad_x,) = torch.autograd.grad(y, xi, g)
    xr = x.clone().requires_grad_()
    (want,) = torch.autograd.grad(nn.Conv2d.forward(conv, xr), xr, g)
    assert _relative_error(grad_x, want) < 1e-4


@pytest.mark.usefixtures("any_map_size")
def test_winograd_second_derivatives_are_refused_not_wrong() -> None:
    """A gradient penalty through the layer needs double backward, which the Winograd backward does
    not provide: it must raise rather than return a wrong derivative (hence no penalised discriminators)."""
    conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
    x = torch.randn(1, 128, 8, 8, requires_grad=True)
    (grad_x,) = torch.autograd.grad(conv(x).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad_x.square().sum().backward()


@pytest.mark.usefixtures("any_map_size", "gemm")
def test_c_transforms_on_two_threads_match_nn_conv2d() -> None:
    """The C transforms split the channels over OpenMP threads (torch's): no two write one place."""
    if native.kernels() is None:
        pytest.skip("no C compiler here to build the C transforms")
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(131, 129, 3, padding=(1, 2)))
    x = torch.randn(3, 131, 13, 18)
    y_ref, grads_ref = _grads(conv, lambda t: nn.Conv2d.forward(conv, t), x)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y, grads = _grads(conv, conv, x)
    finally:
        torch.set_num_threads(before)
    assert _relative_error(y, y_ref) < 1e-4
    for got, want in zip(grads, grads_ref):
        assert _relative_error(got, want) < 1e-4


@pytest.mark.parametrize("kernel", [3, 4])
@pytest.mark.parametrize("channels", [(1, 1), (3, 3), (2, 7), (5, 3)])
@pytest.mark.usefixtures("gemm", "transforms")
def test_winograd_conv_on_few_channels(kernel: int, channels: tuple[int, int]) -> None:
    """Fewer than 16 channel pairs: the C weight transform's blocks of 16 still cover them (a block
    size of 0 divided by zero)."""
    from i2i_cpu.winograd import winograd_conv

    torch.manual_seed(0)
    k, c = channels
    x, w, b = (torch.randn(s, requires_grad=True) for s in ((2, c, 9, 7), (k, c, kernel, kernel), (k,)))
    y = winograd_conv(x, w, b, 1)
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, w, b), g)
    y_ref = torch.nn.functional.conv2d(x, w, b, padding=1)
    want = torch.autograd.grad(y_ref, (x, w, b), g)
    assert _relative_error(y, y_ref) < 1e-4
    for a, r in zip(got, want):
        assert _relative_error(a, r) < 1e-4


@pytest.mark.usefixtures("any_map_size")
def test_mixed_dtypes_and_maps_smaller_than_the_kernel_get_the_standard_errors() -> None:
    """What nn.Conv2d refuses the Winograd path refuses too, instead of reading a half-precision weight
    as float32 or returning an empty map."""
    from i2i_cpu.winograd import winograd_conv

    x = torch.randn(1, 4, 8, 8)
    with pytest.raises(ValueError, match="one dtype, got torch.float32, torch.float16"):
        winograd_conv(x, torch.randn(4, 4, 3, 3).half())
    with pytest.raises(ValueError, match="one dtype, got torch.float32, torch.float32, torch.float64"):
        winograd_conv(x, torch.randn(4, 4, 3, 3), torch.randn(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="smaller than the 3x3 kernel"):
        winograd_conv(torch.randn(1, 4, 2, 64), torch.randn(4, 4, 3, 3))
    half = _cpu(nn.Conv2d(128, 128, 3, padding=1)).half()
    with pytest.raises(RuntimeError) as plain_error:
        nn.Conv2d.forward(half, torch.randn(1, 128, 32, 32))
    with pytest.raises(RuntimeError, match=re.escape(str(plain_error.value))):
        half(torch.randn(1, 128, 32, 32))
    for conv in (_cpu(nn.Conv2d(128, 128, 3)), _cpu(nn.Conv2d(8, 3, 7)), _cpu(nn.Conv2d(8, 8, 4, 2))):
        small = torch.randn(1, conv.in_channels, 2, 64)
        with pytest.raises(RuntimeError, match="Kernel size can't be greater than actual input size"):
            conv(small)
    convt = _cpu(nn.ConvTranspose2d(8, 8, 3, padding=3))  # an output of -1 x -1 pixels
    with pytest.raises(RuntimeError) as plain_error:
        nn.ConvTranspose2d.forward(convt, torch.randn(1, 8, 1, 1))
    with pytest.raises(RuntimeError, match=re.escape(str(plain_error.value))):
        convt(torch.randn(1, 8, 1, 1))
    small_maps = (_cpu(nn.Conv2d(256, 256, 3, padding=1)), _cpu(nn.ConvTranspose2d(256, 256, 4, 2, 1)))
    for layer in small_maps:  # the one-GEMM paths: a float64 bias must not turn the output float64
        layer.bias.data = layer.bias.data.double()
        plain = type(layer).__mro__[1]
        with pytest.raises(RuntimeError) as plain_error:
            plain.forward(layer, torch.randn(1, 256, 1, 1))
        with pytest.raises(RuntimeError, match=re.escape(str(plain_error.value))):
            layer(torch.randn(1, 256, 1, 1))


@pytest.fixture
def fresh_build() -> Iterator[None]:
    """native.kernels() builds again in this test (its per-process memo cleared before and after)."""
    native.kernels.cache_clear()
    yield
    native.kernels.cache_clear()


def _need_compiler() -> None:
    """Skip where there is no C compiler ($CC as native.build reads it) to build the C transforms."""
    command = shlex.split(os.environ.get("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        pytest.skip("no C compiler here")


def _compiler_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    run = subprocess.run

    def recording(cmd, *args, **kwargs):
        if "-o" in cmd:
            calls.append(list(cmd))
        return run(cmd, *args, **kwargs)

    monkeypatch.setattr(native.subprocess, "run", recording)
    return calls


def test_c_transforms_are_built_once_into_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    _need_compiler()
    calls = _compiler_calls(monkeypatch)
    path = native.build()
    assert path.is_file() and path.parent == Path(os.environ["I2I_CACHE_DIR"]) / "kernels" and len(calls) == 1
    assert native.build() == path and len(calls) == 1, "a second build compiled again"
    assert [p.name for p in path.parent.iterdir()] == [path.name], "a temporary file was left behind"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o755 & ~umask, "others sharing the cache could not load it"
    lib = native.load(path)
    assert all(hasattr(lib, name) for name in native.SIGNATURES)


def test_the_library_is_built_per_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """-march=native: a VM with AVX-512 and one without may both say "AMD EPYC"; each builds its own."""
    if platform.system() == "Linux":
        assert "flags" in native._cpu_model() or "Features" in native._cpu_model()
    paths = set()
    for flags in ("fpu sse2 avx2", "fpu sse2 avx2 avx512f"):
        monkeypatch.setattr(native, "_cpu_model", lambda flags=flags: f"model name: AMD EPYC\nflags: {flags}")
        paths.add(native._library_path("/usr/bin/cc", "cc 12"))
    assert len(paths) == 2


@pytest.mark.usefixtures("fresh_build", "any_map_size")
def test_without_a_compiler_the_torch_transforms_are_used_with_one_warning(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Path) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.warns(native.NativeBuildWarning, match="Install a C compiler"):
        assert native.kernels() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not on every layer call
        conv = _cpu(nn.Conv2d(128, 128, 3, padding=1))
        x = torch.randn(1, 128, 9, 9)
        assert _relative_error(conv(x), nn.Conv2d.forward(conv, x)) < 1e-4


@pytest.mark.parametrize("damage", ["garbage", "cut short"])
def test_a_damaged_library_in_the_cache_is_built_again(damage: str) -> None:
    """A library cut short (a disk that filled up) would crash dlopen with SIGBUS, so it is checked
    first; run in a fresh process, which such a crash would kill."""
    _need_compiler()
    path = native.build()
    if damage == "garbage":
        path.write_bytes(b"\x7fELF cut short")
    else:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    code = ("import sys, warnings; warnings.simplefilter('error'); sys.path.insert(0, %r); "
            "from i2i_cpu import native; print(native.kernels() is not None)") % str(Path(native.__file__).parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "True", (out.returncode, out.stderr[-500:])
    assert native.load(path)


@pytest.mark.usefixtures("fresh_build")
def test_a_failed_build_says_why_and_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cc = tmp_path / "broken-cc"
    cc.write_text('#!/bin/sh\nif [ "$2" = --version ]; then echo "broken-cc 1.0"; exit 0; fi\n'
                  'echo "x.c:1:10: fatal error: omp.h: No such file or directory" >&2\n'
                  'echo "compilation terminated." >&2; exit 1\n')
    cc.chmod(0o755)
    monkeypatch.setenv("CC", f"{cc} --wrapped")  # a command, as CC="ccache gcc" is
    with pytest.warns(native.NativeBuildWarning, match="did not compile .x.c:1:10: fatal error: omp.h: No such file"):
        assert native.kernels() is None
    assert not list((Path(os.environ["I2I_CACHE_DIR"]) / "kernels").iterdir()), "a failed build left a file"


@pytest.mark.usefixtures("fresh_build")
def test_c_transforms_off_by_setting_or_without_a_cache_folder(monkeypatch: pytest.MonkeyPatch, no_home) -> None:
    monkeypatch.setenv("I2I_CPU_NATIVE", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.kernels() is None
    native.kernels.cache_clear()
    monkeypatch.delenv("I2I_CPU_NATIVE")
    no_home()
    with pytest.warns(native.NativeBuildWarning, match="I2I_CACHE_DIR"):
        assert native.kernels() is None


# --------------------------------------------------------------------------- few outputs, large kernels


@pytest.fixture
def space_to_depth_calls(record_true) -> list[tuple]:
    """The (conv, input) of each layer that took the 2x2-block path."""
    return record_true(layers, "_use_space_to_depth")


@pytest.mark.parametrize("out,kernel,padding,size", [
    (3, 7, 0, (1, 64, 22, 22)),   # a ResNet generator's last layer, after its reflection pad
    (3, 7, 3, (2, 16, 13, 10)),   # odd sizes, zero padding, a batch
    (1, (5, 6), (2, 1), (1, 8, 9, 12)),  # an even kernel side, a single output
    (4, 5, 0, (1, 4, 5, 5)),      # the map as large as the kernel: one output pixel
])
@pytest.mark.parametrize("bias", [True, False])
def test_narrow_large_kernel_conv_on_pixel_blocks_matches_nn_conv2d(out, kernel, padding, size, bias,
                                                                   space_to_depth_calls: list[tuple]) -> None:
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(size[1], out, kernel, padding=padding, bias=bias))
    _assert_matches_plain(conv, nn.Conv2d, torch.randn(size), rtol=1e-5, atol=1e-5)
    assert space_to_depth_calls, "the 2x2-block path was not taken"


def test_narrow_conv_second_derivatives_are_right() -> None:
    """Standard operators only: a gradient penalty through the layer gets the true second derivative."""
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(4, 3, 7, padding=3))
    x = torch.randn(1, 4, 10, 10)

    def penalty(forward) -> list[torch.Tensor]:
        xi = x.clone().requires_grad_()
        (g,) = torch.autograd.grad(forward(xi).square().sum(), xi, create_graph=True)
        return list(torch.autograd.grad(g.square().sum(), conv.parameters()))

    for got, want in zip(penalty(conv), penalty(lambda t: nn.Conv2d.forward(conv, t))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(8, 5, 7), lambda: nn.Conv2d(8, 3, 3),
                                  lambda: nn.Conv2d(8, 3, 7, stride=2)])
def test_wider_smaller_or_strided_convs_keep_onednn(make, space_to_depth_calls: list[tuple]) -> None:
    """Five outputs, a 3x3 kernel or a stride: measured no faster on blocks, or not what they compute."""
    conv = _cpu(make())
    x = torch.randn(1, 8, 16, 16)
    torch.testing.assert_close(conv(x), nn.Conv2d.forward(conv, x))
    assert not space_to_depth_calls


# --------------------------------------------------------------------------- small maps as one GEMM


@pytest.mark.parametrize("batch,side", [(1, 2), (1, 8), (1, 16), (3, 8), (2, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_small_map_conv_matches_nn_conv2d(batch: int, side: int, bias: bool, gemm_calls: list[tuple]) -> None:
    torch.manual_seed(0)
    conv = _cpu(nn.Conv2d(12, 10, kernel_size=4, stride=2, padding=1, bias=bias))
    _assert_matches_plain(conv, nn.Conv2d, torch.randn(batch, 12, side, side), rtol=1e-5, atol=1e-5)
    assert gemm_calls, "the GEMM path was not taken"


@pytest.mark.parametrize("batch,side", [(1, 1), (1, 2), (1, 4), (1, 8), (4, 1), (3, 2), (2, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_small_map_transposed_conv_matches_nn_conv_transpose2d(batch: int, side: int, bias: bool,
                                                               gemm_calls: list[tuple]) -> None:
    # (1, 1), (1, 2), (4, 1) and (3, 2) take the skinny orientation; the others the plain one.
    torch.manual_seed(0)
    conv = _cpu(nn.ConvTranspose2d(12, 10, kernel_size=4, stride=2, padding=1, bias=bias))
    _assert_matches_plain(conv, nn.ConvTranspose2d, torch.randn(batch, 12, side, side), rtol=1e-5, atol=1e-5)
    assert gemm_calls, "the GEMM path was not taken"


def test_large_maps_and_other_inputs_take_the_standard_path(gemm_calls: list[tuple]) -> None:
    conv = _cpu(nn.Conv2d(4, 4, 4, stride=2, padding=1))
    conv(torch.randn(1, 4, 64, 64))  # 1024 columns
    conv(torch.randn(1, 4, 4, 4))  # 4 columns: oneDNN is faster
    conv(torch.randn(4, 8, 8))  # unbatched input
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv(torch.randn(1, 4, 8, 8))
    copy.deepcopy(conv).double()(torch.randn(1, 4, 8, 8, dtype=torch.float64))
    _cpu(nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1))(torch.randn(4, 2, 2))  # unbatched input
    assert gemm_calls == []


def test_layers_neither_kernel_computes_are_not_swapped() -> None:
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, dilation=2), nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
                        nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, padding="same"),
                        nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1))
    assert accelerate(net) == 0
    assert [type(m) for m in net] == [nn.Conv2d] * 4 + [nn.ConvTranspose2d]


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
def test_tracing_keeps_the_standard_operators(gemm_calls: list[tuple]) -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1), nn.ConvTranspose2d(8, 4, 4, 2, 1))
    accelerate(net)
    traced = torch.jit.trace(net, torch.randn(1, 4, 4, 4), check_trace=False)
    assert gemm_calls == []
    graph = str(traced.inlined_graph)
    assert "aten::_convolution" in graph and "aten::im2col" not in graph and "aten::col2im" not in graph


# --------------------------------------------------------------------------- whole generators


def test_swapping_keeps_the_parameters_and_restore_undoes_it() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1), nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.Linear(2, 2))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    assert accelerate(net) == 2 and accelerate(net) == 0  # a layer is swapped once
    assert [type(m) for m in net] == [CpuConv2d, CpuConvTranspose2d, nn.Linear]
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items()) and net.state_dict().keys() == state.keys()
    assert restore(net) == 2
    assert [type(m) for m in net] == [nn.Conv2d, nn.ConvTranspose2d, nn.Linear]


@pytest.mark.usefixtures("any_map_size", "gemm", "transforms")
def test_resnet_generator_trains_like_the_plain_layers(winograd_calls: list[tuple]) -> None:
    """resnet_6blocks at ngf 32: its 12 residual convolutions (128 channels) on the Winograd path."""
    from i2i_cyclegan.networks import ResnetGenerator

    torch.manual_seed(0)
    plain = ResnetGenerator(3, 3, ngf=32, n_blocks=6)
    fast = copy.deepcopy(plain)
    assert accelerate(fast) == 16  # every Conv2d; the two upsamplers have output_padding
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    y_fast, y_plain = fast(x), plain(x)
    assert len(winograd_calls) == 12
    assert (y_fast - y_plain).abs().max() < 1e-4
    y_fast.square().mean().backward()
    y_plain.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        assert a.grad is not None and b.grad is not None
        # A bias before InstanceNorm has a zero gradient in theory (~1e-8 here): hence the floor.
        assert (a.grad - b.grad).abs().max() <= 1e-3 * b.grad.abs().max() + 1e-6, name


def test_unet_256_output_and_gradients_unchanged_by_the_gemm_path(gemm_calls: list[tuple]) -> None:
    """The full pix2pix generator (every inner level takes the GEMM path) against the plain layers."""
    from i2i_pix2pix.networks import UnetGenerator

    torch.manual_seed(0)
    plain = UnetGenerator(3, 3, num_downs=8, ngf=8, norm="batch", use_dropout=False)
    fast = copy.deepcopy(plain)
    assert accelerate(fast) == 16
    x = torch.randn(1, 3, 256, 256)
    y_fast, y_plain = fast(x), plain(x)
    assert gemm_calls
    torch.testing.assert_close(y_fast, y_plain, rtol=1e-4, atol=1e-5)
    y_fast.square().mean().backward()
    y_plain.square().mean().backward()
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-6, msg=name)


# --------------------------------------------------------------------------- the hook and the host


@pytest.mark.usefixtures("clean_plugin_env")
def test_the_hook_swaps_only_for_fp32_on_the_cpu(allocator_calls: list[None]) -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1))
    hook = plugins.manager().pm.hook.accelerate
    assert hook(module=net, device=torch.device("cuda"), precision="fp32") == [0]
    assert hook(module=net, device=torch.device("cpu"), precision="bf16") == [0]
    assert type(net[0]) is nn.Conv2d and allocator_calls == []
    assert hook(module=net, device=torch.device("cpu"), precision="fp32") == [1]
    assert type(net[0]) is CpuConv2d
    assert len(allocator_calls) == 1  # freed memory is kept once a layer runs on the CPU kernels


@pytest.mark.usefixtures("clean_plugin_env")
@pytest.mark.parametrize("winograd_here,channels,builds", [(True, 128, 1), (True, 64, 0), (False, 128, 0)])
def test_the_hook_builds_the_c_transforms_only_where_winograd_runs(monkeypatch: pytest.MonkeyPatch, winograd_here: bool,
                                                                   channels: int, builds: int) -> None:
    """Built at swap time (a missing compiler is said before training starts), and not at all for a
    network no layer of which takes the Winograd path on this CPU: no build, no warning about it."""
    monkeypatch.setattr(layers, "WINOGRAD", winograd_here)
    calls: list[None] = []
    monkeypatch.setattr(native, "kernels", lambda: calls.append(None))
    hook = plugins.manager().pm.hook.accelerate
    net = nn.Sequential(nn.Conv2d(3, channels, 7), nn.Conv2d(channels, channels, 3))
    assert hook(module=net, device=torch.device("cpu"), precision="fp32") == [2]
    assert len(calls) == builds


_PAGE_FAULTS_PER_BUFFER = """
import ctypes, resource, sys
sys.path.insert(0, {plugins!r})
from i2i_cpu import allocator

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
print(allocator.keep_freed_memory() if {keep} else "-")
for i in range(4):  # glibc's own malloc, as torch's CPU tensors use it, without torch's other allocations
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [libc.malloc({mib} << 20) for _ in range(4)]  # a call's buffers, made and dropped
    for b in buffers:
        ctypes.memset(b, 1, {mib} << 20)  # every page written
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    for b in buffers:
        libc.free(b)
"""


def _faults_per_buffer(keep: bool, mib: int = 24, **env: str) -> tuple[str, list[int]]:
    """(what keep_freed_memory returned, minor page faults of each of four rounds of 4 x ``mib`` MiB buffers)."""
    code = _PAGE_FAULTS_PER_BUFFER.format(plugins=str(Path(allocator.__file__).resolve().parents[1]), keep=keep,
                                          mib=mib)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], [int(v) for v in out[1:]]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
@pytest.mark.parametrize("mib", [24, 40])
def test_kept_memory_spares_a_freed_buffer_its_page_faults(mib: int) -> None:
    """By default glibc hands freed buffers back to the kernel once the heap's free top passes its
    trim threshold (twice the largest block it has mapped), or maps blocks past its mmap threshold
    afresh, so each round of buffers page-faults on every 4 KiB page again (24576 for 96 MiB), as the
    Winograd layer's did (~9000 faults a call, BENCHMARKS.md). Kept, the memory stays: no faults after
    the first round, also for blocks past the largest mmap threshold glibc takes (32 MiB: a 1024 ->
    512 4x4 convolution's weight gradient is exactly that). A user's own setting, as a MALLOC_*
    variable or a glibc tunable, is left alone."""
    said, kept = _faults_per_buffer(True, mib)
    _, default = _faults_per_buffer(False, mib)
    assert said == "True"
    pages = (4 * mib << 20) // 4096
    assert min(default[1:]) > pages // 2, default
    assert max(kept[1:]) < pages // 10, kept
    for setting in ({"MALLOC_TRIM_THRESHOLD_": str(1 << 30)}, {"MALLOC_MMAP_MAX_": "65536"},
                    {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1048576"}):
        said, _ = _faults_per_buffer(True, **setting)
        assert said == "False", setting


@pytest.mark.usefixtures("clean_plugin_env")
def test_cpu_kernels_off_the_cpu_or_outside_fp32_warn_and_change_nothing() -> None:
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1))
    with pytest.warns(AccelerateWarning, match="fp32 on the CPU"):
        assert cpu_kernels(net, "cuda") == 0
    with pytest.warns(AccelerateWarning, match="fp32 on the CPU"):
        assert cpu_kernels(net, "cpu", "bf16") == 0
    assert type(net[0]) is nn.Conv2d


@pytest.mark.usefixtures("clean_plugin_env")
def test_blocked_plugin_leaves_the_plain_layers_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "i2i_cpu")
    plugins.reset()
    assert "i2i_cpu" not in plugins.manager().info
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1))
    with pytest.warns(AccelerateWarning, match="I2I_BLOCK_PLUGINS"):
        assert cpu_kernels(net, "cpu") == 0
    assert type(net[0]) is nn.Conv2d


@pytest.mark.usefixtures("clean_plugin_env")
def test_a_third_party_accelerator_gets_the_layers_the_builtin_leaves() -> None:
    """Plugins are asked in registration order; each takes only layers of the exact torch classes, so a
    layer is never claimed twice, and a broken accelerator is a warning, not a failed run."""

    class Linears:  # another package's accelerator: it only knows nn.Linear
        @i2i.hookimpl
        def accelerate(self, module, device, precision):
            swapped = [m for m in module.modules() if type(m) is nn.Linear]
            for m in swapped:
                m.__class__ = FastLinear
            return len(swapped)

    class FastLinear(nn.Linear):
        pass

    class Broken:
        @i2i.hookimpl
        def accelerate(self, module, device, precision):
            raise RuntimeError("no kernels for this CPU")

    pm = plugins.manager().pm
    pm.register(Linears(), name="linears")
    pm.register(Broken(), name="broken")
    net = nn.Sequential(nn.Conv2d(4, 8, 4, 2, 1), nn.Flatten(), nn.Linear(8, 2))
    with pytest.warns(AccelerateWarning, match="'broken' skipped in accelerate: RuntimeError: no kernels"):
        assert cpu_kernels(net, "cpu") == 2
    assert [type(m) for m in net] == [CpuConv2d, nn.Flatten, FastLinear]


# --------------------------------------------------------------------------- the doors: engine, loader, CLI


@pytest.mark.usefixtures("clean_plugin_env")
def test_the_engine_swaps_the_networks_and_checkpoints_keep_their_keys(tmp_path: Path) -> None:
    """Generators and discriminators are swapped; the discriminators stay plain when a gradient penalty
    differentiates them twice (the Winograd layers give first derivatives only)."""
    from tiny_pix2pix import FACADES, TINY, copy_facades, tiny_config

    from i2i.engine import Trainer

    if not FACADES.is_dir():
        pytest.skip("../shared/datasets/facades not present")
    data = copy_facades(tmp_path / "facades", 1)

    def trainer(name: str, *extra: str) -> Trainer:
        cfg = tiny_config([*TINY, "threads=1", "max_steps=1", "generator_kwargs.use_dropout=false", *extra],
                          data=data, out_dir=tmp_path / "runs", name=name, device="cpu")
        return Trainer("pix2pix", cfg)

    fast, plain, penalised = trainer("fast", "cpu_kernels=true"), trainer("plain"), trainer("r1", "cpu_kernels=true",
                                                                                             "r1_gamma=1")
    for net in ("G", "D"):
        assert CpuConv2d in {type(m) for m in fast.raw[net].modules()}, net
        assert not {CpuConv2d, CpuConvTranspose2d} & {type(m) for m in plain.raw[net].modules()}, net
    assert CpuConv2d in {type(m) for m in penalised.raw["G"].modules()}
    assert {type(m) for m in penalised.raw["D"].modules()} == {type(m) for m in plain.raw["D"].modules()}
    batch = next(iter(plain.loader))
    for t in (fast, plain, penalised):
        t.train_step(t.method.to_device(batch))
    for net in ("G", "D"):
        a, b = fast.raw[net].state_dict(), plain.raw[net].state_dict()
        assert a.keys() == b.keys()  # what the checkpoint stores
        assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-3


@pytest.fixture
def resnet_pth(tmp_path: Path) -> Path:
    """A published-style .pth of resnet_6blocks at ngf 32 (the reference's layout)."""
    from i2i.registry import create_generator

    torch.manual_seed(0)
    path = tmp_path / "resnet.pth"
    torch.save(create_generator("resnet_6blocks", ngf=32).state_dict(), path)
    return path


@pytest.mark.usefixtures("clean_plugin_env")
def test_load_with_cpu_kernels_gives_the_plain_pixels(resnet_pth: Path) -> None:
    import numpy as np

    plain = i2i.load(resnet_pth, device="cpu")
    fast = i2i.load(resnet_pth, device="cpu", cpu_kernels=True)
    assert CpuConv2d not in {type(m) for m in plain.module.modules()}
    assert CpuConv2d in {type(m) for m in fast.module.modules()}
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32)  # 32x32 residual maps
    assert np.abs(fast.run(x) - plain.run(x)).max() < 1e-4


def test_cpu_kernels_is_refused_for_onnx_files(tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="i2i export --optimize cpu"):
        i2i.load(tmp_path / "model.onnx", cpu_kernels=True)


@pytest.mark.usefixtures("clean_plugin_env")
def test_translate_cpu_kernels_flag(resnet_pth: Path, tmp_path: Path) -> None:
    import numpy as np
    from click.testing import CliRunner
    from PIL import Image

    from i2i.cli import cli

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(tmp_path / "in.png")
    outs = {}
    for flag in ([], ["--cpu-kernels"]):
        out = tmp_path / f"out{len(flag)}"
        with warnings.catch_warnings():
            warnings.simplefilter("error", AccelerateWarning)
            result = CliRunner().invoke(cli, ["translate", str(tmp_path / "in.png"), "--model", str(resnet_pth),
                                              "--device", "cpu", "--out", str(out), *flag])
        assert result.exit_code == 0, result.output
        outs[len(flag)] = np.asarray(Image.open(out / "in.png")).astype(int)
    assert np.abs(outs[0] - outs[1]).max() <= 1
