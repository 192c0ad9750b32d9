"""pix2pix end to end, as a user runs it: `i2i train pix2pix --data facades`, then `i2i translate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from i2i.cli import cli

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (DATASETS / "facades").is_dir(), reason="../shared/datasets/facades not present")]

#: tiny but real: unet_128 with 8 filters, 128x128 crops, batch 4, a higher LR so 30 steps show learning
TINY = ["generator=unet_128", "generator_kwargs.ngf=8", "discriminator_kwargs.ndf=8", "load_size=136",
        "crop_size=128", "num_workers=0", "log_every=5", "lr=0.001"]


def held_out_pairs(tmp_path: Path, n: int = 8) -> tuple[Path, list[np.ndarray]]:
    """The first n facades test images split into label maps (inputs, B) and photos (targets, A), 128x128."""
    inputs = tmp_path / "labels"
    inputs.mkdir()
    targets = []
    for path in sorted((DATASETS / "facades" / "test").iterdir())[:n]:
        ab = Image.open(path).convert("RGB")
        w, h = ab.size
        a = ab.crop((0, 0, w // 2, h)).resize((128, 128), Image.BICUBIC)
        b = ab.crop((w // 2, 0, w, h)).resize((128, 128), Image.BICUBIC)
        b.save(inputs / f"{path.stem}.png")
        targets.append(np.asarray(a, dtype=np.float32) / 255)
    return inputs, targets


def translate_l1(runner: CliRunner, checkpoint: Path, inputs: Path, targets: list[np.ndarray], out: Path) -> float:
    result = runner.invoke(cli, ["translate", str(inputs), "--checkpoint", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 0, result.output
    outputs = sorted(out.glob("*.png"))
    assert len(outputs) == len(targets)
    return float(np.mean([np.abs(np.asarray(Image.open(p), dtype=np.float32) / 255 - t).mean()
                          for p, t in zip(outputs, targets)]))


def test_train_on_facades_then_translate_lowers_held_out_l1(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("I2I_DATA_DIR", str(DATASETS))
    runner = CliRunner()
    args = ["train", "pix2pix", "--data", "facades", "--out-dir", str(tmp_path / "runs"), "--name", "facades",
            "--max-steps", "30", "--batch-size", "4", "--set", "save_every=1", "--set", "keep_last=0"]
    for item in TINY:
        args += ["--set", item]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "facades"
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert any((run / "samples").iterdir())
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 30 and all(np.isfinite(r["G_L1"]) for r in records)

    # The paper's direction for facades (the recipe's BtoA): label map -> photo, judged on unseen test images.
    inputs, targets = held_out_pairs(tmp_path)
    early = translate_l1(runner, run / "checkpoints" / "step_0000001", inputs, targets, tmp_path / "early")
    late = translate_l1(runner, run, inputs, targets, tmp_path / "late")
    assert late < 0.95 * early, f"held-out L1 went from {early:.3f} to {late:.3f}"


def test_translate_writes_every_image_of_a_folder_at_its_size(tmp_path: Path, monkeypatch) -> None:
    """Any image size: a 256x256 facades test image and an odd-sized crop of it come back at their sizes."""
    runner = CliRunner()
    data = tmp_path / "data" / "train"
    data.mkdir(parents=True)
    for path in sorted((DATASETS / "facades" / "train").iterdir())[:2]:
        (data / path.name).write_bytes(path.read_bytes())
    args = ["train", "pix2pix", "--data", str(tmp_path / "data"), "--out-dir", str(tmp_path / "runs"), "--name", "r",
            "--max-steps", "1"]
    for item in TINY:
        args += ["--set", item]
    assert runner.invoke(cli, args).exit_code == 0
    inputs = tmp_path / "in"
    inputs.mkdir()
    test_image = sorted((DATASETS / "facades" / "test").iterdir())[0]
    Image.open(test_image).convert("RGB").save(inputs / "whole.png")
    Image.open(test_image).convert("L").crop((3, 5, 203, 150)).save(inputs / "odd_gray.png")
    result = runner.invoke(cli, ["translate", str(inputs), "--checkpoint", str(tmp_path / "runs" / "r"),
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    # trained on A|B pairs: an A|B file gives the translation of its input half, as the reference's test step
    assert result.output.count("translating the left half of such files") == 1
    with Image.open(tmp_path / "out" / "whole.png") as whole, Image.open(tmp_path / "out" / "odd_gray.png") as odd:
        # reading only the headers leaves the files open until closed (or a ResourceWarning at GC)
        assert whole.size == (256, 256)
        assert odd.size == (200, 145) and odd.mode == "L"  # grey in, grey out
    result = runner.invoke(cli, ["translate", str(inputs / "whole.png"), "--checkpoint", str(tmp_path / "runs" / "r"),
                                 "--out", str(tmp_path / "out_whole"), "--whole"])
    assert result.exit_code == 0 and "half" not in result.output, result.output
    with Image.open(tmp_path / "out_whole" / "whole.png") as whole:
        assert whole.size == (512, 256)

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = runner.invoke(cli, ["translate", str(bad / "broken.png"), "--checkpoint", str(tmp_path / "runs" / "r"),
                                 "--out", str(tmp_path / "never")])
    assert result.exit_code != 0 and "broken.png" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "never").exists()  # a failed run leaves no empty output folder
