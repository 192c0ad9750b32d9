"""The torch-free onnxruntime runtime (i2i_export.runtime): providers, pre/post-processing, tiling, batches, masks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from PIL import Image

from i2i.errors import I2IError
from i2i.registry import generators
from i2i.testing import build, generator_meta
from i2i_export.exporter import export_onnx
from i2i.loader import load
from i2i_export.runtime import CPU, CUDA, TENSORRT, OnnxGenerator, ProviderWarning, choose_providers, read_meta
from images import import_blocker, rgb

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACADES = SHARED / "datasets" / "facades"


def tiny(name: str):
    spec = generators().get(name)
    return build(spec).eval(), generator_meta(spec)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny exports: a U-Net (size multiple 128), a local-receptive-field SR net (x4), an inpainter (mask)."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name in ("unet_128", "srvgg_compact", "deepfill_v2"):
        module, meta = tiny(name)
        out[name] = export_onnx(module, meta, d / f"{name}.onnx")
    module, meta = tiny("unet_128")
    out["unet_static"] = export_onnx(module, meta, d / "unet_static.onnx", static_hw=(128, 128))
    return out



def test_runtime_works_with_torch_unimportable(models: dict[str, Path]) -> None:
    # A serving install has no torch: block every torch import, then load, translate and build the app.
    script = import_blocker("torch", "torchvision") + textwrap.dedent(f"""
        import sys
        import numpy as np
        try:
            import torch
            raise SystemExit("torch import was not blocked")
        except ImportError:
            pass
        import i2i
        from i2i_export.server import create_app
        g = i2i.load({str(models['unet_128'])!r}, device="auto")
        out = g(np.full((100, 70, 3), 128, np.uint8))
        app = create_app({str(models['unet_128'])!r}, device="cpu")
        assert "torch" not in sys.modules, "torch got imported"
        print("ok", out.shape, out.dtype, g.device)
    """)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["ok", "(100,", "70,", "3)", "uint8", "cpu"]


def test_loading_an_onnx_file_does_not_import_onnx(models: dict[str, Path], tmp_path: Path) -> None:
    """The runtime runs files as they are: opening one (plain or ``--optimize cpu``) needs onnxruntime only."""
    module, meta = tiny("unet_128")
    optimized = export_onnx(module, meta, tmp_path / "optimized.onnx", optimize="cpu")
    script = import_blocker("onnx", "onnxscript", "onnx_ir") + textwrap.dedent(f"""
        import sys
        try:
            import onnx
            raise SystemExit("onnx import was not blocked")
        except ImportError:
            pass
        import numpy as np
        import i2i
        for path in ({str(models['unet_128'])!r}, {str(optimized)!r}):
            g = i2i.load(path, device="cpu")
            out = g(np.full((100, 70, 3), 128, np.uint8))
        assert not any(m.split(".")[0] == "onnx" for m in sys.modules), "onnx got imported"
        print("ok", out.shape)
    """)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["ok", "(100,", "70,", "3)"]


def test_padding_to_size_multiple_matches_pytorch(models: dict[str, Path]) -> None:
    # 100x70 is not a multiple of 128: the runtime pads, runs, crops back - same pixels as the PyTorch path.
    from i2i.loader import Generator, _torch_generator

    module, meta = tiny("unet_128")
    gen = load(models["unet_128"], device="cpu")
    image = rgb(100, 70)
    got = gen.translate(image)
    want = _torch_generator(module, meta, "cpu", None, "tiny unet_128")(image)
    assert isinstance(gen, Generator)
    assert got.shape == (100, 70, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert got.std() > 0  # a real image came out, not a constant


def test_run_validates_its_input(models: dict[str, Path]) -> None:
    gen = load(models["unet_128"], device="cpu")
    with pytest.raises(I2IError, match="N x 3 x H x W"):
        gen.run(np.zeros((3, 128, 128), np.float32))
    with pytest.raises(I2IError, match="takes 1 inputs"):
        gen.run(np.zeros((1, 3, 128, 128), np.float32), np.zeros((1, 1, 128, 128), np.float32))
    with pytest.raises(I2IError, match="cannot take a 100x128 input"):  # not a multiple of 128: onnxruntime refuses
        gen.run(np.zeros((1, 3, 128, 100), np.float32))
    with pytest.raises(I2IError, match="uint8"):
        gen.translate(np.zeros((8, 8, 3), np.float32))


def test_tiling_equals_whole_image_when_overlap_covers_receptive_field(models: dict[str, Path]) -> None:
    gen = load(models["srvgg_compact"], device="cpu")  # 3 convs of 3x3 and a x4 pixel shuffle
    assert gen.meta.tiling == "local"
    calls = []
    real_run = gen.run
    gen.run = lambda *a: calls.append(a[0].shape) or real_run(*a)  # type: ignore[method-assign]
    image = rgb(50, 70, seed=1)
    whole = gen.translate(image)
    n_whole = len(calls)
    tiled = gen.translate(image, tile=24, overlap=8)
    assert whole.shape == (200, 280, 3)
    assert n_whole == 1 and len(calls) - n_whole == 9  # 3 x 3 tiles of at most 24 + 2 x 8 pixels
    assert max(s[-1] for s in calls[1:]) <= 24 + 16
    assert np.abs(tiled.astype(int) - whole.astype(int)).max() <= 1
    # without context the tile borders differ: the overlap is what makes tiling exact
    seams = gen.translate(image, tile=24, overlap=0)
    assert np.abs(seams.astype(int) - whole.astype(int)).max() > 1


def test_static_size_file_pads_small_and_tiles_large_images(models: dict[str, Path]) -> None:
    gen = load(models["unet_static"], device="cpu")
    assert gen.static_hw == (128, 128)
    assert gen.translate(rgb(90, 60)).shape == (90, 60, 3)
    assert gen.translate(rgb(300, 200)).shape == (300, 200, 3)  # larger than the file's size: tiles
    assert gen.translate(rgb(101, 67), tile=64).shape == (101, 67, 3)  # odd sizes, with or without --tile
    assert gen.translate(rgb(67, 301), tile=64).shape == (67, 301, 3)


def test_inpainting_model_takes_a_mask(models: dict[str, Path]) -> None:
    gen = load(models["deepfill_v2"], device="cpu")
    assert read_meta(models["deepfill_v2"]).extra_inputs == [{"name": "mask", "channels": 1}]
    image = rgb(37, 50, 5)
    mask = np.zeros((37, 50), np.uint8)
    mask[10:20, 10:30] = 255
    out = gen.translate(image, mask)  # padded to the size multiple 4; the mask pads with "known" (0)
    assert out.shape == image.shape
    assert np.array_equal(out[mask == 0], image[mask == 0])  # DeepFill keeps the known pixels
    assert not np.array_equal(out[mask > 0], image[mask > 0])  # and fills the hole
    with pytest.raises(I2IError, match="mask"):
        gen.translate(image)
    with pytest.raises(I2IError, match="mask is 10x10"):
        gen.translate(image, np.zeros((10, 10), np.uint8))


# --- execution providers --------------------------------------------------------------------------


def test_choose_providers() -> None:
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    assert choose_providers("auto", [TENSORRT, CUDA, CPU]) == [TENSORRT, CUDA, CPU]
    assert choose_providers("cuda", [CPU]) == [CUDA, CPU]  # asked explicitly: tried, then a one-line error
    assert choose_providers("cuda:1", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(I2IError, match="unknown device 'tpu'"):
        choose_providers("tpu", [CPU])


def test_choose_providers_tensorrt_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_TENSORRT", "0")
    assert choose_providers("auto", [TENSORRT, CUDA, CPU]) == [CUDA, CPU]


class GpuWheelWithoutGpu:
    """onnxruntime as onnxruntime-gpu behaves on a machine without CUDA libraries: CUDA is listed
    as available, the session silently runs on CPU. Sessions are real CPU sessions."""

    SessionOptions = ort.SessionOptions
    GraphOptimizationLevel = ort.GraphOptimizationLevel

    def __init__(self, active: list[str] | None = None, fail: bool = False) -> None:
        self.asked: list = []
        self.active = active
        self.fail = fail

    def get_available_providers(self) -> list[str]:
        return [CUDA, CPU]

    def InferenceSession(self, path: str, sess_options=None, providers=None):  # noqa: N802
        self.asked.append(list(providers))
        if self.fail and providers != [CPU]:
            raise RuntimeError("libcudnn.so.9: cannot open shared object file")
        sess = ort.InferenceSession(path, sess_options=sess_options, providers=[CPU])
        if self.active:
            sess.get_providers = lambda: list(self.active)  # type: ignore[method-assign]
        return sess


def test_gpu_wheel_without_cuda_falls_back_to_cpu_with_a_warning(models: dict[str, Path]) -> None:
    fake = GpuWheelWithoutGpu()
    with pytest.warns(ProviderWarning, match="^i2i: onnxruntime-gpu is installed but found no usable GPU, CUDA or cuDNN; running on CPU$"):
        gen = OnnxGenerator(models["unet_128"], device="auto", ort_module=fake)
    assert fake.asked == [[CUDA, CPU]]
    assert gen.providers == [CPU] and gen.device == "cpu"
    # asked for by name, a GPU that is not there is one line, not a fallback
    with pytest.raises(I2IError, match=r"^--device cuda: onnxruntime-gpu is installed but found no usable GPU.*use --device cpu"):
        OnnxGenerator(models["unet_128"], device="cuda", ort_module=GpuWheelWithoutGpu())


def test_provider_that_fails_to_start_retries_on_cpu(models: dict[str, Path]) -> None:
    fake = GpuWheelWithoutGpu(fail=True)
    with pytest.warns(ProviderWarning, match="could not start CUDAExecutionProvider .*libcudnn.*running on CPU") as record:
        gen = OnnxGenerator(models["unet_128"], device="auto", ort_module=fake)
    assert len([r for r in record if issubclass(r.category, ProviderWarning)]) == 1  # one clear warning, not two
    assert fake.asked == [[CUDA, CPU], [CPU]]
    assert gen.device == "cpu"
    with pytest.raises(I2IError, match="--device cuda:1: onnxruntime could not start CUDAExecutionProvider .*libcudnn"):
        OnnxGenerator(models["unet_128"], device="cuda:1", ort_module=GpuWheelWithoutGpu(fail=True))


def test_provider_in_use_is_reported_without_warning(models: dict[str, Path]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen = OnnxGenerator(models["unet_128"], device="auto", ort_module=GpuWheelWithoutGpu(active=[CUDA, CPU]))
        assert gen.device == "cuda" and gen.providers == [CUDA, CPU]
        cpu = OnnxGenerator(models["unet_128"], device="cpu")  # the real onnxruntime: CPU asked, CPU got
        assert cpu.providers == [CPU]


# --- files and the translate command --------------------------------------------------------------


def test_bad_files_are_one_line_errors(tmp_path: Path, models: dict[str, Path]) -> None:
    with pytest.raises(I2IError, match="does not exist"):
        OnnxGenerator(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(I2IError, match="not an ONNX model this onnxruntime can run"):
        OnnxGenerator(junk)
    import onnx

    bare = onnx.load(str(models["unet_128"]))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(I2IError, match="no i2i metadata; export it with `i2i export`"):
        OnnxGenerator(tmp_path / "bare.onnx")
    with pytest.raises(I2IError, match="no i2i metadata"):
        read_meta(tmp_path / "bare.onnx")


def _damaged(tmp_path: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """Files a user may hold: cut short to nothing or to a few bytes, i2i metadata cut short, a node
    whose operator no onnxruntime has; each with what its error says."""
    import onnx

    cases = {"empty": b"", "seven bytes": good.read_bytes()[:7]}
    files = {}
    for name, data in cases.items():
        (path := tmp_path / f"{name.replace(' ', '_')}.onnx").write_bytes(data)
        files[name] = (path, "not an ONNX model this onnxruntime can run (Load model from")
    model = onnx.load(str(good))
    next(p for p in model.metadata_props if p.key == "i2i").value = model.metadata_props[0].value[:40]
    onnx.save(model, str(path := tmp_path / "meta.onnx"))
    files["metadata"] = (path, "its i2i metadata is damaged (JSONDecodeError")
    data = good.read_bytes()
    at = data.index(b'"name": ') + 9  # a flipped byte inside the metadata's text: no longer UTF-8
    (path := tmp_path / "meta_bytes.onnx").write_bytes(data[:at] + b"\xff" + data[at + 1:])
    files["metadata bytes"] = (path, "its i2i metadata is damaged (not UTF-8 text")
    model = onnx.load(str(good))
    meta = json.loads(next(p for p in model.metadata_props if p.key == "i2i").value)
    next(p for p in model.metadata_props if p.key == "i2i").value = json.dumps({**meta, "scale": 0})
    onnx.save(model, str(path := tmp_path / "meta_scale.onnx"))
    files["metadata scale"] = (path, "its i2i metadata is damaged (ValueError: scale 0 is not a whole number")
    for name, field, says in (("range", {"value_range": "01"}, "value_range '01' is no pair of numbers"),
                              ("pairs", {"info": {"ab_pairs": {"aspect": "x"}}}, "is no pair layout")):
        model = onnx.load(str(good))
        next(p for p in model.metadata_props if p.key == "i2i").value = json.dumps({**meta, **field})
        onnx.save(model, str(path := tmp_path / f"meta_{name}.onnx"))
        files[f"metadata {name}"] = (path, says)
    model = onnx.load(str(good))
    model.graph.node[0].domain, model.graph.node[0].op_type = "x.y", "FooBar"
    model.opset_import.add(domain="x.y", version=1)
    onnx.save(model, str(path := tmp_path / "op.onnx"))
    files["unknown operator"] = (path, "x.y:FooBar(-1) is not a registered function/op); export it again")
    model = onnx.load(str(good))
    model.ir_version = 99  # from a newer exporter: onnxruntime's reason, not its C++ source locations
    onnx.save(model, str(path := tmp_path / "ir.onnx"))
    files["newer IR"] = (path, "(Load model from " + str(path) + " failed:Unsupported model IR version: 99, max supported")
    onnx.save_model(onnx.load(str(good)), str(path := tmp_path / "ext.onnx"), save_as_external_data=True,
                    location="ext.onnx.data", size_threshold=0)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # its weights cut short
    files["cut weights"] = (path, "can not be read in full")  # onnxruntime's reason, at the end of its message
    return files


def test_damaged_files_are_one_line_errors_in_the_api_and_the_cli(tmp_path: Path, models: dict[str, Path]) -> None:
    import i2i
    from i2i.cli import cli

    image = tmp_path / "in.png"
    Image.new("RGB", (40, 30)).save(image)
    for what, (path, says) in _damaged(tmp_path, models["unet_128"]).items():
        with pytest.raises(I2IError, match=re.escape(says)):
            i2i.load(path)
        for command in (["translate", str(image), "--model", str(path), "--out", str(tmp_path / "out")],
                        ["serve", str(path), "--port", "1"]):
            res = CliRunner().invoke(cli, command)
            assert res.exit_code == 1 and says in res.output, (what, res.output)
            assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, (what, res.output)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.skipif(not FACADES.is_dir(), reason="../shared/datasets/facades not present")
def test_translate_command_runs_onnx_models(tmp_path: Path, models: dict[str, Path]) -> None:
    from i2i.cli import cli
    from i2i.imageio import read_image

    inputs = sorted((FACADES / "test").glob("*.jpg"))[:2]
    res = CliRunner().invoke(cli, ["translate", *map(str, inputs), "--model", str(models["unet_128"]),
                                   "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "translated 2 image(s) with unet_128 on cpu (onnxruntime)" in res.output
    written = sorted((tmp_path / "out").iterdir())
    assert len(written) == 2
    src = read_image(inputs[0])
    assert read_image(written[0]).shape == src.shape


def test_a_model_that_gives_nan_is_an_error_not_a_black_image(tmp_path: Path, models: dict[str, Path]) -> None:
    """Damaged weights (here: NaN in one tensor, as flipped bytes give) must not write a black image
    with exit 0: i2i.load's generator, translate and serve say what is wrong; serve answers 500 (the
    served model's fault, not the client's)."""
    import httpx
    import onnx
    from onnx import numpy_helper

    import i2i
    from i2i.cli import cli
    from i2i.errors import ModelOutputError
    from i2i_export.server import Limits, create_app, serve_in_thread

    model = onnx.load(str(models["unet_128"]))
    tensor = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    tensor.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(tensor).shape, np.nan, np.float32), tensor.name))
    onnx.save(model, str(bad := tmp_path / "nan.onnx"))
    image = tmp_path / "in.png"
    Image.new("RGB", (40, 30), "white").save(image)
    says = "NaN or infinite value(s) of"
    with pytest.raises(ModelOutputError, match=re.escape(says)):
        i2i.load(bad)(np.zeros((30, 40, 3), np.uint8))
    res = CliRunner().invoke(cli, ["translate", str(image), "--model", str(bad), "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and says in res.output and "weights may be damaged" in res.output, res.output
    assert not list((tmp_path / "out").glob("*.png"))
    app = create_app(bad, device="cpu", limits=Limits(max_body_bytes=1 << 20, max_pixels=1 << 20, timeout_s=60))
    with serve_in_thread(app, port=0) as url, httpx.Client(base_url=url, timeout=60) as client:
        r = client.post("/v1/translate", content=image.read_bytes(), headers={"content-type": "image/png"})
    assert r.status_code == 500 and says in r.json()["error"], r.text
