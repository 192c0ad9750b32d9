"""The CPU rewrites of ONNX graphs (Winograd, space-to-depth, transposed convolutions by phase) compute what
the plain graph computes, at any size."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from i2i.artifact import GeneratorMeta
from i2i.download import cache_dir
from i2i_export import runtime
from i2i_export.exporter import export_onnx
from i2i_export.cpu_graph import optimize_for_cpu, rewrite_conv3x3, rewrite_conv_transpose, rewrite_narrow_conv

pytestmark = pytest.mark.usefixtures("one_thread")


def _session(model: str | bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _export(net: nn.Module, sample: torch.Tensor, path: Path) -> Path:
    """The legacy TorchScript exporter, as ``export_onnx`` uses it, without its deprecation notices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (sample,), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    return path


def _run(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _rewritten(path: Path, rewrite=rewrite_conv3x3) -> tuple[int, bytes]:
    model = onnx.load(str(path))
    count = rewrite(model)
    onnx.checker.check_model(model, full_check=True)
    return count, model.SerializeToString()


def _assert_agrees(net: nn.Module, model: bytes, x: np.ndarray, rtol: float) -> None:
    """The rewritten ``model`` gives ``net``'s output shape and values, within ``rtol`` of its largest."""
    want = net(torch.from_numpy(x)).detach().numpy()
    got = _run(_session(model), x)
    assert got.shape == want.shape
    assert np.abs(got - want).max() / np.abs(want).max() < rtol


@pytest.fixture(scope="module")
def resnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet_6blocks generator at ngf 32: 12 residual 3x3 convolutions of 128 channels."""
    from i2i_cyclegan.networks import ResnetGenerator

    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=32, n_blocks=6).eval()
    return export_onnx(net, GeneratorMeta(name="resnet_6blocks", size_multiple=4),
                       tmp_path_factory.mktemp("winograd") / "resnet.onnx")


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 36, 44), (1, 3, 20, 28)])
def test_resnet_generator_rewritten_agrees_with_the_plain_graph(resnet: Path, shape: tuple[int, ...]) -> None:
    # 20x28 and 36x44 give 5x7 and 9x11 maps: tiles that overhang the map and are sliced off.
    count, model = _rewritten(resnet, optimize_for_cpu)
    assert count == 13  # 12 residual convolutions + the last 7x7 32 -> 3 layer
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    plain, fast = _run(_session(str(resnet)), x), _run(_session(model), x)
    assert fast.shape == plain.shape == shape
    assert np.abs(fast - plain).max() < 1e-4


@pytest.mark.parametrize("padding,bias", [(0, True), (1, True), (2, False), (1, False)])
def test_zero_padded_convolutions_with_and_without_bias(tmp_path: Path, padding: int, bias: bool) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(128, 128, 3, padding=padding, bias=bias), nn.ReLU(),
                        nn.Conv2d(128, 160, 3, padding=1)).eval()
    path = _export(net, torch.randn(1, 128, 9, 9), tmp_path / "convs.onnx")
    count, model = _rewritten(path)
    assert count == 2
    x = np.random.default_rng(1).standard_normal((2, 128, 11, 6)).astype(np.float32)
    _assert_agrees(net, model, x, 1e-4)


def test_narrow_strided_and_grouped_convolutions_are_left_alone(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 128, 3, stride=2),
                        nn.Conv2d(128, 128, 3, groups=2), nn.Conv2d(128, 128, 1)).eval()
    path = _export(net, torch.randn(1, 64, 16, 16), tmp_path / "other.onnx")
    model = onnx.load(str(path))
    assert rewrite_conv3x3(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv"] * 4


@pytest.fixture
def rewrite_counts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many convolutions each Winograd rewrite the runtime runs replaces."""
    counts: list[int] = []
    real = rewrite_conv3x3

    def spy(model: onnx.ModelProto, *args: int) -> int:
        counts.append(real(model, *args))
        return counts[-1]

    monkeypatch.setattr("i2i_export.cpu_graph.rewrite_conv3x3", spy)
    return counts


def test_the_cpu_runtime_rewrites_in_memory_and_can_be_told_not_to(resnet: Path, rewrite_counts: list[int]) -> None:
    before = resnet.read_bytes()
    fast = runtime.create_session(resnet, device="cpu")
    plain = runtime.create_session(resnet, device="cpu", rewrite_for_cpu=False)
    assert rewrite_counts == [12]
    assert resnet.read_bytes() == before  # the file itself is untouched
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 24, 40)).astype(np.float32)
    assert np.abs(_run(fast, x) - _run(plain, x)).max() < 1e-4
    assert runtime.meta_from_session(fast).name == "resnet_6blocks"  # metadata survives the rewrite


