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


def _independent_scores(sr: "np.ndarray", hr: "np.ndarray", border: int) -> tuple[float, float]:
    """PSNR and SSIM of two HxW float64 planes as basicsr's MATLAB port computes them (cv2's 2-D
    Gaussian filter, 'valid' region), written apart from i2i_srgan.metrics."""
    import cv2
    import numpy as np

    a, b = hr[border:-border, border:-border], sr[border:-border, border:-border]
    psnr = 10 * np.log10(255.0**2 / np.mean((a - b) ** 2))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())

    def f(x: "np.ndarray") -> "np.ndarray":
        return cv2.filter2D(x, -1, window)[5:-5, 5:-5]

    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    ssim = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(psnr), float(ssim.mean())


def test_eval_sr_scores_grey_images_on_their_own_channel(tmp_path: Path) -> None:
    """The fault: a greyscale HR image was turned into RGB and scored on Y = 16 + 219/255 g, 1.32 dB
    above the papers' protocol (Set14's bridge: 24.47 for 23.15). Set5's images turned grey serve."""
    import numpy as np
    from PIL import Image

    from i2i_srgan.imresize import downscale, imresize, modcrop

    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "butterfly.png").symlink_to(SET5 / "butterfly.png")  # colour
    Image.open(SET5 / "head.png").convert("L").save(folder / "head_grey.png")  # grey, one channel
    Image.open(SET5 / "head.png").convert("LA").save(folder / "head_grey_alpha.png")  # grey with alpha
    result = CliRunner().invoke(cli, ["eval", "sr", "--data", str(folder), "--scale", "4", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    rows = {r["image"]: r for r in doc["models"][0]["images"]}
    assert [r["kind"] for r in rows.values()] == ["colour", "grey", "grey"]

    for name in ("head_grey", "head_grey_alpha"):
        hr = modcrop(np.asarray(Image.open(folder / f"{name}.png").convert("L")), 4)
        sr = imresize(downscale(hr, 4), scale=4)
        psnr, ssim = _independent_scores(sr.astype(np.float64), hr.astype(np.float64), 4)
        got = rows[name]
        assert abs(got["psnr_y"] - psnr) < 1e-6 and abs(got["ssim_y"] - ssim) < 1e-6
        assert got["psnr_rgb"] == got["psnr_y"] and got["ssim_rgb"] == got["ssim_y"]
        # what the old path gave: the grey repeated into RGB, then BT.601 Y
        y_hr, y_sr = 16 + 219 / 255 * hr.astype(np.float64), 16 + 219 / 255 * sr.astype(np.float64)
        old, _ = _independent_scores(y_sr, y_hr, 4)
        assert abs((old - got["psnr_y"]) - 20 * np.log10(255 / 219)) < 1e-9  # the 1.32 dB

    # the colour image is scored as before (the Set5 table is unchanged): BT.601 Y, in float
    rgb = modcrop(np.asarray(Image.open(SET5 / "butterfly.png").convert("RGB")), 4)
    up = imresize(downscale(rgb, 4), scale=4)

    def y(x: "np.ndarray") -> "np.ndarray":
        x = x.astype(np.float64) / 255
        return 16 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]

    psnr, ssim = _independent_scores(y(up), y(rgb), 4)
    assert abs(rows["butterfly"]["psnr_y"] - psnr) < 1e-6 and abs(rows["butterfly"]["ssim_y"] - ssim) < 1e-6
    assert round(psnr, 1) == 22.1


def test_eval_sr_checkpoint_file_rows_are_named_by_the_file(two_images: Path) -> None:
    """--checkpoint FILE.pth names its row (and a wrong-scale error) by the file, as --weights does."""
    wrong = CliRunner().invoke(cli, ["eval", "sr", "--data", str(two_images), "--scale", "2", "--checkpoint", str(COMPACT)])
    assert wrong.exit_code != 0 and "Traceback" not in wrong.output
    assert "Error: realesr-animevideov3.pth [srvgg_compact] is an x4 model but --scale is 2" in wrong.output, wrong.output
