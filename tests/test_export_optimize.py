"""``i2i export --optimize cpu``: onnxscript's optimizer and the CPU rewrites of the graph (Winograd,
narrow convolutions on 2x2 output blocks, transposed convolutions by phase) compute what the plain
graph computes, at any size; the file says it was optimised, and the runtime runs it as it is."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from i2i.artifact import GeneratorMeta
from i2i.testing import generator_names
from i2i_export.cpu_graph import optimize_for_cpu, rewrite_conv3x3, rewrite_conv_transpose, rewrite_narrow_conv
from i2i_export.exporter import export_onnx
from i2i_export.runtime import OnnxGenerator, read_meta

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
    optimized, count = optimize_for_cpu(onnx.load(str(resnet)))
    assert count == 15  # 12 residual convolutions, the last 7x7 32 -> 3 layer and the 2 upsamplers
    onnx.checker.check_model(optimized, full_check=True)
    model = optimized.SerializeToString()
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


class _ConvThenNorm(nn.Module):
    """A biased 3x3 convolution read by InstanceNorm alone, and another read by InstanceNorm and a sum."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(128, 128, 3, padding=1), nn.Conv2d(128, 128, 3, padding=1)
        self.norm = nn.InstanceNorm2d(128)
        for conv in (self.a, self.b):
            nn.init.uniform_(conv.bias, 2.0, 3.0)  # a bias far from zero: dropping it wrongly would show

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.norm(self.a(x)))
        return self.norm(y) + y


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore:ONNX export mode is set to TrainingMode.EVAL")
def test_a_bias_only_instance_norm_reads_is_left_out_and_others_kept(tmp_path: Path) -> None:
    """InstanceNormalization subtracts each channel's mean, so a per-channel bias before it cancels:
    the rewrite adds none there (a ResNet block), but keeps the bias of a convolution read elsewhere too."""
    torch.manual_seed(0)
    net = _ConvThenNorm().eval()
    path = _export(net, torch.randn(1, 128, 9, 9), tmp_path / "norm.onnx")
    count, model = _rewritten(path)
    assert count == 2
    biases = [i for n in onnx.load_from_string(model).graph.node if n.op_type == "Add" for i in n.input
              if i.startswith("winograd") and i.endswith("_b")]
    assert biases == ["winograd1_b"]  # self.b's; self.a's bias is left out
    x = np.random.default_rng(2).standard_normal((1, 128, 10, 7)).astype(np.float32)
    _assert_agrees(net, model, x, 1e-4)


