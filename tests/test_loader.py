"""``i2i.load``: the one door that opens a generator, and the faults it ends for every entry point."""

from __future__ import annotations

import re

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import i2i
from i2i.cli import cli
from i2i.errors import I2IError
from i2i.loader import Generator, _torch_generator, build_meta, plan_tile
from i2i.registry import generators
from i2i.testing import build, generator_meta
from images import rgb

SHARED = Path(__file__).resolve().parents[2] / "shared"
VINTAGIFY = SHARED / "weights" / "vintagify_cyclegan" / "G_A2B_epoch33.pth"
COMPACT = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
HORSE = SHARED / "datasets" / "horses" / "n02381460_1019.jpg"
GENERATORS = [s.name for s in generators().list()]


def tiny(name: str) -> Generator:
    spec = generators().get(name)
    torch.manual_seed(0)
    return _torch_generator(build(spec).eval(), generator_meta(spec), "cpu", None, f"tiny {name}")



def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def one_line_error(code: int, output: str, *needles: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in output, output
    assert lines and lines[-1].startswith("Error:"), output
    for needle in needles:
        assert needle in lines[-1], output


@pytest.fixture(scope="module")
def resnet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CycleGAN-style generator (InstanceNorm) saved as an i2i weights file."""
    from i2i.checkpoint import save_generator

    g = tiny("resnet_9blocks")
    path = tmp_path_factory.mktemp("run") / "weights.safetensors"
    meta = build_meta("resnet_9blocks", {"ngf": 8}, method="cyclegan", module=g.module)
    return save_generator(path, g.module, meta)


# -- every family, any size ------------------------------------------------------------------------


@pytest.mark.parametrize("name", GENERATORS)
def test_every_generator_takes_tiny_and_odd_sizes(name: str) -> None:
    g = tiny(name)
    mask = None
    for h, w in ((1, 1), (3, 5), (17, 9)):
        if g.meta.extra_inputs:
            mask = np.zeros((h, w), np.uint8)
            mask[: max(1, h // 2)] = 255
        out = g(rgb(h, w), mask)
        assert out.shape == (h * g.meta.scale, w * g.meta.scale, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("name", GENERATORS)
def test_tiling_is_declared_right(name: str) -> None:
    # "local" must mean tiles match the whole image; "whole_image" must refuse tiles in one line
    g = tiny(name)
    spec = generators().get(name)
    side = max(64, 2 * (spec.test_size_multiple or spec.size_multiple))
    image = rgb(side, side, seed=3)
    mask = None
    if g.meta.extra_inputs:
        mask = np.zeros((side, side), np.uint8)
        mask[side // 4 : side // 2, side // 4 : side // 2] = 255
    if g.meta.tiling == "whole_image":
        assert g.meta.tiling_reason, name  # said in the network's own terms (norm layer, FFT, spandrel's tiling)
        with pytest.raises(I2IError, match=re.escape(g.meta.tiling_reason)):
            g(image, mask, tile=side // 2)
        return
    assert g.meta.tiling == "local"
    if spec.size_multiple > 1 or name == "deepfill_v2":
        return  # a U-Net's receptive field spans the image: tiles are allowed, not exact
    whole = g(image, mask)
    tiled = g(image, mask, tile=side // 2, overlap=side // 2)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_instance_norm_generators_refuse_tiles_everywhere(resnet_run: Path, tmp_path: Path) -> None:
    g = i2i.load(resnet_run, device="cpu")
    assert g.meta.tiling == "whole_image" and g.meta.tiling_reason == "normalises with whole-image statistics (InstanceNorm2d)"
    with pytest.raises(I2IError, match=r"whole-image statistics \(InstanceNorm2d\)"):
        g(rgb(64, 48), tile=32)
    Image.fromarray(rgb(64, 48)).save(tmp_path / "a.png")
    code, out = invoke("translate", str(tmp_path / "a.png"), "--checkpoint", str(resnet_run), "--tile", "32",
                       "--out", str(tmp_path / "out"))
    one_line_error(code, out, "whole-image statistics", "--size")
    assert not (tmp_path / "out").exists()
    from i2i_export.exporter import export_onnx

    onnx_path = export_onnx(g.module, g.meta, tmp_path / "r.onnx")
    assert i2i.load(onnx_path, device="cpu").meta.tiling == "whole_image"  # carried by the export, with its reason
    assert i2i.load(onnx_path, device="cpu").meta.tiling_reason == g.meta.tiling_reason
    code, out = invoke("translate", str(tmp_path / "a.png"), "--model", str(onnx_path), "--tile", "32",
                       "--out", str(tmp_path / "out"))
    one_line_error(code, out, "whole-image statistics")


@pytest.mark.skipif(not VINTAGIFY.is_file() or not HORSE.is_file(), reason="shared weights/data not present")
def test_the_issues_tiled_cyclegan_case_is_refused(tmp_path: Path) -> None:
    code, out = invoke("translate", str(HORSE), "--model", "cyclegan_resnet_9blocks", "--weights", str(VINTAGIFY),
                       "--tile", "128", "--overlap", "32", "--out", str(tmp_path / "o"))
    one_line_error(code, out, "resnet_9blocks normalises with whole-image statistics")


# -- devices ---------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_that_is_not_there_is_one_line(resnet_run: Path, tmp_path: Path) -> None:
    with pytest.raises(I2IError, match="CUDA is not available"):
        i2i.load(resnet_run, device="cuda")
    with pytest.raises(I2IError, match="unknown device 'gpu'"):
        i2i.load(resnet_run, device="gpu")
    Image.fromarray(rgb(16, 16)).save(tmp_path / "a.png")
    for device in ("cuda", "cuda:1"):
        code, out = invoke("translate", str(tmp_path / "a.png"), "--checkpoint", str(resnet_run), "--device", device)
        one_line_error(code, out, "CUDA is not available")
    from i2i_export.exporter import export_onnx

    g = i2i.load(resnet_run, device="cpu")
    onnx_path = export_onnx(g.module, g.meta, tmp_path / "r.onnx")
    for device in ("cuda", "cuda:1", "tensorrt"):  # this onnxruntime (CPU) has no GPU: one line, nothing else
        code, out = invoke("translate", str(tmp_path / "a.png"), "--model", str(onnx_path), "--device", device)
        one_line_error(code, out, f"--device {device}: this onnxruntime has no")
        assert len(out.strip().splitlines()) == 1, out


# -- grey in, grey out; alpha through --------------------------------------------------------------


@pytest.mark.parametrize("name", ["srvgg_compact", "resnet_9blocks", "unet_128"])
def test_grey_in_is_grey_out_and_alpha_passes_through(name: str) -> None:
    g = tiny(name)
    grey = rgb(20, 30)[:, :, :1]
    out = g(grey)
    s = g.meta.scale
    assert out.shape == (20 * s, 30 * s, 1)
    assert g(grey[:, :, 0]).shape == (20 * s, 30 * s, 1)
    rgba = np.concatenate([rgb(20, 30), np.full((20, 30, 1), 7, np.uint8)], axis=2)
    rgba[0, 0, 3] = 255
    out = g(rgba)
    assert out.shape == (20 * s, 30 * s, 4)
    assert np.array_equal(out[:, :, :3], g(rgba[:, :, :3]))  # colour as without alpha
    if s == 1:
        assert np.array_equal(out[:, :, 3], rgba[:, :, 3])
    pil = g(Image.fromarray(rgba, "RGBA"))
    assert isinstance(pil, Image.Image) and pil.mode == "RGBA" and np.array_equal(np.asarray(pil), out)


@pytest.mark.skipif(not COMPACT.is_file() or not HORSE.is_file(), reason="shared weights/data not present")
def test_the_issues_grey_photo_comes_back_grey(tmp_path: Path) -> None:
    Image.open(HORSE).convert("L").resize((120, 100)).save(tmp_path / "grey.png")
    code, out = invoke("translate", str(tmp_path / "grey.png"), "--model", "realesr-animevideov3",
                       "--weights", str(COMPACT), "--out", str(tmp_path / "o"))
    assert code == 0, out
    with Image.open(tmp_path / "o" / "grey.png") as im:
        assert im.mode == "L" and im.size == (480, 400)


# -- fixed-size ONNX files, tiny images ------------------------------------------------------------


def test_fixed_size_onnx_translates_odd_sizes_through_the_cli(tmp_path: Path) -> None:
    from i2i_export.exporter import export_onnx

    spec = generators().get("srvgg_compact")
    path = export_onnx(build(spec).eval(), generator_meta(spec), tmp_path / "m.onnx", static_hw=(64, 64))
    Image.fromarray(rgb(67, 101)).save(tmp_path / "odd.png")
    for extra in ([], ["--tile", "64"]):
        code, out = invoke("translate", str(tmp_path / "odd.png"), "--model", str(path), "--out", str(tmp_path / "o"), *extra)
        assert code == 0, out
        with Image.open(tmp_path / "o" / "odd.png") as im:
            assert im.size == (404, 268)


# -- limits, folders -------------------------------------------------------------------------------


def test_past_the_pixel_limit_the_cli_tiles_or_refuses(tmp_path: Path, resnet_run: Path) -> None:
    meta = tiny("srvgg_compact").meta
    with pytest.warns(UserWarning, match="past the limit of 1000 .*64-pixel tiles"):
        assert plan_tile(meta, 100, 100, 0, max_pixels=1000) == 64  # a tile within the limit
    with pytest.warns(UserWarning, match="512-pixel tiles"):
        assert plan_tile(meta, 5000, 5000, 0, max_pixels=4096 * 4096) == 512
    assert plan_tile(meta, 100, 100, 0, max_pixels=None, free_bytes=10**12) == 0
    with pytest.warns(UserWarning, match="more than the"):  # memory, not pixels
        assert plan_tile(meta, 8000, 8000, 0, max_pixels=None, free_bytes=2**30) == 512
    assert plan_tile(meta, 8000, 8000, 128, max_pixels=1000) == 128  # asked for: kept
    whole = i2i.load(resnet_run, device="cpu").meta
    with pytest.raises(I2IError, match="cannot be tiled .*--size"):
        plan_tile(whole, 8000, 8000, 0, max_pixels=4096 * 4096)
    # the issue's case: an 8000x8000 PNG of 200 KB, a generator that cannot be tiled: one line, fast
    Image.new("RGB", (8000, 8000), (90, 120, 40)).save(tmp_path / "big.png")
    code, out = invoke("translate", str(tmp_path / "big.png"), "--checkpoint", str(resnet_run))
    one_line_error(code, out, "64000000 pixels is past the limit", "--size")


def test_a_folder_with_bad_files_writes_the_good_ones(tmp_path: Path, resnet_run: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rgb(16, 16, 1)).save(src / "a.png")
    Image.fromarray(rgb(16, 20, 2)).save(src / "a.jpg")  # same stem: distinct output names
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (src / "c.jpg").write_bytes(b"")
    (src / "d.webp").write_bytes(b"not an image")
    code, out = invoke("translate", str(src), "--checkpoint", str(resnet_run), "--out", str(tmp_path / "out"))
    assert code == 1 and "Traceback" not in out, out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_jpg.png", "a_png.png"]
    for name in ("b.png", "c.jpg", "d.webp"):
        assert sum(name in line for line in out.splitlines()) == 1, out
    assert out.strip().splitlines()[-1] == "Error: 3 of 5 image(s) could not be translated (listed above)"


def test_output_names_are_distinct() -> None:
    from i2i.translate import output_names

    paths = [Path("x/a.png"), Path("x/a.jpg"), Path("y/a.png"), Path("x/b.png")]
    assert output_names(paths) == ["a_png.png", "a_jpg.png", "a_png_2.png", "b.png"]


# -- sources ---------------------------------------------------------------------------------------


def test_every_kind_of_source_gives_the_same_pixels(tmp_path: Path, resnet_run: Path) -> None:
    from i2i.registry import models

    g = i2i.load(resnet_run, device="cpu")
    image = rgb(24, 36, 4)
    want = g(image)
    # the published (junyanz) layout of the same weights, recognised from its keys
    torch.save(g.module.state_dict(), tmp_path / "G.pth")
    published = i2i.load(tmp_path / "G.pth", device="cpu")
    assert published.meta.name == "resnet_9blocks" and np.array_equal(published(image), want)
    # a zoo entry with local weights, and the architecture.tag spelling of the same entry
    assert "cyclegan_horse2zebra" in models()
    for name in ("cyclegan_horse2zebra", "resnet_9blocks.horse2zebra"):
        zoo = i2i.load(name, weights=tmp_path / "G.pth", device="cpu")
        assert zoo.meta.info["zoo"] == "cyclegan_horse2zebra" and np.array_equal(zoo(image), want)
    from i2i_export.exporter import export_onnx

    onnx_g = i2i.load(export_onnx(g.module, g.meta, tmp_path / "g.onnx"), device="cpu")
    assert np.abs(onnx_g(image).astype(int) - want.astype(int)).max() <= 1
    with pytest.raises(I2IError, match="no pretrained model 'resnet_9blocks.nothing'"):
        i2i.load("resnet_9blocks.nothing")
    with pytest.raises(I2IError, match="does not exist"):
        i2i.load(tmp_path / "missing.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(I2IError, match="no plugin recognises these weights"):
        i2i.load(tmp_path / "other.pth")


def test_a_wrong_shaped_checkpoint_is_one_line(tmp_path: Path, resnet_run: Path) -> None:
    from safetensors.torch import load_file, save_file

    from i2i.artifact import META_KEY
    from safetensors import safe_open

    with safe_open(str(resnet_run), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(resnet_run))
    key = next(k for k in tensors if k.endswith("weight") and tensors[k].ndim == 4)
    tensors[key] = torch.zeros(1, 1, 1, 1)
    bad = tmp_path / "weights.safetensors"
    save_file(tensors, str(bad), metadata=metadata)
    assert META_KEY in metadata
    todo = ("not from the architecture/settings its metadata records", "use another checkpoint of the run")
    with pytest.raises(I2IError, match="shape mismatch.*not from the architecture/settings.*another checkpoint"):
        i2i.load(bad)
    Image.fromarray(rgb(16, 16)).save(tmp_path / "a.png")
    code, out = invoke("translate", str(tmp_path / "a.png"), "--checkpoint", str(bad))
    one_line_error(code, out, "shape mismatch", *todo)
    # a renamed key: the same line with what to do, through translate and export; the key detail stays short
    tensors = load_file(str(resnet_run))
    tensors["G.renamed"] = tensors.pop(next(k for k in tensors if k.startswith("G.")))
    save_file(tensors, str(bad), metadata=metadata)
    code, out = invoke("translate", str(tmp_path / "a.png"), "--checkpoint", str(bad), "--out", str(tmp_path / "o"))
    one_line_error(code, out, "missing keys", "unexpected keys: renamed", *todo)
    code, out = invoke("export", str(bad), "-o", str(tmp_path / "x.onnx"))
    one_line_error(code, out, "missing keys", "unexpected keys: renamed", *todo)


def test_damaged_checkpoint_metadata_is_one_line(tmp_path: Path, resnet_run: Path) -> None:
    """The i2i JSON in a checkpoint's header cut short, or a generator entry with a field of the wrong
    kind: i2i.load, translate and export each say so in one line."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from i2i.artifact import META_KEY

    with safe_open(str(resnet_run), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(resnet_run))
    def damaged(**fields: object) -> str:
        meta = json.loads(metadata[META_KEY])
        if "generators" in fields:
            meta["generators"] = fields.pop("generators")
        else:
            meta["generators"][meta.get("main", "G")].update(fields)
        return json.dumps(meta)

    Image.fromarray(rgb(16, 16)).save(tmp_path / "a.png")
    for damage, says in ((metadata[META_KEY][:50], "its i2i metadata is damaged (Unterminated string"),
                         (damaged(value_range="minus one to one"), "its i2i metadata is damaged (TypeError"),
                         (damaged(value_range=[0, 0]), "value_range [0, 0] is no increasing pair"),
                         (damaged(scale=0), "scale 0 is not a whole number in [1, 64]"),
                         (damaged(kwargs="x"), "kwargs 'x' is not a mapping); use another checkpoint of the run"),
                         (damaged(info={"ab_pairs": "yes"}), "info['ab_pairs'] 'yes' is not a mapping"),
                         (damaged(generators="G"), "generators 'G' is no mapping of generator records"),
                         (damaged(kwargs={"ngf": "wide"}), "the recorded settings {'ngf': 'wide'} do not build"),
                         (damaged(kwargs={"ngf": -4}), "the recorded settings {'ngf': -4} do not build"),
                         (damaged(value_range="01"), "value_range '01' is no pair of numbers")):
        bad = tmp_path / "weights.safetensors"
        save_file(tensors, str(bad), metadata={**metadata, META_KEY: damage})
        with pytest.raises(I2IError, match=re.escape(says)):
            i2i.load(bad)
        for args in (("translate", str(tmp_path / "a.png"), "--checkpoint", str(bad), "--out", str(tmp_path / "o")),
                     ("export", str(bad), "-o", str(tmp_path / "x.onnx"))):
            code, out = invoke(*args)
            one_line_error(code, out, says)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.onnx").exists()


# -- eval: one model per --model, as in translate --------------------------------------------------


@pytest.mark.skipif(not COMPACT.is_file() or not (SHARED / "datasets" / "sr" / "Set5").is_dir(),
                    reason="shared weights/data not present")
def test_eval_sr_takes_model_and_weights_as_one_model(tmp_path: Path) -> None:
    data = tmp_path / "set"
    data.mkdir()
    for path in sorted((SHARED / "datasets" / "sr" / "Set5").iterdir())[:1]:
        Image.open(path).convert("RGB").crop((0, 0, 64, 64)).save(data / f"{path.stem}.png")
    # offline (tests never reach the network): the zoo file must not be fetched when --weights is given
    code, out = invoke("eval", "sr", "--data", str(data), "--model", "realesr-animevideov3", "--weights", str(COMPACT),
                       "--device", "cpu", "--mean-only", "--json")
    assert code == 0, out
    import json

    doc = json.loads(out[out.index("{"):])
    assert [m["name"] for m in doc["models"]] == ["bicubic", "realesr-animevideov3"]
    assert doc["models"][1]["source"] == f"--model realesr-animevideov3 --weights {COMPACT}"


def test_onnx_cuda_n_asks_for_that_gpu(tmp_path: Path) -> None:
    from i2i_export.exporter import export_onnx
    from i2i_export.runtime import CPU, CUDA, create_session

    spec = generators().get("srvgg_compact")
    path = export_onnx(build(spec).eval(), generator_meta(spec), tmp_path / "m.onnx")
    asked = []

    class Gpu:  # onnxruntime-gpu on a machine with that GPU: report what was asked, run on the CPU
        import onnxruntime as ort

        SessionOptions = ort.SessionOptions
        GraphOptimizationLevel = ort.GraphOptimizationLevel

        def get_available_providers(self) -> list[str]:
            return [CUDA, CPU]

        def InferenceSession(self, model, sess_options=None, providers=None):  # noqa: N802
            asked.append(providers)
            sess = self.ort.InferenceSession(model, sess_options=sess_options, providers=[CPU])
            sess.get_providers = lambda: [CUDA, CPU]
            return sess

    create_session(path, "cuda:1", ort_module=Gpu())
    assert asked == [[(CUDA, {"device_id": 1}), CPU]]


def test_without_torch_a_torch_source_is_one_line_everywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a serving install (onnxruntime, no torch) asked for a checkpoint or a zoo name
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(I2IError, match="needs PyTorch .*i2i\\[train\\]"):
        i2i.load("cyclegan_h2z")
    Image.fromarray(rgb(8, 8)).save(tmp_path / "a.png")
    for args in (["translate", str(tmp_path / "a.png"), "--model", "cyclegan_h2z"], ["serve", "--model", "cyclegan_h2z"],
                 ["export", "--model", "cyclegan_h2z"]):
        code, out = invoke(*args)
        one_line_error(code, out, "opening cyclegan_h2z needs PyTorch")
        assert "serving" not in out


def test_the_input_half_of_pairs_is_the_same_through_every_door(tmp_path: Path) -> None:
    # a pix2pix-like model that records it was trained on A|B files (BtoA: the right half is the input)
    from i2i.imageio import decode_image, encode_image
    from i2i_export.exporter import export_onnx
    from i2i_export.server import create_app, serve_in_thread

    g = tiny("srvgg_compact")
    g.meta.info["ab_pairs"] = {"input": "right", "aspect": 2.0}
    pair = rgb(16, 32, 9)
    want = g(pair[:, 16:], whole=True)
    assert np.array_equal(g(pair), want) and g(pair).shape == (64, 64, 3)
    assert g(pair, whole=True).shape == (64, 128, 3)
    assert g(rgb(16, 20)).shape == (64, 80, 3)  # not a pair's aspect: whole
    onnx_path = export_onnx(g.module, g.meta, tmp_path / "p.onnx")
    Image.fromarray(pair).save(tmp_path / "pair.png")
    code, out = invoke("translate", str(tmp_path / "pair.png"), "--model", str(onnx_path), "--out", str(tmp_path / "o"))
    assert code == 0 and "right half" in out, out
    cli_bytes = (tmp_path / "o" / "pair.png").read_bytes()
    import httpx

    with serve_in_thread(create_app(onnx_path, device="cpu")) as url:
        r = httpx.post(f"{url}/v1/translate", content=encode_image(pair), headers={"content-type": "image/png"})
        assert r.status_code == 200 and "right half" in r.headers["x-i2i-input"]
        assert r.content == cli_bytes
        r = httpx.post(f"{url}/v1/translate?whole=true", content=encode_image(pair), headers={"content-type": "image/png"})
        assert decode_image(r.content).shape == (64, 128, 3) and "x-i2i-input" not in r.headers
    assert np.abs(decode_image(cli_bytes).astype(int) - want.astype(int)).max() <= 1


def test_tiles_are_written_into_an_8_bit_output() -> None:
    # fault 6: with --tile the whole output must never exist as float32 (4x the 8-bit output), nor be
    # copied while converting. numpy's allocations are traced by tracemalloc (torch's are not).
    import tracemalloc

    g = tiny("srvgg_compact")  # x4
    image = rgb(192, 192, 5)
    out_bytes = 768 * 768 * 3
    g(image, tile=32)  # warm up
    tracemalloc.start()
    try:
        out = g(image, tile=32, overlap=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (768, 768, 3)
    tile_float = (32 + 16) ** 2 * 16 * 3 * 4  # one tile's float32 output
    assert peak < out_bytes + 8 * tile_float, (peak, out_bytes)
    tracemalloc.start()
    try:
        g(image)  # untiled, for contrast: the float32 output exists whole
        _, untiled = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert untiled > 4 * out_bytes


@pytest.mark.skipif(not (SHARED / "weights" / "key_layouts").is_dir(), reason="shared key layouts not present")
def test_a_published_pix2pix_unet_is_recognised_from_its_keys(tmp_path: Path) -> None:
    import json

    layout = json.loads((SHARED / "weights" / "key_layouts" / "pix2pix_unet_256_batchnorm.json").read_text())
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=gen) * 0.01 for k, shape in layout["keys"].items()
          if not k.endswith("num_batches_tracked")}  # the official file predates the counters
    for k in [k for k in sd if k.endswith("running_var")]:
        sd[k] = sd[k].abs() + 1
    torch.save({layout["wrapper_key"]: sd} if layout["wrapper_key"] else sd, tmp_path / "latest_net_G.pth")
    g = i2i.load(tmp_path / "latest_net_G.pth", device="cpu")
    assert g.meta.name == "unet_256" and g.meta.kwargs["ngf"] == 64
    assert g(rgb(16, 16)).shape == (16, 16, 3)


