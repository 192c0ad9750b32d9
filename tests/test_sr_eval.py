"""`i2i eval sr`: the papers' protocol on real Set5 images, published weights against bicubic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from i2i.cli import cli

SHARED = Path(__file__).resolve().parents[2] / "shared"
SET5 = SHARED / "datasets" / "sr" / "Set5"
COMPACT = SHARED / "weights" / "realesrgan" / "realesr-animevideov3.pth"
SRGAN = SHARED / "weights" / "srgan_x4" / "netG_epoch_4_100.pth"

pytestmark = [pytest.mark.skipif(not (SET5.is_dir() and COMPACT.is_file() and SRGAN.is_file()),
                                reason="needs ../shared/datasets/sr/Set5 and ../shared/weights"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture()
def two_images(tmp_path: Path) -> Path:
    # the two smallest Set5 images (linked, not copied) keep the CPU time down
    folder = tmp_path / "set5_part"
    folder.mkdir()
    for name in ("butterfly.png", "head.png"):
        (folder / name).symlink_to(SET5 / name)
    return folder


def test_eval_sr_compares_published_weights_with_bicubic(two_images: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", "sr", "--data", str(two_images), "--scale", "4", "--device", "cpu", "--json",
                                      "--weights", f"realesr-animevideov3={COMPACT}", "--weights", str(SRGAN)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["scale"] == 4 and doc["crop_border"] == 4 and doc["lr"] == "MATLAB bicubic"
    rows = {m["name"]: m for m in doc["models"]}
    assert list(rows) == ["bicubic", "realesr-animevideov3 (realesr-animevideov3.pth)",
                          "netG_epoch_4_100.pth [srgan_leftthomas]"]
    bicubic, srgan = rows["bicubic"], rows["netG_epoch_4_100.pth [srgan_leftthomas]"]
    assert [r["image"] for r in bicubic["images"]] == ["butterfly", "head"]
    # the papers' bicubic Set5 x4 rows for these two images (Y, border 4): 22.10 and 31.6 dB
    assert [round(r["psnr_y"], 1) for r in bicubic["images"]] == [22.1, 31.6]
    # a trained SRGAN beats bicubic on both images; the anime-video model wins on the butterfly
    for b, s in zip(bicubic["images"], srgan["images"]):
        assert s["psnr_y"] > b["psnr_y"] + 0.3 and s["ssim_y"] > b["ssim_y"]
    assert rows["realesr-animevideov3 (realesr-animevideov3.pth)"]["images"][0]["psnr_y"] > bicubic["images"][0]["psnr_y"]
    for row in rows.values():
        assert row["mean"]["psnr_y"] == pytest.approx(sum(r["psnr_y"] for r in row["images"]) / 2)
        assert row["mean"]["psnr_rgb"] < row["mean"]["psnr_y"]  # chroma errors count on RGB


def test_eval_sr_table_and_wrong_scale(two_images: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["eval", "sr", "--data", str(two_images), "--device", "cpu", "--mean-only",
                                 "--weights", f"realesr-animevideov3={COMPACT}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model"))
    assert lines[header].split()[:6] == ["model", "image", "PSNR-Y", "SSIM-Y", "PSNR-RGB", "SSIM-RGB"]
    body = lines[header + 2:]
    assert [line.split()[0] for line in body] == ["bicubic", "realesr-animevideov3"] and all(" mean " in line for line in body)
    wrong = runner.invoke(cli, ["eval", "sr", "--data", str(two_images), "--scale", "2", "--weights", str(SRGAN)])
    assert wrong.exit_code != 0 and "--scale 4" in wrong.output and "Traceback" not in wrong.output
