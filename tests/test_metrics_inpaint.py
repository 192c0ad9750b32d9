"""`i2i eval inpaint` on the metric plugins (issue 18): LPIPS and FID per hole-ratio bucket, the same
PSNR/SSIM as before (100 dB cap, valid-window SSIM), and `auto` leaving out what has no weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli

CELEBA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "inpaint" / "celeba_hq"
needs_celeba = pytest.mark.skipif(not CELEBA.is_dir(), reason="../shared/datasets/inpaint/celeba_hq not present")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from torchvision.models import alexnet

    from i2i_metrics.distribution import random_inception_file

    root = tmp_path_factory.mktemp("feature_weights")

    torch.manual_seed(0)
    torch.save({k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")},
               root / "alexnet.pth")
    return {"fid": str(random_inception_file(tmp_path_factory.getbasetemp())), "lpips": str(root / "alexnet.pth")}


def faces(n: int, size: int = 48) -> list[np.ndarray]:
    from PIL import Image

    from i2i.imageio import read_image

    from i2i.imageio import list_images

    files = list_images(CELEBA / "src", recursive=True)[:n]
    return [np.asarray(Image.fromarray(read_image(f, 3)).resize((size, size), Image.Resampling.BICUBIC)) for f in files]


@needs_celeba
def test_lpips_and_fid_per_bucket(weights: dict[str, str]) -> None:
    from i2i_inpaint.evaluate import bucketed_masks, evaluate, format_table, opencv_inpainter
    from i2i_inpaint.masks import mask_from_spec

    images = faces(2)
    buckets = ((0.0, 0.2), (0.2, 0.4))
    masks = bucketed_masks(mask_from_spec("free_form_eval"), (48, 48), 2, seed=0, buckets=buckets)
    methods = {"telea": opencv_inpainter("telea"), "copy": lambda image, mask: image.copy()}
    kwargs = {"fid": {"weights": weights["fid"], "dims": 64}, "lpips": {"weights": weights["lpips"]}}
    rows = evaluate(images, masks, methods, buckets=buckets, metrics=["lpips", "fid"], metric_kwargs=kwargs)
    assert [(r.method, r.holes, r.n) for r in rows] == [
        ("telea", "0-20%", 2), ("telea", "20-40%", 2), ("telea", "all", 4),
        ("copy", "0-20%", 2), ("copy", "20-40%", 2), ("copy", "all", 4)]
    telea, copy = rows[:3], rows[3:]
    # "copy" returns the original: a perfect fill (PSNR capped at 100 dB, SSIM 1, LPIPS and FID 0)
    for r in copy:
        assert (r.l1, r.hole_l1, r.psnr, r.ssim, r.lpips) == (0.0, 0.0, 100.0, pytest.approx(1.0), 0.0)
        assert abs(r.fid) < 1e-6
    for r in telea:
        assert r.lpips > 0 and r.fid > 0 and r.psnr < 100 and r.hole_l1 > r.l1
    table = format_table(rows)
    assert "| LPIPS | FID |" in table.splitlines()[0] and len(table.splitlines()) == 2 + 6


def ssim_valid(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out: 11x11 Gaussian (sigma 1.5), K = 0.01/0.03, valid windows, mean over
    channels, on [0, 1] values (what i2i eval inpaint computed with cv2.filter2D before the plugins)."""
    from scipy.signal import correlate2d

    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for ch in range(3):
        p, q = a[..., ch] / 255.0, b[..., ch] / 255.0
        f = lambda z: correlate2d(z, w, mode="valid")  # noqa: E731
        mp, mq = f(p), f(q)
        spp, sqq, spq = f(p * p) - mp**2, f(q * q) - mq**2, f(p * q) - mp * mq
        vals.append((((2 * mp * mq + c1) * (2 * spq + c2)) / ((mp**2 + mq**2 + c1) * (spp + sqq + c2))).mean())
    return float(np.mean(vals))


@needs_celeba
def test_psnr_and_ssim_are_the_plugins_with_the_old_conventions() -> None:
    from i2i_inpaint.evaluate import measure

    a, b = faces(2, 32)
    got = measure([a], [b], [np.zeros((32, 32), np.float32)], ["psnr", "ssim", "l1", "hole_l1"])
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    assert got["psnr"] == pytest.approx(10 * np.log10(255.0**2 / mse), abs=1e-9)
    assert got["ssim"] == pytest.approx(ssim_valid(a, b), abs=1e-9)
    assert got["l1"] == pytest.approx(np.abs(a.astype(np.float64) - b).mean() / 255) and got["hole_l1"] == 0.0


@needs_celeba
def test_auto_measures_lpips_and_fid_only_with_weights_at_hand(tmp_path: Path, weights: dict[str, str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "faces"
    data.mkdir()
    from i2i.imageio import list_images

    for f in list_images(CELEBA / "src", recursive=True)[:1]:
        (data / f.name).symlink_to(f)
    base = ["eval", "inpaint", "--data", str(data), "--all", "--size", "32", "--json"]
    monkeypatch.delenv("I2I_FID_WEIGHTS", raising=False)
    monkeypatch.delenv("I2I_LPIPS_WEIGHTS", raising=False)
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["rows"] and all(r["lpips"] is None and r["fid"] is None for r in doc["rows"])
    assert doc["not_measured"].startswith("lpips and fid not measured") and doc["metrics"] == ["l1", "hole_l1", "psnr", "ssim"]
    res = CliRunner().invoke(cli, base[:-1])  # the table: the note on stderr
    assert res.exit_code == 0 and "i2i: lpips and fid not measured" in res.stderr
    monkeypatch.setenv("I2I_LPIPS_WEIGHTS", weights["lpips"])  # at hand: auto takes it
    res = CliRunner().invoke(cli, base)
    assert res.exit_code == 0, res.output
    assert all(r["lpips"] is not None and r["fid"] is None for r in json.loads(res.output)["rows"])
    assert json.loads(res.output)["feature_weights"]["lpips"].startswith(f"{Path(weights['lpips']).name}, sha256 ")
    assert "(not the published alexnet-owt-7be5be79.pth)" in json.loads(res.output)["feature_weights"]["lpips"]
    res = CliRunner().invoke(cli, base[:-1])
    assert res.exit_code == 0 and f"lpips features: {Path(weights['lpips']).name}, sha256 " in res.output, res.output
    monkeypatch.setenv("I2I_OFFLINE", "1")
    res = CliRunner().invoke(cli, [*base, "--metrics", "fid"])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--feature-weights FILE or set I2I_FID_WEIGHTS=FILE" in lines[-1], res.output
    res = CliRunner().invoke(cli, [*base, "--metrics", "fidd"])
    assert res.exit_code != 0 and "no metric 'fidd' in i2i eval inpaint (did you mean: fid" in res.output