@pytest.mark.parametrize("kernel,padding,bias,hw", [(7, 0, True, (20, 26)), (7, 3, True, (21, 17)), (5, 2, False, (9, 12)),
                                                   (6, 1, True, (15, 15))])
def test_narrow_large_kernel_convolution_through_space_to_depth(tmp_path: Path, kernel: int, padding: int,
                                                                 bias: bool, hw: tuple[int, int]) -> None:
    # Odd padded sizes (21 + 6, 17 + 6, 15 + 2) take the extra row/column; 6x6 is an even kernel.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 3, kernel, padding=padding, bias=bias)).eval()
    path = _export(net, torch.randn(1, 16, 24, 24), tmp_path / "narrow.onnx")
    count, model = _rewritten(path, rewrite_narrow_conv)
    assert count == 1
    assert {n.op_type for n in onnx.load_from_string(model).graph.node} >= {"SpaceToDepth", "DepthToSpace"}
    x = np.random.default_rng(3).standard_normal((2, 16) + hw).astype(np.float32)
    _assert_agrees(net, model, x, 1e-5)


def test_wide_or_small_kernel_convolutions_keep_their_form(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(16, 8, 7), nn.Conv2d(8, 3, 3), nn.Conv2d(3, 3, 7, stride=2)).eval()
    path = _export(net, torch.randn(1, 16, 40, 40), tmp_path / "other2.onnx")
    model = onnx.load(str(path))
    assert rewrite_narrow_conv(model) == 0


@pytest.mark.parametrize("kernel,stride,padding,output_padding,bias,hw", [
    (4, 2, 1, 0, True, (7, 9)),    # a U-Net's upsampler
    (4, 2, 0, 1, True, (6, 5)),    # output_padding past the last phase output: rows of bias only
    (6, 3, 2, 2, False, (5, 8)),   # stride 3, two taps per phase
    (2, 2, 0, 0, True, (4, 4)),    # one tap per phase: pure depth-to-space
    (4, 2, 3, 1, True, (9, 3)),    # padding wider than a phase
    (4, 4, 0, 3, True, (3, 3)),
])
def test_transposed_convolutions_through_their_phases(tmp_path: Path, kernel: int, stride: int, padding: int,
                                                      output_padding: int, bias: bool, hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(8, 5, kernel, stride, padding, output_padding, bias=bias)).eval()
    path = _export(net, torch.randn(1, 8, 5, 5), tmp_path / "convT.onnx")
    count, model = _rewritten(path, rewrite_conv_transpose)
    assert count == 1
    assert "ConvTranspose" not in {n.op_type for n in onnx.load_from_string(model).graph.node}
    x = np.random.default_rng(4).standard_normal((2, 8) + hw).astype(np.float32)
    _assert_agrees(net, model, x, 1e-5)


def test_transposed_convolutions_that_would_waste_taps_keep_their_form(tmp_path: Path) -> None:
    # 3x3 stride 2 (a ResNet generator's upsampler) has phases of 1, 2 and 4 taps: one Conv would
    # multiply 16 taps per pixel for 9.
    net = nn.Sequential(nn.ConvTranspose2d(8, 8, 3, 2, 1, output_padding=1), nn.ConvTranspose2d(8, 8, 4, 2, 1, groups=2),
                        nn.ConvTranspose2d(8, 8, 4, 2, 1, dilation=2), nn.ConvTranspose2d(8, 8, 4, 1, 1)).eval()
    path = _export(net, torch.randn(1, 8, 6, 6), tmp_path / "other_convT.onnx")
    model = onnx.load(str(path))
    assert rewrite_conv_transpose(model) == 0
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"] * 4


