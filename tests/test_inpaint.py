"""Inpainting end to end: DeepFill v2 networks, ONNX export with the mask input, and the CLI
(`i2i train inpaint` on real CelebA-HQ faces, `i2i translate --mask`, `i2i eval inpaint`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from i2i.cli import cli
from i2i.registry import create_generator, generators

SHARED = Path(__file__).resolve().parents[2] / "shared"
CELEBA = SHARED / "datasets" / "inpaint" / "celeba_hq"
needs_celeba = pytest.mark.skipif(not CELEBA.is_dir(), reason="../shared/datasets/inpaint/celeba_hq not present")


def tiny_generator(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    spec = generators().get("deepfill_v2")
    return create_generator("deepfill_v2", **spec.test_kwargs).eval()


def test_test_kwargs_are_tiny() -> None:
    spec = generators().get("deepfill_v2")
    assert [i.name for i in spec.extra_inputs] == ["mask"] and spec.extra_inputs[0].channels == 1
    assert sum(p.numel() for p in tiny_generator().parameters()) < 200_000
    # the paper's width: about 4M parameters (DeepFill v2 reports 4.1M)
    full = create_generator("deepfill_v2")
    assert 2.5e6 < sum(p.numel() for p in full.parameters()) < 5e6


@pytest.mark.parametrize("hw", [(32, 32), (37, 29)])
def test_known_pixels_come_back_exactly(one_thread, hw) -> None:
    G = tiny_generator()
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, *hw, generator=g) * 2 - 1
    mask = (torch.rand(2, 1, *hw, generator=g) > 0.7).float()
    with torch.no_grad():
        out = G(image, mask)
        # what the input holds inside the hole is ignored
        scrambled = G(torch.where(mask.bool(), torch.randn_like(image), image), mask)
    assert out.shape == image.shape
    known = (mask == 0).expand_as(image)
    assert torch.equal(out[known], image[known])
    assert torch.equal(out, scrambled)
    assert not torch.allclose(out[~known], image[~known])


def test_sn_patch_discriminator_is_spectrally_normalised(one_thread) -> None:
    from i2i.registry import create_discriminator

    D = create_discriminator("sn_patch", input_nc=4, ndf=8, n_layers=4)
    assert D(torch.randn(2, 4, 64, 64)).shape == (2, 32, 4, 4)  # 4 stride-2 layers: 64 -> 4
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(hasattr(m, "parametrizations") for m in convs)
    for _ in range(20):  # power iterations converge on the largest singular value
        D(torch.randn(1, 4, 64, 64))
    D.eval()
    w = convs[1].weight.detach().flatten(1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 0.05


def test_onnx_export_with_the_mask_input_matches_onnxruntime(one_thread, tmp_path: Path) -> None:
    import onnxruntime as ort
    from i2i.testing import generator_meta
    from i2i_export.exporter import export_onnx, verify_onnx

    G = tiny_generator()
    meta = generator_meta(generators().get("deepfill_v2"))
    path = export_onnx(G, meta, tmp_path / "deepfill.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "mask"]
    assert sess.get_inputs()[1].shape[1] == 1
    assert verify_onnx(path, G, meta, tolerance=1e-4) < 1e-4  # batch 2, a size unlike the export's
    assert verify_onnx(path, G, meta, batch=1, hw=(44, 28), tolerance=1e-4) < 1e-4
    # composited in the graph too: known pixels are the input's
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(1, 3, 36, 52, generator=g) * 2 - 1).numpy()
    mask = (torch.rand(1, 1, 36, 52, generator=g) > 0.5).float().numpy()
    out = sess.run(["output"], {"image": image, "mask": mask})[0]
    keep = np.broadcast_to(mask == 0, image.shape)
    np.testing.assert_array_equal(out[keep], image[keep])


def test_method_losses_and_monitor(one_thread) -> None:
    from i2i.config import build
    from i2i.engine.trainer import build_method
    from i2i.errors import I2IError
    from i2i_inpaint.method import InpaintConfig, check_config

    cfg = build(InpaintConfig, overrides={"cnum": 8, "ndf": 8, "d_layers": 3, "perceptual_weight": 0})
    method = build_method("inpaint", cfg)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
             "mask": (torch.rand(2, 1, 32, 32, generator=g) > 0.6).float()}
    out = method.forward(batch)
    d = method.discriminator_loss(batch, out)
    losses = method.generator_loss(batch, out)
    assert set(d) == {"D_real", "D_fake"}
    assert set(losses) == {"G_hole", "G_valid", "G_coarse", "G_GAN"} and losses["G_hole"].requires_grad
    with torch.no_grad():
        monitors = method.metrics(batch, out)
    m = batch["mask"].bool().expand(-1, 3, -1, -1)
    expected = (out["output"] - batch["image"]).abs()[m].mean() / 2
    assert set(monitors) == {"hole_L1"} and abs(monitors["hole_L1"].item() - expected.item()) < 1e-6
    cfg.hole_weight = -1
    with pytest.raises(I2IError, match="hole_weight"):
        check_config(cfg)


def test_optional_perceptual_loss(one_thread) -> None:
    from i2i.config import build
    from i2i.engine.trainer import build_method
    from i2i.registry import losses
    from i2i_inpaint.method import InpaintConfig

    if "vgg19_perceptual" not in losses():
        pytest.skip("no perceptual loss registered (i2i_srgan plugin blocked)")
    cfg = build(InpaintConfig, overrides={"cnum": 8, "gan_weight": 0, "perceptual_weight": 0.5,
                                          "perceptual_kwargs": {"weights": "random", "layers": {"relu1_2": 1.0}}})
    method = build_method("inpaint", cfg)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, "mask": torch.zeros(1, 1, 32, 32)}
    batch["mask"][..., 8:20, 8:20] = 1
    terms = method.generator_loss(batch, method.forward(batch))
    assert "G_GAN" not in terms and terms["G_perceptual"].item() > 0
    terms["G_perceptual"].backward()
    assert method.nets["G"].refine_dec.conv17.conv.weight.grad.abs().sum() > 0


# -- end to end through the CLI on real faces ------------------------------------------------


@pytest.fixture(scope="module")
def trained(one_thread, tmp_path_factory) -> Path:
    """~100 steps of the tiny recipe on CelebA-HQ at 32x32 (about 30 s on 2 cores)."""
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(cli, ["train", "inpaint", "--data", str(CELEBA), "--config", "inpaint_tiny",
                                      "--max-steps", "100", "--name", "tiny", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    return out / "tiny"


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@needs_celeba
def test_short_cpu_training_lowers_the_hole_l1(trained: Path) -> None:
    records = metrics(trained)
    assert [r["step"] for r in records] == list(range(10, 101, 10))
    early = np.mean([r["hole_L1"] for r in records[:2]])  # steps 1-20
    late = np.mean([r["hole_L1"] for r in records[-2:]])  # steps 81-100
    assert late < 0.85 * early, (early, late)
    cfg = (trained / "config.yaml").read_text()
    assert "holdout: 10" in cfg and "cnum: 8" in cfg


def _face(tmp_path: Path, size: tuple[int, int]) -> Path:
    # an odd size, from a held-aside face
    path = tmp_path / "face.jpg"
    Image.open(CELEBA / "src" / "male" / "005735.jpg").resize(size).save(path, quality=90)
    return path


def _save_mask(path: Path, mask: np.ndarray, mode: str = "L") -> Path:
    Image.fromarray(mask).convert(mode).save(path)
    return path


@needs_celeba
def test_translate_fills_holes_and_keeps_known_pixels(trained: Path, tmp_path: Path) -> None:
    from i2i.imageio import read_image

    w, h = 77, 53  # not multiples of the generator's size multiple (4): padded, then cropped back
    face = _face(tmp_path, (w, h))
    mask = np.zeros((h, w), np.uint8)
    mask[10:30, 20:50] = 255
    mask[40:45, 60:77] = 3  # any non-zero value is a hole, up to the border
    mpath = _save_mask(tmp_path / "mask.png", mask)
    runner = CliRunner()
    result = runner.invoke(cli, ["translate", str(face), "--checkpoint", str(trained), "--mask", str(mpath),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = np.asarray(Image.open(tmp_path / "out" / "face.png"))
    original = read_image(face)
    hole = mask > 0
    assert written.shape == original.shape
    np.testing.assert_array_equal(written[~hole], original[~hole])  # pixel-exact outside the hole
    assert np.abs(written[hole].astype(int) - original[hole]).mean() > 0  # the hole was filled, not copied
    # a filled hole is closer to the face than a black hole would be
    assert np.abs(written[hole].astype(int) - original[hole]).mean() < np.abs(original[hole].astype(int)).mean()

    # --size resizes the mask with the image (nearest): the result is at the new size, known pixels kept
    result = runner.invoke(cli, ["translate", str(face), "--checkpoint", str(trained), "--mask", str(mpath),
                                 "--size", "106", "--out", str(tmp_path / "resized")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "resized" / "face.png") as im:  # header only: close it, not the GC
        assert im.size == (154, 106)


@needs_celeba
def test_translate_takes_masks_as_editors_save_them(trained: Path, tmp_path: Path) -> None:
    """The fault: strokes on a transparent layer (RGBA) were read as "all hole ... is it inverted?"."""
    from i2i.imageio import read_image

    face = _face(tmp_path, (40, 36))
    rgba = np.zeros((72, 80, 4), np.uint8)  # twice the image's size: resized, and said
    rgba[..., :3] = 255
    rgba[10:30, 20:50, 3] = 255
    mpath = tmp_path / "strokes.png"
    Image.fromarray(rgba).save(mpath)
    result = CliRunner().invoke(cli, ["translate", str(face), "--checkpoint", str(trained), "--mask", str(mpath),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "resized it (nearest neighbour)" in result.output
    written, original = np.asarray(Image.open(tmp_path / "out" / "face.png")), read_image(face)
    hole = np.zeros((36, 40), bool)
    hole[5:15, 10:25] = True
    np.testing.assert_array_equal(written[~hole], original[~hole])  # transparent = kept, pixel-exact
    assert np.abs(written[hole].astype(int) - original[hole]).mean() > 0


@needs_celeba
def test_translate_mask_errors_are_one_line(trained: Path, tmp_path: Path) -> None:
    face = _face(tmp_path, (40, 36))
    ok = np.zeros((36, 40), np.uint8)
    ok[5:10, 5:10] = 255
    cases = {
        "wrong size": (_save_mask(tmp_path / "small.png", ok[:30]), "is 40x30 but the image is 40x36"),
        "colour": (_save_mask(tmp_path / "colour.png", np.stack([ok, ok * 0, ok * 0], -1), "RGB"), "is a colour image"),
        "no hole": (_save_mask(tmp_path / "zero.png", ok * 0), "marks no hole"),
        "all hole": (_save_mask(tmp_path / "full.png", ok * 0 + 255), "all hole"),
        "not an image": (tmp_path / "notes.txt", "notes.txt"),
        "missing": (tmp_path / "nope.png", "nope.png"),
    }
    (tmp_path / "notes.txt").write_text("not a mask")
    runner = CliRunner()
    for what, (mpath, message) in cases.items():
        result = runner.invoke(cli, ["translate", str(face), "--checkpoint", str(trained), "--mask", str(mpath),
                                     "--out", str(tmp_path / "out")])
        assert result.exit_code != 0, what
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], (what, result.output)
        assert "Traceback" not in result.output
    result = runner.invoke(cli, ["translate", str(face), "--checkpoint", str(trained), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "pass --mask FILE" in result.output


@needs_celeba
def test_eval_table_with_the_opencv_baseline(trained: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["eval", "inpaint", "--checkpoint", str(trained), "--data", str(CELEBA), "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # held-aside faces: the checkpoint's holdout (10) = the src/ folder, at the checkpoint's crop size
    assert report["size"] == 32
    assert sorted(Path(f).relative_to(CELEBA).parts[0] for f in report["images"]) == ["src"] * 10
    rows = report["rows"]
    methods = {r["method"] for r in rows}
    assert methods == {"model (deepfill_v2)", "opencv-telea"}
    expected = ["0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "all"]
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        assert [r["holes"] for r in mine] == expected
        assert [r["n"] for r in mine] == [10] * 6 + [60]
        assert all(0 < r["hole_l1"] < 1 and 0 < r["ssim"] <= 1 and 5 < r["psnr"] < 60 for r in mine)
        # bigger holes are harder: L1 over the image grows with the hole ratio
        l1s = [r["l1"] for r in mine[:6]]
        assert l1s[-1] > 3 * l1s[0]
    # the fixed, seeded mask set: the same baseline figures on a second run
    again = json.loads(runner.invoke(cli, args[:2] + ["--data", str(CELEBA), "--holdout", "10", "--size", "32",
                                                      "--json"]).output)
    telea = [r for r in rows if r["method"] == "opencv-telea"]
    assert telea == [r for r in again["rows"] if r["method"] == "opencv-telea"]
    # the exported model scores the same as the checkpoint (the .onnx path of the eval)
    from i2i.loader import load
    from i2i_export.exporter import export_onnx

    module, meta = (g := load(trained, device='cpu')).module, g.meta
    onnx_path = export_onnx(module, meta, tmp_path / "tiny.onnx")
    result = runner.invoke(cli, ["eval", "inpaint", "--checkpoint", str(onnx_path), "--data", str(CELEBA),
                                 "--holdout", "10", "--size", "32", "--baseline", "none", "--json"])
    assert result.exit_code == 0, result.output
    onnx_rows = json.loads(result.output)["rows"]
    torch_rows = [r for r in rows if r["method"].startswith("model")]
    for a, b in zip(onnx_rows, torch_rows):
        assert a["holes"] == b["holes"] and abs(a["psnr"] - b["psnr"]) < 0.05


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "inpaint", "--data", str(tmp_path / "nope")])
    assert result.exit_code != 0 and result.output.strip().splitlines() == [
        f"Error: --data {tmp_path / 'nope'} is not a folder of images"]
    result = runner.invoke(cli, ["eval", "inpaint", "--data", str(tmp_path), "--baseline", "none"])
    assert result.exit_code != 0 and "nothing to evaluate" in result.output