def test_narrow_strided_and_grouped_convolutions_are_left_alone(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 128, 3, stride=2),
                        nn.Conv2d(128, 128, 3, groups=2), nn.Conv2d(128, 128, 1)).eval()
    path = _export(net, torch.randn(1, 64, 16, 16), tmp_path / "other.onnx")
    model = onnx.load(str(path))
    assert rewrite_conv3x3(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv"] * 4


@pytest.mark.parametrize("kernel,padding,bias,hw", [(7, 0, True, (20, 26)), (7, 3, True, (21, 17)), (5, 2, False, (9, 12)),
                                                   (6, 1, True, (15, 15))])
def test_narrow_large_kernel_convolution_on_2x2_output_blocks(tmp_path: Path, kernel: int, padding: int,
                                                               bias: bool, hw: tuple[int, int]) -> None:
    # Odd output sizes (21x17, 9x12) leave half a 2x2 block to crop; 6x6 is an even kernel.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 3, kernel, padding=padding, bias=bias)).eval()
    path = _export(net, torch.randn(1, 16, 24, 24), tmp_path / "narrow.onnx")
    count, model = _rewritten(path, rewrite_narrow_conv)
    assert count == 1
    convs = [n for n in onnx.load_from_string(model).graph.node if n.op_type == "Conv"]
    assert [list(next(a.ints for a in c.attribute if a.name == "strides")) for c in convs] == [[2, 2]]
    assert "DepthToSpace" in {n.op_type for n in onnx.load_from_string(model).graph.node}
    x = np.random.default_rng(3).standard_normal((2, 16) + hw).astype(np.float32)
    _assert_agrees(net, model, x, 1e-5)


def test_wide_or_small_kernel_convolutions_keep_their_form(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(16, 8, 7), nn.Conv2d(8, 3, 3), nn.Conv2d(3, 3, 7, stride=2)).eval()
    path = _export(net, torch.randn(1, 16, 40, 40), tmp_path / "other2.onnx")
    model = onnx.load(str(path))
    assert rewrite_narrow_conv(model) == 0


@pytest.mark.parametrize("kernel,stride,padding,extra,bias,hw", [
    (3, 2, 1, 1, True, (7, 10)),        # the ResNet generator's upsamplers
    (4, 2, 1, 0, False, (5, 8)),        # the U-Net's
    (5, 3, 1, 0, True, (4, 6)),         # stride 3: 9 phases, 2 or 1 taps each
    (2, 2, 0, 0, True, (3, 5)),         # one tap per phase
    ((3, 3), (2, 1), (1, 1), (1, 0), True, (6, 7)),  # strided along one axis only
])
def test_transposed_convolutions_by_output_phase(tmp_path: Path, kernel, stride, padding, extra, bias: bool,
                                                 hw: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.ConvTranspose2d(12, 5, kernel, stride, padding, output_padding=extra, bias=bias)).eval()
    path = _export(net, torch.randn(1, 12, 6, 6), tmp_path / "up.onnx")
    count, model = _rewritten(path, rewrite_conv_transpose)
    assert count == 1
    ops = [n.op_type for n in onnx.load_from_string(model).graph.node]
    assert "ConvTranspose" not in ops and "Col2Im" in ops
    x = np.random.default_rng(4).standard_normal((2, 12) + hw).astype(np.float32)
    _assert_agrees(net, model, x, 1e-5)


def test_transposed_convolutions_it_cannot_split_keep_their_form(tmp_path: Path) -> None:
    # grouped; dilated; 3x3 stride 2 without output_padding (2H - 1 outputs: phases of unequal size);
    # 1x1 stride 2 (phases without taps)
    net = nn.Sequential(nn.ConvTranspose2d(8, 8, 3, 2, 1, 1, groups=2), nn.ConvTranspose2d(8, 8, 3, 2, 2, 1, dilation=2),
                        nn.ConvTranspose2d(8, 8, 3, 2, 1), nn.ConvTranspose2d(8, 8, 1, 2, 0, 1)).eval()
    path = _export(net, torch.randn(1, 8, 5, 5), tmp_path / "other_up.onnx")
    model = onnx.load(str(path))
    assert rewrite_conv_transpose(model) == 0
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"] * 4


# --------------------------------------------------------------------------- export_onnx(optimize="cpu") and the CLI


def test_export_optimize_cpu_writes_a_rewritten_file_the_runtime_runs_as_it_is(tmp_path: Path) -> None:
    from i2i_cyclegan.networks import ResnetGenerator

    torch.manual_seed(0)
    net = ResnetGenerator(3, 3, ngf=32, n_blocks=6).eval()
    meta = GeneratorMeta(name="resnet_6blocks", size_multiple=4)
    plain = export_onnx(net, meta, tmp_path / "plain.onnx")
    fast = export_onnx(net, meta, tmp_path / "fast.onnx", optimize="cpu")
    assert read_meta(plain).info["onnx"]["optimize"] is None
    assert read_meta(fast).info["onnx"]["optimize"] == {"target": "cpu", "convs_rewritten": 15}
    ops = {n.op_type for n in onnx.load(str(fast)).graph.node}
    assert {"MatMul", "Col2Im", "DepthToSpace"} <= ops and "ConvTranspose" not in ops
    assert "MatMul" not in {n.op_type for n in onnx.load(str(plain)).graph.node}
    x = np.random.default_rng(8).uniform(-1, 1, (2, 3, 36, 44)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = OnnxGenerator(fast, device="cpu").run(x)
    assert np.abs(got - want).max() < 1e-4


def test_onnxscripts_optimizer_folds_the_unets_batchnorms(tmp_path: Path) -> None:
    """The U-Net's upsamplers are ConvTranspose + BatchNorm: onnxscript folds the BatchNorm away."""
    from i2i_pix2pix.networks import UnetGenerator

    torch.manual_seed(0)
    net = UnetGenerator(3, 3, num_downs=7, ngf=8).eval()
    path = export_onnx(net, GeneratorMeta(name="unet_128", size_multiple=128), tmp_path / "unet.onnx", optimize="cpu")
    assert "BatchNormalization" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    x = np.random.default_rng(9).uniform(-1, 1, (1, 3, 128, 256)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert np.abs(OnnxGenerator(path, device="cpu").run(x) - want).max() < 1e-4


def test_optimize_cpu_below_opset_18_is_a_one_line_error(tmp_path: Path) -> None:
    from i2i.errors import I2IError

    with pytest.raises(I2IError, match="opset 17: export with --opset 18 or later, or without --optimize"):
        export_onnx(nn.Conv2d(3, 3, 1), GeneratorMeta(name="x"), tmp_path / "x.onnx", optimize="cpu", opset=17)
    with pytest.raises(I2IError, match="--fp16 makes a float16 one for GPUs: choose one"):  # it would rewrite nothing
        export_onnx(nn.Conv2d(3, 3, 1), GeneratorMeta(name="x"), tmp_path / "x.onnx", optimize="cpu", fp16=True)
    assert not (tmp_path / "x.onnx").exists()


def test_unknown_optimize_target_is_a_one_line_error(tmp_path: Path) -> None:
    from i2i.errors import I2IError

    with pytest.raises(I2IError, match="unknown optimize target 'gpu'; choose one of cpu"):
        export_onnx(nn.Conv2d(3, 3, 1), GeneratorMeta(name="x"), tmp_path / "x.onnx", optimize="gpu")


def test_export_command_optimize_cpu(tmp_path: Path) -> None:
    """`i2i export x.pth --optimize cpu`: the rewritten graph is what gets verified against PyTorch."""
    from i2i.cli import cli
    from i2i.registry import create_generator

    torch.manual_seed(0)
    torch.save(create_generator("resnet_6blocks", ngf=32).state_dict(), tmp_path / "resnet.pth")
    out = tmp_path / "resnet.onnx"
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "resnet.pth"), "-o", str(out), "--optimize", "cpu"])
    assert result.exit_code == 0, result.output
    assert "optimized for onnxruntime's CPU: 15 convolution(s) rewritten" in result.output
    assert "onnxruntime vs PyTorch" in result.output
    assert read_meta(out).info["onnx"]["optimize"]["target"] == "cpu"


