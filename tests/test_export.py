"""`i2i export` end to end on real checkpoints: metadata, checker, dynamic axes, fp16, static size, tolerance."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from i2i.artifact import GeneratorMeta
from i2i.errors import I2IError
from i2i.checkpoint import save_generator
from i2i.loader import load
from i2i.cli import cli
from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.runtime import read_meta

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACADES = SHARED / "datasets" / "facades"
ANIME = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
needs_facades = pytest.mark.skipif(not FACADES.is_dir(), reason="../shared/datasets/facades not present")

DIFF = re.compile(r"onnxruntime vs PyTorch \(batch (\d+), (\d+)x(\d+)\): max \|diff\| = (\S+) \(tolerance (\S+)\)")


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real pix2pix checkpoint: 2 steps of unet_128 (8 filters) on facades, with EMA weights."""
    if not FACADES.is_dir():
        pytest.skip("../shared/datasets/facades not present")
    out = tmp_path_factory.mktemp("runs")
    code, output = invoke(
        "train", "pix2pix", "--data", str(FACADES), "--max-steps", "2", "--name", "tiny", "--out-dir", str(out),
        "--set", "generator=unet_128", "--set", "generator_kwargs.ngf=8", "--set", "discriminator_kwargs.ndf=8",
        "--set", "load_size=136", "--set", "crop_size=128", "--set", "num_workers=0", "--set", "ema_decay=0.5",
        "--set", "sample_every=0",
    )
    assert code == 0, output
    return out / "tiny"


