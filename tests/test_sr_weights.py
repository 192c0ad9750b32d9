"""Published SR weights load strictly (every layout we know), and upscale through `i2i translate`,
tiled exactly as untiled."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli
from i2i.errors import I2IError
from i2i.imageio import read_image, write_image
from i2i.plugins import manager

SHARED = Path(__file__).resolve().parents[2] / "shared"
COMPACT = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
SRGAN = SHARED / "weights" / "srgan_x4" / "netG_epoch_4_100.pth"
LAYOUTS = SHARED / "weights" / "key_layouts"
SET5 = SHARED / "datasets" / "sr" / "Set5"

needs = pytest.mark.skipif(not (COMPACT.is_file() and SRGAN.is_file() and SET5.is_dir()),
                           reason="needs ../shared/weights and ../shared/datasets/sr/Set5")


def needs_layout(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not (LAYOUTS / f"{name}.json").is_file(),
                              reason=f"../shared/weights/key_layouts/{name}.json not present")


@pytest.fixture(scope="module", autouse=True)
def _plugins_one_thread(one_thread: None) -> None:
    manager()


def _layout(name: str) -> dict:
    return json.loads((LAYOUTS / f"{name}.json").read_text())


def _published(layout: dict) -> dict:
    """A checkpoint with exactly the official keys and shapes (random values), wrapped as released."""
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(shape, generator=gen) * 0.01 for k, shape in layout["keys"].items()}
    return {layout["wrapper_key"]: sd} if layout["wrapper_key"] else sd


@needs
def test_compact_params_wrapper_loads_strictly() -> None:
    from i2i.loader import load

    raw = torch.load(COMPACT, map_location="cpu", weights_only=True)
    assert list(raw) == ["params"]  # the published wrapper
    module, meta = (g := load(COMPACT, device='cpu')).module, g.meta  # architecture recognised from the keys alone
    assert (meta.name, meta.scale) == ("srvgg_compact", 4)
    assert meta.kwargs["num_conv"] == 16 and meta.kwargs["num_feat"] == 64
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, raw["params"][k], rtol=0, atol=0)
    zmodule, zmeta = (g := load("realesr-animevideov3", weights=str(COMPACT), device='cpu')).module, g.meta
    assert zmeta.info["zoo"] == "realesr-animevideov3"
    assert zmodule.state_dict().keys() == module.state_dict().keys()


@needs
def test_srgan_legacy_pickle_loads_strictly() -> None:
    from i2i.loader import load

    assert not zipfile.is_zipfile(SRGAN)  # pre-1.6 pickle with CUDA tensors
    module, meta = (g := load(SRGAN, device='cpu')).module, g.meta
    assert meta.name == "srgan_leftthomas" and meta.kwargs == {"scale": 4, "num_feat": 64, "num_block": 5, "block7": "prelu"}
    raw = torch.load(SRGAN, map_location="cpu", weights_only=True)
    own = module.state_dict()
    # PyTorch < 0.4.1 saved BatchNorm without its step counter: the only keys we add
    assert {k.rsplit(".", 1)[1] for k in set(own) - set(raw)} == {"num_batches_tracked"} and set(raw) <= set(own)
    for k, v in raw.items():
        torch.testing.assert_close(own[k], v, rtol=0, atol=0)
    with torch.no_grad():
        out = module(torch.rand(1, 3, 12, 10))
    assert out.shape == (1, 3, 48, 40) and 0 <= out.min() and out.max() <= 1


@pytest.mark.parametrize("name, zoo", [pytest.param(name, zoo, marks=needs_layout(name)) for name, zoo in [
    ("realesrgan_RRDBNet_x4plus_anime_6B_basicsr", "realesrgan-x4plus-anime-6b"),
    ("realesrgan_RRDBNet_x4plus_basicsr", "realesrgan-x4plus"),
    ("esrgan_RRDBNet_x4_xinntao", "realesrgan-x4plus"),  # same architecture, old key names
]])
def test_rrdbnet_official_key_layouts_load_strictly(name: str, zoo: str) -> None:
    # Exact official keys and shapes on the meta device (no memory, no time): the zoo entry's
    # converter must produce a state_dict that our RRDBNet accepts with strict=True, and the
    # architecture recognised from the keys alone must be the same one.
    from i2i.registry import create_generator, models
    from i2i_srgan.weights import detect

    layout = _layout(name)
    sd = {k: torch.empty(shape, device="meta") for k, shape in layout["keys"].items()}
    ckpt = {layout["wrapper_key"]: sd} if layout["wrapper_key"] else sd
    spec = models().get(zoo)
    n_block = 6 if "6B" in name else 23
    found, kwargs, _ = detect(ckpt)
    assert (found, kwargs) == ("rrdbnet", {"in_channels": 3, "out_channels": 3, "scale": 4, "num_feat": 64,
                                           "num_block": n_block, "num_grow_ch": 32})
    assert spec.generator_kwargs["num_block"] == n_block
    with torch.device("meta"):
        module = create_generator(spec.generator, **spec.generator_kwargs)
    converted = spec.converter(ckpt)
    module.load_state_dict(converted, strict=True, assign=True)
    assert sum(v.numel() for v in module.state_dict().values()) == layout["num_elements"]
    del converted["conv_body.weight"]
    with pytest.raises(RuntimeError, match="conv_body.weight"):
        module.load_state_dict(converted, strict=True, assign=True)


@needs_layout("realesrgan_RRDBNet_x4plus_anime_6B_basicsr")
def test_rrdbnet_published_file_loads_through_the_zoo(tmp_path: Path) -> None:
    # End to end on a file of the x4plus_anime_6B layout: {"params_ema": sd}, random values.
    from i2i.loader import load

    layout = _layout("realesrgan_RRDBNet_x4plus_anime_6B_basicsr")
    ckpt = _published(layout)
    path = tmp_path / "RealESRGAN_x4plus_anime_6B.pth"
    torch.save(ckpt, path)
    for zoo in ("realesrgan-x4plus-anime-6b", None):  # zoo entry, or recognised from the keys
        g = load(zoo, weights=path, device="cpu") if zoo else load(path, device="cpu")
        module, meta = g.module, g.meta
        assert meta.name == "rrdbnet" and meta.kwargs["num_block"] == 6 and meta.scale == 4
        torch.testing.assert_close(module.conv_first.weight, ckpt["params_ema"]["conv_first.weight"])
    del ckpt["params_ema"]["body.5.rdb3.conv5.bias"]
    torch.save(ckpt, path)
    with pytest.raises(I2IError, match="missing keys: body.5.rdb3.conv5.bias"):
        load("realesrgan-x4plus-anime-6b", weights=path)


def test_unknown_layout_is_a_clear_error(tmp_path: Path) -> None:
    from i2i.loader import load

    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(I2IError, match="no plugin recognises these weights"):
        load(path)


def _lr_image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    from i2i_srgan.imresize import downscale

    hr = read_image(SET5 / "baby.png")[100:292, 120:280]  # 192x160 HR -> 48x40 LR
    path = tmp_path / "lr.png"
    write_image(path, downscale(hr, 4))
    return path, hr


def _translate(tmp_path: Path, image: Path, out: str, *extra: str) -> np.ndarray:
    result = CliRunner().invoke(cli, ["translate", str(image), "--model", "realesr-animevideov3", "--weights", str(COMPACT),
                                      "--out", str(tmp_path / out), "--device", "cpu", *extra])
    assert result.exit_code == 0, result.output
    return read_image(tmp_path / out / "lr.png")


@needs
def test_translate_zoo_model_upscales_and_tiles_exactly(tmp_path: Path) -> None:
    from i2i_srgan.metrics import psnr

    image, hr = _lr_image(tmp_path)
    whole = _translate(tmp_path, image, "whole")
    assert whole.shape == (192, 160, 3)
    assert psnr(whole, hr, 4) > 27  # a real upscale of this crop (bicubic: 31.7 dB; a broken net: < 15 dB)
    # 9 LR tiles of 16 px; the compact net sees 18 LR px each way, so 18 px of context is exact
    tiled = _translate(tmp_path, image, "tiled", "--tile", "16", "--overlap", "18")
    np.testing.assert_array_equal(tiled, whole)
    # too little context changes pixels near tile seams: the comparison above can fail
    short = _translate(tmp_path, image, "short", "--tile", "16", "--overlap", "4")
    assert (short != whole).any()