def test_the_package_gives_its_submodules_and_keeps_load_the_function() -> None:
    import importlib

    import i2i.loader  # noqa: F401 - importing the submodule must not replace the function

    assert callable(i2i.load) and i2i.load is importlib.import_module("i2i.loader").load
    assert i2i.registry.create_generator is importlib.import_module("i2i.registry").create_generator
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        i2i.nothing  # noqa: B018


def test_a_generator_without_an_i2i_version_is_served() -> None:
    from i2i_export.server import create_app

    g = tiny("srvgg_compact")
    g.meta.i2i_version = ""  # files from before i2i recorded it, or a third party's
    assert create_app("tiny", generator=g, device="cpu").version == "unknown"


class _RunsCode:
    def __reduce__(self):  # noqa: ANN204 - a pickle that would call os.system("true") if loaded unsafely
        import os

        return (os.system, ("true",))


def test_garbage_weights_say_what_the_file_is_not_without_torchs_advice(tmp_path: Path) -> None:
    """An error page, random bytes, an empty file and a code-running pickle: one plain line each, and
    never torch's 'Re-running torch.load with weights_only set to False' advice."""
    files = {"page.pth": b"<html>404 Not Found</html>\n", "random.pth": bytes(np.random.default_rng(0).integers(128, 256, 300, dtype=np.uint8)),
             "empty.pth": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"w": _RunsCode()}, tmp_path / "evil.pth")
    Image.fromarray(rgb(16, 16)).save(tmp_path / "a.png")
    for name, says in (("page.pth", "is an HTML page, not a PyTorch weights file"), ("random.pth", "is not a PyTorch weights file"),
                       ("empty.pth", "is empty"), ("evil.pth", "runs code (posix.system) and i2i refuses to run it")):
        code, out = invoke("translate", str(tmp_path / "a.png"), "--model", str(tmp_path / name), "--out", str(tmp_path / "o"))
        one_line_error(code, out, says)
        assert "weights_only" not in out and "Re-running" not in out, out