def test_the_cpu_fallback_after_a_failed_gpu_provider_is_rewritten_too(resnet: Path, rewrite_counts: list[int]) -> None:
    """A GPU provider that fails to start leaves a CPU session, which gets the CPU graph like any other."""

    class FailingGpu:  # onnxruntime-gpu without its CUDA libraries
        SessionOptions, GraphOptimizationLevel = ort.SessionOptions, ort.GraphOptimizationLevel

        def get_available_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

        def InferenceSession(self, model, sess_options=None, providers=None):  # noqa: N802
            if providers != ["CPUExecutionProvider"]:
                raise RuntimeError("libcudnn.so.9: cannot open shared object file")
            return ort.InferenceSession(model, sess_options=sess_options, providers=providers)

    with pytest.warns(runtime.ProviderWarning, match="running on CPU"):
        sess = runtime.create_session(resnet, device="auto", ort_module=FailingGpu())
    assert rewrite_counts == [12]
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_the_cpu_graph_is_cached_per_version_of_the_file(resnet: Path, tmp_path: Path, rewrite_counts: list[int]) -> None:
    model = shutil.copy(resnet, tmp_path / "model.onnx")
    x = np.random.default_rng(5).uniform(-1, 1, (1, 3, 20, 28)).astype(np.float32)
    first = _run(runtime.create_session(model, device="cpu"), x)
    again = _run(runtime.create_session(model, device="cpu"), x)
    assert rewrite_counts == [12]  # the second session read the cached graph
    assert np.array_equal(first, again)
    assert len(list(cache_dir("cpu-graphs").glob("*.onnx"))) == 1
    stat = os.stat(model)
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a re-exported model
    runtime.create_session(model, device="cpu")
    assert rewrite_counts == [12, 12]
    assert len(list(cache_dir("cpu-graphs").glob("*.onnx"))) == 1  # the stale entry is gone


def test_a_graph_with_nothing_to_rewrite_is_not_parsed_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _export(nn.Sequential(nn.Conv2d(3, 8, 3)).eval(), torch.randn(1, 3, 8, 8), tmp_path / "small.onnx")
    loads: list[str] = []
    real_load = onnx.load
    monkeypatch.setattr(onnx, "load", lambda f, *a, **k: loads.append(str(f)) or real_load(f, *a, **k))
    runtime.create_session(path, device="cpu")
    runtime.create_session(path, device="cpu")
    assert loads == [str(path)]
    assert [p.suffix for p in cache_dir("cpu-graphs").iterdir()] == [".plain"]


@pytest.mark.parametrize("no_cache", ["a file in the way", "no home directory"])
def test_a_cache_that_cannot_be_used_is_skipped(resnet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                rewrite_counts: list[int], no_home, no_cache: str) -> None:
    if no_cache == "a file in the way":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        monkeypatch.setenv("I2I_CACHE_DIR", str(blocker))
    else:
        no_home()
    x = np.random.default_rng(6).uniform(-1, 1, (1, 3, 24, 24)).astype(np.float32)
    fast = runtime.create_session(resnet, device="cpu")
    plain = runtime.create_session(resnet, device="cpu", rewrite_for_cpu=False)
    assert rewrite_counts == [12]
    assert np.abs(_run(fast, x) - _run(plain, x)).max() < 1e-4


def test_a_damaged_cache_entry_is_dropped_not_reported_as_a_bad_model(resnet: Path, tmp_path: Path) -> None:
    model = shutil.copy(resnet, tmp_path / "model.onnx")
    runtime.create_session(model, device="cpu")
    [entry] = cache_dir("cpu-graphs").glob("*.onnx")
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated by a full disk or a careless hand
    x = np.random.default_rng(7).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    sess = runtime.create_session(model, device="cpu")
    assert not entry.exists()
    plain = runtime.create_session(model, device="cpu", rewrite_for_cpu=False)
    assert np.abs(_run(sess, x) - _run(plain, x)).max() < 1e-4



def test_the_phase_interleave_folds_into_onnxruntimes_reorder(tmp_path: Path) -> None:
    """What makes the transposed-convolution rewrite pay: onnxruntime folds its NCHW -> NHWC Transpose
    into the blocked convolution's output reorder. An onnxruntime that stops doing so makes the
    rewrite a loss (a real transpose per upsampler, bench/onnx_latency.py), and this test says so."""
    net = nn.Sequential(nn.ConvTranspose2d(32, 16, 4, 2, 1)).eval()
    count, model = _rewritten(_export(net, torch.randn(1, 32, 8, 8), tmp_path / "up.onnx"), rewrite_conv_transpose)
    assert count == 1
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    nodes = onnx.load(opts.optimized_model_filepath).graph.node
    if not any(n.domain == "com.microsoft.nchwc" for n in nodes):
        pytest.skip("this CPU has no onnxruntime NCHWc kernels")
    attrs = [{a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in nodes]
    assert any(n.op_type == "ReorderOutput" and a.get("channels_last") == 1 for n, a in zip(nodes, attrs))
    assert not any(n.op_type == "Transpose" and list(a["perm"]) == [0, 2, 3, 1] for n, a in zip(nodes, attrs))