def test_export_command_optimize_cpu_below_opset_18(tmp_path: Path) -> None:
    from i2i.cli import cli
    from i2i.registry import create_generator

    torch.save(create_generator("resnet_6blocks", ngf=8).state_dict(), tmp_path / "resnet.pth")
    out = tmp_path / "resnet.onnx"
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "resnet.pth"), "-o", str(out), "--optimize", "cpu",
                                      "--opset", "17"])
    assert result.exit_code != 0
    assert "this model is opset 17: export with --opset 18 or later, or without --optimize" in result.output
    assert "Traceback" not in result.output and not out.exists()


@pytest.mark.parametrize("name", generator_names())
def test_every_generator_optimized_for_cpu_matches_pytorch(name: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance suite's ONNX check (two batch sizes, sizes that are not the exported one) on the
    ``--optimize cpu`` file of every registered generator, with the Winograd rewrite on every 3x3
    convolution (the tiny instances are narrower than its 128-channel threshold)."""
    from functools import partial

    from i2i.testing import check_generator_onnx
    from i2i_export import cpu_graph

    monkeypatch.setattr(cpu_graph, "optimize_for_cpu", partial(cpu_graph.optimize_for_cpu, min_channels=1))
    check_generator_onnx(name, tmp_path, exporter=lambda model, meta, path: export_onnx(model, meta, path, optimize="cpu"))
