"""The spandrel plugin: published files of any spandrel architecture open through i2i.load, i2i's own
layouts win, checkpoints of spandrel networks rebuild with no flags, and --set init trains from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("spandrel")

import i2i  # noqa: E402
from i2i.cli import cli  # noqa: E402
from i2i.errors import I2IError  # noqa: E402
from images import rgb  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SET5 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sr" / "Set5"


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def one_line_error(code: int, output: str, *needles: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in output, output
    assert lines and lines[-1].startswith("Error:"), output
    for needle in needles:
        assert needle in lines[-1], output
    return lines[-1]


@pytest.fixture(scope="module")
def span_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SPAN x2 network (spandrel's own class, random weights) saved as a published .pth would be."""
    from spandrel.architectures.SPAN import SPAN

    torch.manual_seed(0)
    net = SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2).eval()
    path = tmp_path_factory.mktemp("span") / "2x_SPAN_tiny.pth"
    torch.save({"params_ema": net.state_dict()}, path)  # basicsr's wrapper, as such files come
    return path


def test_a_spandrel_file_opens_with_complete_metadata(span_file: Path) -> None:
    from spandrel import ModelLoader

    g = i2i.load(span_file, device="cpu")
    meta = g.meta
    assert meta.name == "spandrel" and meta.kwargs["arch"] == "SPAN" and meta.kwargs["net"] == "SPAN"
    assert (meta.scale, meta.in_channels, meta.out_channels, meta.value_range) == (2, 3, 3, (0.0, 1.0))
    assert meta.tiling == "local" and meta.extra_inputs == [] and meta.size_multiple == 1
    assert meta.info["architecture"] == "SPAN" and "permissive" in meta.info["license"]
    json.dumps(meta.kwargs)  # the kwargs go into checkpoints and .onnx metadata as JSON
    image = rgb(13, 17)
    out = g(image)
    assert out.shape == (26, 34, 3) and out.dtype == np.uint8
    # the same pixels as spandrel's own descriptor gives
    desc = ModelLoader().load_from_file(span_file)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    ref = (desc(x)[0].permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1
    # tiles are allowed and give the whole image's pixels (SPAN is a local CNN)
    assert np.abs(g(rgb(40, 40), tile=16, overlap=12).astype(int) - g(rgb(40, 40)).astype(int)).max() <= 1


def test_i2i_layouts_win_over_spandrel(tmp_path: Path) -> None:
    """spandrel also recognises Real-ESRGAN compact files; i2i's own srvgg_compact must answer first."""
    from spandrel import ModelLoader
    from spandrel.architectures.Compact import Compact

    net = Compact(num_feat=8, num_conv=2, upscale=4)
    path = tmp_path / "compact.pth"
    torch.save({"params": net.state_dict()}, path)
    assert ModelLoader().load_from_file(path).architecture.id == "Compact"  # spandrel would take it
    assert i2i.load(path, device="cpu").meta.name == "srvgg_compact"
    impls = {i.plugin_name: i for i in __import__("i2i.plugins").plugins.manager().pm.hook.identify_weights.get_hookimpls()}
    assert impls["i2i_spandrel"].trylast and not impls["i2i_srgan"].trylast


def test_checkpoint_of_a_spandrel_network_rebuilds_without_flags(span_file: Path, tmp_path: Path) -> None:
    from i2i.checkpoint import save_generator

    g = i2i.load(span_file, device="cpu")
    saved = save_generator(tmp_path / "weights.safetensors", g.module, g.meta)
    again = i2i.load(saved, device="cpu")
    assert again.meta.kwargs == g.meta.kwargs and again.meta.scale == 2
    image = rgb(9, 11, seed=2)
    assert np.array_equal(again(image), g(image))


def test_translate_and_export_a_spandrel_file(span_file: Path, tmp_path: Path) -> None:
    Image.fromarray(rgb(12, 10)).save(tmp_path / "a.png")
    code, out = invoke("translate", str(tmp_path / "a.png"), "--model", str(span_file), "--out", str(tmp_path / "o"))
    assert code == 0, out
    with Image.open(tmp_path / "o" / "a.png") as im:
        assert im.size == (20, 24)
    code, out = invoke("export", str(span_file), "-o", str(tmp_path / "span.onnx"))
    assert code == 0 and "max |diff|" in out, out
    onnx_g = i2i.load(tmp_path / "span.onnx", device="cpu")
    assert onnx_g.meta.kwargs["arch"] == "SPAN"
    torch_g = i2i.load(span_file, device="cpu")
    image = rgb(14, 18, seed=5)
    assert np.abs(onnx_g(image).astype(int) - torch_g(image).astype(int)).max() <= 1


def test_an_architecture_that_cannot_export_says_why_in_one_line(tmp_path: Path) -> None:
    from i2i_spandrel.arches import build, encode
    from i2i_spandrel.table import NO_ONNX, TINY

    arch = next(iter(NO_ONNX))
    cls, hyper, _ = TINY[arch]
    net = build(arch, cls, encode(hyper))
    torch.save(net.net.state_dict(), tmp_path / "x.pth")
    code, out = invoke("export", str(tmp_path / "x.pth"), "-o", str(tmp_path / "x.onnx"))
    one_line_error(code, out, f"spandrel {arch} cannot be exported to ONNX", NO_ONNX[arch][:30])
    assert not (tmp_path / "x.onnx").exists()


def test_hyperparameters_round_trip_and_refuse_foreign_code() -> None:
    from i2i_spandrel.arches import decode, encode

    value = {"norm_layer": torch.nn.LayerNorm, "sizes": (1, 2), "nested": [(3,)], "x": None}
    assert decode(json.loads(json.dumps(encode(value)))) == value
    with pytest.raises(I2IError, match="outside torch and spandrel"):
        decode({"__ref__": "os:system"})
    with pytest.raises(I2IError, match="not a torch layer class"):
        decode({"__ref__": "torch.hub:load"})


def test_bad_generator_kwargs_are_one_line_errors() -> None:
    from i2i_spandrel.arches import build

    with pytest.raises(I2IError, match="unknown spandrel architecture 'ESRGN'.*ESRGAN"):
        build("ESRGN")
    with pytest.raises(I2IError, match="has no class 'Nope'"):
        build("ESRGAN", "Nope")
    with pytest.raises(I2IError, match="does not take these hyperparameters"):
        build("Compact", hyperparameters={"no_such": 1})
    with pytest.raises(I2IError, match="scale=4, not 2"):
        build("Compact", hyperparameters={"num_feat": 8, "num_conv": 1}, scale=2)
    # an architecture's own constructor failing (SwinIR's defaults: img_size 64 with window_size 7)
    with pytest.raises(I2IError, match=r"SwinIR.SwinIR cannot be built with its default hyperparameters \(RuntimeError"):
        build("SwinIR")


def test_a_listed_architecture_row_used_as_a_generator_name_says_how(tmp_path: Path) -> None:
    """`i2i list generators` shows spandrel.SwinIR; used as a name it says how to build that architecture."""
    code, out = invoke("train", "srgan", "--data", str(tmp_path), "--set", "generator=spandrel.swinir")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in out and lines[-1].startswith("Error:"), out
    assert "--set generator=spandrel --set generator_kwargs.arch=SwinIR" in lines[-1], out
    with pytest.raises(I2IError, match="unknown generator 'spandrel.NoSuchNet'"):
        i2i.registry.generators().get("spandrel.NoSuchNet")


def test_list_generators_shows_spandrel() -> None:
    code, out = invoke("list", "generators")
    assert code == 0 and "spandrel " in out and "spandrel_inpaint" in out and "architectures" in out, out
    from i2i_spandrel.arches import catalogue

    for arch in catalogue():  # one row per architecture spandrel builds here, under the entry that builds it
        parent = "spandrel_inpaint" if arch in ("LaMa", "MAT") else "spandrel"
        assert f"\n{parent}.{arch} " in out, arch
    code, out = invoke("list", "generators", "SwinIR")  # the architecture's own name finds its row
    assert code == 0 and out.splitlines()[2].startswith("spandrel.SwinIR ") and len(out.splitlines()) == 3, out
    code, out = invoke("list", "generators", "spandrel_inpaint.*", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} == {"spandrel_inpaint.LaMa", "spandrel_inpaint.MAT"}


def test_non_commercial_architectures_carry_their_licence(tmp_path: Path) -> None:
    pytest.importorskip("spandrel_extra_arches")
    from spandrel_extra_arches.architectures.SRFormer import SRFormer

    net = SRFormer(img_size=16, embed_dim=12, depths=(1,), num_heads=(2,), window_size=4, upscale=2,
                   upsampler="pixelshuffle")
    torch.save(net.state_dict(), tmp_path / "srformer.pth")
    g = i2i.load(tmp_path / "srformer.pth", device="cpu")
    assert g.meta.kwargs["arch"] == "SRFormer" and g.meta.info["license"] == "CC BY-NC 4.0"
    assert g.meta.info["package"] == "spandrel-extra-arches"


# -- --set init: fine-tune what you load -----------------------------------------------------------------


@pytest.mark.skipif(not SET5.is_dir(), reason="shared Set5 not present")
def test_train_srgan_from_a_spandrel_file_writes_a_flagless_checkpoint(span_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "ft"
    code, out = invoke("train", "srgan", "--data", str(SET5), "--set", f"init={span_file}", "--set", "scale=2",
                       "--max-steps", "2", "--set", "batch_size=1", "--set", "crop_size=32",
                       "--set", "perceptual_weights=random", "--set", "num_workers=0",
                       "--out-dir", str(tmp_path / "runs"), "--name", "ft")
    assert code == 0, out
    g = i2i.load(run, device="cpu")  # no architecture flags
    start = i2i.load(span_file, device="cpu")
    assert g.meta.name == "spandrel" and g.meta.kwargs == start.meta.kwargs and g.meta.method == "srgan"
    assert set(g.module.state_dict()) == set(start.module.state_dict())


def test_init_says_the_configured_generator_is_not_used(span_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from i2i.warmstart import warm_start

    name, kwargs, state = warm_start(str(span_file), generator="rrdbnet", generator_kwargs={"num_block": 1},
                                     default_generator="srresnet", method="srgan")
    err = capsys.readouterr().err
    assert name == "spandrel" and kwargs["arch"] == "SPAN" and all(k.startswith("net.") for k in state)
    assert "brings its own architecture, spandrel (SPAN)" in err and "generator=rrdbnet" in err and "num_block=1" in err
    warm_start(str(span_file), generator="srresnet", generator_kwargs={}, default_generator="srresnet", method="srgan")
    assert capsys.readouterr().err == ""  # nothing set: nothing to say
    with pytest.raises(I2IError, match="an .onnx file cannot seed training"):
        warm_start("x.onnx", generator="srresnet", generator_kwargs={}, default_generator="srresnet", method="srgan")


def test_weights_spandrel_cannot_build_name_the_file_arch_and_keys(span_file: Path, tmp_path: Path) -> None:
    """A SPAN file with a tensor gone: every door says the file, SPAN and the missing key in one line."""
    from i2i.warmstart import warm_start

    state = torch.load(span_file, weights_only=True)["params_ema"]
    state.pop("upsampler.0.bias")
    bad = tmp_path / "span_missing.pth"
    torch.save(state, bad)
    needles = (str(bad), "SPAN", "missing keys: upsampler.0.bias")
    Image.fromarray(rgb(12, 10)).save(tmp_path / "a.png")
    one_line_error(*invoke("translate", str(tmp_path / "a.png"), "--model", str(bad), "--out", str(tmp_path / "o")),
                   *needles)
    one_line_error(*invoke("export", str(bad), "-o", str(tmp_path / "x.onnx")), *needles)
    for open_it in (lambda: i2i.load(bad, device="cpu"),
                    lambda: warm_start(str(bad), generator="srresnet", generator_kwargs={},
                                       default_generator="srresnet", method="srgan")):
        with pytest.raises(I2IError) as err:
            open_it()
        assert all(n in str(err.value) for n in needles) and "\n" not in str(err.value)


def test_tiling_refusal_gives_the_networks_own_reason(tmp_path: Path) -> None:
    """SwinIR (spandrel: tiling DISCOURAGED) is refused tiles for spandrel's reason, not InstanceNorm's."""
    from spandrel.architectures.SwinIR import SwinIR

    net = SwinIR(upscale=2, img_size=16, window_size=4, embed_dim=12, depths=[1], num_heads=[2], mlp_ratio=1.0,
                 upsampler="pixelshuffle")
    torch.save(net.state_dict(), tmp_path / "swinir_x2.pth")
    Image.fromarray(rgb(16, 16)).save(tmp_path / "a.png")
    line = one_line_error(*invoke("translate", str(tmp_path / "a.png"), "--model", str(tmp_path / "swinir_x2.pth"),
                                  "--tile", "8", "--out", str(tmp_path / "o")), "SwinIR", "DISCOURAGED", "--tile")
    assert "InstanceNorm" not in line and "statistics" not in line


def test_a_weights_file_alone_is_the_model_for_translate_export_and_serve(span_file: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`--weights FILE` with nothing else opens FILE in translate, export and serve alike."""
    import i2i_export.server

    Image.fromarray(rgb(12, 10)).save(tmp_path / "a.png")
    code, out = invoke("translate", str(tmp_path / "a.png"), "--weights", str(span_file), "--out", str(tmp_path / "o"))
    assert code == 0, out
    code, out = invoke("export", "--weights", str(span_file), "-o", str(tmp_path / "span.onnx"))
    assert code == 0 and (tmp_path / "span.onnx").is_file(), out
    served = []
    monkeypatch.setattr(i2i_export.server, "serve", lambda *a, generator, **k: served.append(generator))
    code, out = invoke("serve", "--weights", str(span_file), "--device", "cpu")
    assert code == 0 and served and served[0].meta.kwargs["arch"] == "SPAN", out


def test_init_of_another_scale_names_the_setting_to_change(span_file: Path, tmp_path: Path) -> None:
    """An x2 init under srgan's default scale=4 says `--set scale=2`, not a generator kwarg never set."""
    if not SET5.is_dir():
        pytest.skip("shared Set5 not present")
    code, out = invoke("train", "srgan", "--data", str(SET5), "--set", f"init={span_file}", "--max-steps", "1",
                       "--set", "batch_size=1", "--set", "crop_size=32", "--set", "perceptual_weights=random",
                       "--set", "num_workers=0", "--out-dir", str(tmp_path / "runs"), "--name", "x")
    line = one_line_error(code, out, "is an x2 model but scale is 4", "--set scale=2")
    assert "generator_kwargs" not in line