@pytest.fixture(scope="module")
def exported(run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`i2i export RUN -o facades.onnx` with every default: (file, command output)."""
    out = tmp_path_factory.mktemp("exported") / "facades.onnx"
    code, output = invoke("export", str(run), "-o", str(out))
    assert code == 0, output
    return out, output


@needs_facades
def test_export_checkpoint_end_to_end(run: Path, exported: tuple[Path, str], tmp_path: Path) -> None:
    out, output = exported
    assert "exported unet_128 (pix2pix G, EMA weights)" in output and "onnx.checker: ok" in output
    batch, h, w, diff, tol = DIFF.search(output).groups()
    # checked at another batch and size than the export's sample (batch 1, 128x128)
    assert (int(batch), int(h), int(w)) == (2, 256, 128)
    assert float(diff) <= float(tol) == pytest.approx(2e-3)

    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["output"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) and d for d in (dims[0], dims[2], dims[3]))  # dynamic N, H, W
    assert sorted(p.name for p in out.parent.iterdir()) == ["facades.onnx"]  # a single file
    meta = read_meta(out)
    assert (meta.name, meta.method, meta.net, meta.kwargs["ngf"]) == ("unet_128", "pix2pix", "G", 8)
    assert (meta.size_multiple, meta.in_channels, meta.value_range, meta.extra_inputs) == (128, 3, (-1.0, 1.0), [])
    assert meta.i2i_version and meta.info["onnx"]["opset"] == 18 and meta.info["onnx"]["exporter"] == "torchscript"

    # the EMA weights went into the file, not the raw ones (they differ after 2 steps at decay 0.5)
    ema = load(run, ema=True, device='cpu').module
    raw = load(run, ema=False, device='cpu').module
    x = torch.rand(1, 3, 128, 256) * 2 - 1
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["output"], {"image": x.numpy()})[0]
    with torch.no_grad():
        want_ema, want_raw = ema(x).numpy(), raw(x).numpy()
    assert np.abs(got - want_ema).max() < 1e-4 < np.abs(got - want_raw).max()

    code, output = invoke("export", str(run), "--no-ema", "--no-verify", "-o", str(tmp_path / "raw.onnx"))
    assert code == 0 and "EMA" not in output and "max |diff|" not in output
    got_raw = ort.InferenceSession(str(tmp_path / "raw.onnx"), providers=["CPUExecutionProvider"]).run(["output"], {"image": x.numpy()})[0]
    assert np.abs(got_raw - want_raw).max() < 1e-4


@needs_facades
def test_export_static_fp16_and_opset(run: Path, exported: tuple[Path, str], tmp_path: Path) -> None:
    code, output = invoke("export", str(run / "checkpoints" / "final"), "--static", "128x256", "--fp16",
                          "--opset", "17", "-o", str(tmp_path / "half.onnx"))
    assert code == 0, output
    assert "float16" in output and "dynamic batch, 128x256" in output
    batch, h, w, diff, tol = DIFF.search(output).groups()
    assert (h, w) == ("128", "256") and 0 < float(diff) <= float(tol)
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 128, 256]
    # inputs and outputs stay float32; the weights are float16 (half the size of a float32 export)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in model.graph.initializer if t.dims and np.prod(t.dims) > 64} == {onnx.TensorProto.FLOAT16}
    assert (tmp_path / "half.onnx").stat().st_size < 0.6 * exported[0].stat().st_size


@needs_facades
def test_export_fails_past_the_tolerance(run: Path, tmp_path: Path) -> None:
    # fp16 rounding differs from fp32 PyTorch by ~1e-3: a tolerance of 1e-7 must fail, in one line
    code, output = invoke("export", str(run), "--fp16", "--tolerance", "1e-7", "-o", str(tmp_path / "t.onnx"))
    assert code != 0
    assert re.search(r"Error: onnxruntime differs from PyTorch by \S+, past the tolerance 1e-07", output)
    assert "Traceback" not in output


def test_export_inpainting_generator_with_mask_input(tmp_path: Path) -> None:
    spec = generators().get("deepfill_v2")
    module, meta = build(spec).eval(), generator_meta(spec)
    meta.method = "inpaint"
    weights = save_generator(tmp_path / "deepfill" / "weights.safetensors", module, meta)
    code, output = invoke("export", str(weights), "-o", str(tmp_path / "deepfill.onnx"))
    assert code == 0, output
    batch, h, w, diff, tol = DIFF.search(output).groups()
    assert float(diff) <= float(tol)
    sess = ort.InferenceSession(str(tmp_path / "deepfill.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "mask"]
    assert read_meta(tmp_path / "deepfill.onnx").extra_inputs == [{"name": "mask", "channels": 1}]


@pytest.mark.skipif(not ANIME.is_file(), reason="../shared/weights/realesrgan not present")
def test_export_zoo_model_with_local_weights(tmp_path: Path) -> None:
    code, output = invoke("export", "--model", "realesr-animevideov3", "--weights", str(ANIME), "-o", str(tmp_path / "sr.onnx"))
    assert code == 0, output
    assert "exported realesr-animevideov3 [srvgg_compact]" in output
    assert float(DIFF.search(output).group(4)) <= 1e-3
    meta = read_meta(tmp_path / "sr.onnx")
    assert (meta.name, meta.scale, meta.info["zoo"]) == ("srvgg_compact", 4, "realesr-animevideov3")
    x = np.random.default_rng(0).random((1, 3, 24, 40), dtype=np.float32)
    out = ort.InferenceSession(str(tmp_path / "sr.onnx"), providers=["CPUExecutionProvider"]).run(["output"], {"image": x})[0]
    assert out.shape == (1, 3, 96, 160)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give either a CHECKPOINT"),
        (("nowhere",), "checkpoint nowhere does not exist"),
        (("--model", "no_such_model"), "no_such_model"),
    ],
)
def test_export_user_errors_are_one_line(args: tuple[str, ...], message: str) -> None:
    code, output = invoke("export", *args)
    assert code != 0 and message in output and "Traceback" not in output
    assert len(output.strip().splitlines()) == 1


@needs_facades
def test_export_rejects_bad_static_size_and_suffix(run: Path, tmp_path: Path) -> None:
    code, output = invoke("export", str(run), "--static", "100x100", "-o", str(tmp_path / "a.onnx"))
    assert code != 0 and "must be positive multiples of 128" in output
    code, output = invoke("export", str(run), "--static", "big", "-o", str(tmp_path / "a.onnx"))
    assert code != 0 and "--static takes HxW" in output
    code, output = invoke("export", str(run), "-o", str(tmp_path / "a.pt"))
    assert code != 0 and "should end in .onnx" in output


def test_the_rewritten_graphs_size_decides_external_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--optimize cpu stores ~4x the weights of each rewritten 3x3 convolution: a network under the
    protobuf limit can pass it once rewritten (a resnet_9blocks at ngf 232 did: EncodeError)."""
    import i2i_export.exporter as exporter
    from i2i.registry import create_generator

    module = create_generator("resnet_6blocks", ngf=32).eval()  # 128-channel blocks: rewritten
    meta = GeneratorMeta(name="resnet_6blocks", kwargs={"ngf": 32}, size_multiple=4)
    monkeypatch.setattr(exporter, "EXTERNAL_DATA_BYTES", 2 * exporter._param_bytes(module))
    plain = exporter.export_onnx(module, meta, tmp_path / "plain" / "g.onnx")
    assert [p.name for p in plain.parent.iterdir()] == ["g.onnx"]
    fast = exporter.export_onnx(module, meta, tmp_path / "fast" / "g.onnx", optimize="cpu")
    assert sorted(p.name for p in fast.parent.iterdir()) == ["g.onnx", "g.onnx.data"]
    x = np.random.default_rng(0).integers(0, 255, (20, 28, 3), np.uint8)
    assert np.abs(load(fast, device="cpu").translate(x).astype(int) - load(plain, device="cpu").translate(x)).max() <= 1


def test_an_export_that_fails_or_cannot_write_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import i2i_export.exporter as exporter

    spec = generators().get("srvgg_compact")
    module, meta = build(spec).eval(), generator_meta(spec)
    path = exporter.export_onnx(module, meta, tmp_path / "g.onnx")
    before = path.read_bytes()

    def broken_save(*args, **kwargs):
        raise ValueError("Failed to serialize proto")

    monkeypatch.setattr(onnx, "save_model", broken_save)
    with pytest.raises(ValueError):
        exporter.export_onnx(module, meta, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["g.onnx"]
    from i2i.registry import create_generator

    torch.save(create_generator("resnet_6blocks", ngf=8).state_dict(), weights := tmp_path / "w.pth")
    (tmp_path / "file").write_text("a file, not a folder")
    (tmp_path / "folder.onnx").mkdir()  # (the CLI's -o refuses a folder itself: click's usage error)
    with pytest.raises(I2IError, match="is a folder; name a file in it"):
        exporter.export_onnx(module, meta, tmp_path / "folder.onnx")
    for target in (tmp_path / "file" / "x.onnx", Path("/proc/x.onnx")):
        code, output = invoke("export", str(weights), "-o", str(target))
        assert code != 0 and "cannot write" in output and "choose another output path (-o)" in output, output
        assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


def test_a_failed_check_keeps_the_earlier_file(tmp_path: Path) -> None:
    """The new file replaces an earlier one only once it has passed the check against PyTorch; a
    rejected one waits beside it, in a hidden folder the message names."""
    from i2i.registry import create_generator

    torch.manual_seed(0)
    torch.save(create_generator("resnet_6blocks", ngf=8).state_dict(), weights := tmp_path / "w.pth")
    target = tmp_path / "out" / "g.onnx"
    code, output = invoke("export", str(weights), "-o", str(target))
    assert code == 0, output
    before = target.read_bytes()
    torch.manual_seed(1)
    torch.save(create_generator("resnet_6blocks", ngf=8).state_dict(), weights)  # other weights: other bytes
    code, output = invoke("export", str(weights), "-o", str(target), "--tolerance", "0")
    staged = target.parent / ".g.onnx.new" / "g.onnx"
    assert "the earlier file stays until the check below passes" in output.splitlines()[0], output
    assert code == 1 and f"{staged} is left for inspection (the earlier {target} is as it was)" in output, output
    assert target.read_bytes() == before and staged.is_file() and staged.read_bytes() != before
    code, output = invoke("export", str(weights), "-o", str(target))
    assert code == 0, output
    assert sorted(p.name for p in target.parent.iterdir()) == ["g.onnx"]  # the staging folder is gone
    assert target.read_bytes() != before


def test_large_models_get_one_external_data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # past the protobuf limit (~2 GB) the weights go to <name>.onnx.data; lower the threshold to see it
    import i2i_export.exporter as exporter
    
    monkeypatch.setattr(exporter, "EXTERNAL_DATA_BYTES", 1000)
    spec = generators().get("srvgg_compact")
    module, meta = build(spec).eval(), generator_meta(spec)
    path = exporter.export_onnx(module, meta, tmp_path / "big.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.onnx", "big.onnx.data"]
    assert (tmp_path / "big.onnx.data").stat().st_mode == path.stat().st_mode  # onnx writes it 0600
    assert path.stat().st_size < (tmp_path / "big.onnx.data").stat().st_size
    assert exporter.verify_onnx(path, module) < 1e-4
    assert load(path, device="cpu").translate(np.zeros((8, 8, 3), np.uint8)).shape == (32, 32, 3)


def test_export_turns_sigterm_into_an_exit_that_cleans_up() -> None:
    """`kill` during `i2i export` runs the exporter's finally blocks (its temporary folder beside the
    target is removed), as Ctrl-C does; the process's own handler is back afterwards."""
    import os
    import signal
    import time

    from i2i_export.plugin import _exit_on_sigterm

    cleaned = []

    @_exit_on_sigterm
    def command() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler's SystemExit interrupts it
        finally:
            cleaned.append(True)

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        command()
    assert stop.value.code == 143 and cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before
