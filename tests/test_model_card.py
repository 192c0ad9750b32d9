"""The model card in every checkpoint folder, and issue 18's end-to-end check on real facades:

``i2i train pix2pix --data facades --max-steps 4 --set val_every=2 --set select_by=psnr`` writes
validation rows, ``checkpoints/best`` and a model card; ``i2i translate --checkpoint`` and
``GET /v1/model`` show the card. A tiny generator (unet_128, 8 filters) and PSNR keep it a few
seconds; FID is the same path with a feature-weights file (tests/test_metrics*.py cover FID itself).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from i2i.cli import cli
from i2i.modelcard import CARD, DataInfo, ValidationInfo, card_summary, read_card, render, reproduce_command

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FACADES_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/facades.tar.gz"
TINY = ["generator=unet_128", "generator_kwargs.ngf=8", "discriminator_kwargs.ndf=8", "load_size=136",
        "crop_size=128", "num_workers=0", "log_every=1", "direction=BtoA"]


def parse_command(command: str) -> tuple[str, dict[str, Any]]:
    """``i2i train METHOD --data D --set k=v ...`` -> (method, the overrides `i2i train` builds a config from)."""
    from i2i.config import parse_overrides

    words = shlex.split(command)
    assert words[:2] == ["i2i", "train"]
    flags = {"--data": "data", "--name": "name", "--out-dir": "out_dir", "--max-steps": "max_steps",
             "--batch-size": "batch_size"}
    sets, values = [], {}
    it = iter(words[3:])
    for word in it:
        if word == "--set":
            sets.append(next(it))
        else:
            values[flags[word]] = next(it)
    return words[2], {**parse_overrides(sets), **values}


def test_the_reproducing_command_rebuilds_the_config() -> None:
    from i2i.config import build, to_dict
    from i2i_pix2pix.method import Pix2PixConfig

    cfg = build(Pix2PixConfig, overrides={"data": "my data/facades", "max_steps": 7, "lr_milestones": [3, 5],
                                          "generator_kwargs": {"ngf": 8, "norm": "instance"}, "flip": False,
                                          "lr_D": 1e-4, "val_metrics": ["psnr", "ssim"], "select_by": "psnr"})
    command = reproduce_command("pix2pix", to_dict(cfg), to_dict(Pix2PixConfig()))
    assert command.startswith("i2i train pix2pix --data 'my data/facades' --max-steps 7 --set ")
    method, overrides = parse_command(command)
    assert method == "pix2pix"
    assert to_dict(build(Pix2PixConfig, overrides=overrides)) == to_dict(cfg)


def test_a_card_says_what_is_known_and_what_is_not() -> None:
    common = dict(method="srresnet", tag="final", generator="srresnet", generator_kwargs={"scale": 4}, main_net="G",
                  step=10, epoch=1, total_steps=10, precision="fp32", device="cpu", i2i_version="9.9",
                  plugins={"i2i_srgan": "9.9"}, command="i2i train srresnet --data x")
    bare = render(data=DataInfo("/data/mine", 12), **common)
    assert card_summary(bare) == "srresnet srresnet trained 10 steps (1 epochs) on mine (12 images)"
    assert "a local folder (not in the dataset catalogue)" in bare and "check the data's own terms" in bare
    assert "No validation was run" in bare
    validation = ValidationInfo(step=10, values={"psnr_y": 30.5}, specs={"psnr_y": ("PSNR on Y", True, "paired")},
                                protocol="the first 5 images of Set5", images=5, seconds=1.25, select_by="psnr_y",
                                best_value=31.0, best_step=8)
    full = render(data=DataInfo("facades", 400, url=FACADES_URL, license="CMP Facade Database, research use"),
                  validation=validation, ema=True, **common)
    assert card_summary(full).endswith("validation at step 10: psnr_y 30.5; best psnr_y 31 at step 8")
    for text in (f"- source: {FACADES_URL}", "- licence / terms: CMP Facade Database, research use",
                 "| psnr_y | 30.5 | higher | paired | PSNR on Y |", "the first 5 images of Set5; 5 images, 1.25 s",
                 "kept by `psnr_y`: 31 at step 8", "exponential moving average", "- plugin i2i_srgan 9.9",
                 "- generator (`G`): `srresnet` with kwargs `{\"scale\": 4}`", "- precision: fp32 on cpu"):
        assert text in full, text


def test_no_card_is_none(tmp_path: Path) -> None:
    assert read_card(tmp_path) is None and read_card(tmp_path / "weights.safetensors") is None
    assert card_summary("# title\n\nno quote") == ""


def test_a_card_damaged_into_bytes_that_are_not_text_still_reads(tmp_path: Path) -> None:
    """translate --card, serve's /v1/model and an .onnx exported from the checkpoint all read the card:
    damaged bytes must not stop the model it describes from running."""
    from i2i.modelcard import CARD

    (tmp_path / CARD).write_bytes(b"# pix2pix \xff\xfe facades\n")
    assert read_card(tmp_path) == "# pix2pix \ufffd\ufffd facades\n"


@pytest.mark.slow
@pytest.mark.skipif(not (DATASETS / "facades").is_dir(), reason="../shared/datasets/facades not present")
def test_train_facades_with_validation_writes_rows_best_and_cards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  one_thread: None) -> None:
    monkeypatch.setenv("I2I_DATA_DIR", str(DATASETS))
    runner = CliRunner()
    args = ["train", "pix2pix", "--data", "facades", "--out-dir", str(tmp_path / "runs"), "--name", "f",
            "--max-steps", "4", "--set", "val_every=2", "--set", "select_by=psnr", "--set", "val_images=8"]
    for item in TINY:
        args += ["--set", item]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "f"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("split") == "val"]
    assert [r["step"] for r in val] == [2, 4]
    assert all(r["val/images"] == 8 and 5 < r["val/psnr"] < 40 for r in val)
    assert "validation at step 2: psnr" in result.output

    ckpts = run / "checkpoints"
    best_row = max(val, key=lambda r: r["val/psnr"])
    from i2i.checkpoint import read_meta

    assert read_meta(ckpts / "best" / "weights.safetensors")["step"] == best_row["step"]
    folders = [p for p in ckpts.iterdir() if p.is_dir()]
    assert {p.name for p in folders} >= {"best", "final"}
    assert all((p / CARD).is_file() for p in folders), "every checkpoint folder has a model card"

    card = (ckpts / "final" / CARD).read_text()
    for text in ("# pix2pix model card: final", "pix2pix unet_128 trained 4 steps", "- data: `facades`",
                 f"- source: {FACADES_URL}", "CMP Facade Database", "| psnr |", "(test split)",
                 "- precision: fp32 on cpu", "i2i_pix2pix"):
        assert text in card, text
    assert "- size: 400 training images" in card
    command = next(line for line in card.splitlines() if line.startswith("- reproduce: "))[len("- reproduce: `"):-1]
    method, overrides = parse_command(command)
    from i2i.config import build, to_dict
    from i2i_pix2pix.method import Pix2PixConfig

    saved = json.loads(json.dumps(read_meta(ckpts / "final" / "weights.safetensors")["config"]))
    rebuilt = to_dict(build(Pix2PixConfig, overrides=overrides))
    assert method == "pix2pix"
    assert {k: v for k, v in rebuilt.items() if k not in ("name", "out_dir")} == \
        {k: v for k, v in saved.items() if k not in ("name", "out_dir")}

    # `i2i translate --checkpoint` says the summary; --card prints the card
    image = sorted((DATASETS / "facades" / "test").iterdir())[0]
    result = runner.invoke(cli, ["translate", str(image), "--checkpoint", str(ckpts / "best"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert f"i2i: model: pix2pix unet_128 trained {best_row['step']} steps" in result.output
    result = runner.invoke(cli, ["translate", str(image), "--checkpoint", str(run), "--card", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0 and card in result.output

    # GET /v1/model gives the card as text
    from fastapi.testclient import TestClient

    from i2i_export.server import create_app

    with TestClient(create_app(run, device="cpu")) as client:
        info = client.get("/v1/model").json()
    assert info["model_card"] == card and info["summary"] == card_summary(card)


@pytest.mark.slow
@pytest.mark.skipif(not (DATASETS / "facades").is_dir(), reason="../shared/datasets/facades not present")
def test_select_by_fid_with_a_local_feature_weights_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path_factory: pytest.TempPathFactory,
                                                         one_thread: None) -> None:
    """The issue's command with FID: the Inception weights come from a local file (I2I_FID_WEIGHTS), no
    download. Random weights (figures meaningless, the path the same) keep the test offline; 4 images."""
    from i2i_metrics.distribution import random_inception_file

    weights = random_inception_file(tmp_path_factory.getbasetemp())  # one file for the whole test run
    monkeypatch.setenv("I2I_FID_WEIGHTS", str(weights))
    monkeypatch.setenv("I2I_DATA_DIR", str(DATASETS))
    args = ["train", "pix2pix", "--data", "facades", "--out-dir", str(tmp_path / "runs"), "--name", "f",
            "--max-steps", "2", "--set", "val_every=2", "--set", "select_by=fid", "--set", "val_images=4"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "f"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r.get("split") == "val"]
    assert [r["step"] for r in val] == [2] and val[0]["val/fid"] >= 0 and val[0]["val/images"] == 4
    card = (run / "checkpoints" / "best" / CARD).read_text()
    assert "| fid |" in card and "| lower | distribution |" in card and "kept by `fid`" in card
    # the protocol says which Inception file measured it: a random local one is not the published one
    from i2i.download import sha256_file

    assert (f"fid features: {weights.name}, sha256 {sha256_file(weights)[:12]} (not the published "
            f"weights-inception-2015-12-05-6726825d.pth)") in card, card


def test_the_card_reader_imports_without_torch() -> None:
    """`i2i serve` of an .onnx file runs torch-free, and GET /v1/model reads the card through this module."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from i2i.modelcard import card_summary, read_card\n"
            "print(card_summary('# card\\n\\n> pix2pix trained'), read_card('.'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["pix2pix", "trained", "None"]


def test_a_run_started_from_zoo_weights_names_their_source_and_licence() -> None:
    from i2i.modelcard import weights_line
    from i2i.registry import models

    spec = next(s for s in models().list() if s.license)
    line = weights_line("init", spec.name)
    assert f"zoo model `{spec.name}`" in line and spec.license in line and (spec.source or spec.url) in line
    assert "not in i2i's zoo" in weights_line("init_from", "runs/mine")
    card = render(method="srgan", tag="final", generator="rrdbnet", generator_kwargs={}, main_net="G",
                  data=DataInfo("/data/x", 3), step=1, epoch=0, total_steps=1, precision="fp32", device="cpu",
                  i2i_version="9.9", plugins={}, command="i2i train srgan", initial_weights=[line])
    assert f"- started from other weights:\n  {line}" in card


def test_two_unpaired_sets_report_both_counts(tmp_path) -> None:
    """CycleGAN with a_dir/b_dir: the start line and the card give both sets' counts ("2 + 3 images"),
    never the B set's count as if it were the whole --data folder's."""
    import shutil

    from click.testing import CliRunner

    from i2i.cli import cli
    from i2i.modelcard import DataInfo, summary

    assert summary("cyclegan", "g", DataInfo("horses", 300, parts=[69, 300]), 1, 0, None) == \
        "cyclegan g trained 1 steps (0 epochs) on horses (69 + 300 images)"
    horses = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "horses"
    images = sorted(p for p in horses.rglob("*") if p.suffix.lower() in (".jpg", ".png"))[:5]
    if len(images) < 5:
        pytest.skip("needs ../shared/datasets/horses")
    for folder, chosen in (("a", images[:2]), ("b", images[2:])):
        (tmp_path / folder).mkdir()
        for p in chosen:
            shutil.copy(p, tmp_path / folder / p.name)
    result = CliRunner().invoke(cli, [
        "train", "cyclegan", "--data", str(tmp_path / "a"), "--out-dir", str(tmp_path / "runs"), "--name", "r",
        "--max-steps", "1", "--set", f"a_dir={tmp_path / 'a'}", "--set", f"b_dir={tmp_path / 'b'}",
        "--set", "crop_size=32", "--set", "load_size=32", "--set", "generator_kwargs.ngf=4",
        "--set", "discriminator_kwargs.ndf=4", "--set", "discriminator_kwargs.n_layers=1", "--set", "num_workers=0",
        "--set", "save_every_minutes=0", "--set", "sample_every=0"])
    assert result.exit_code == 0, result.output
    assert "(2 + 3 images)" in result.output and "(3 images)" not in result.output, result.output
    cards = [p.read_text() for p in (tmp_path / "runs" / "r").rglob("*.md")]
    assert cards and all("(2 + 3 images)" in c and "- size: 2 + 3 training images" in c for c in cards), cards


def test_a_checkpoint_without_a_card_says_which_ones_carry_one(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from click.testing import CliRunner

    from i2i.checkpoint import save_generator
    from i2i.imageio import write_image
    from i2i.loader import build_meta
    from i2i.registry import generators

    torch.manual_seed(0)
    module = generators().create("resnet_6blocks", ngf=4).eval()
    model = save_generator(tmp_path / "model.safetensors", module,
                           build_meta("resnet_6blocks", {"ngf": 4}, method="pix2pix", module=module))
    write_image(tmp_path / "in.png", np.zeros((32, 32, 3), np.uint8))
    res = CliRunner().invoke(cli, ["translate", str(tmp_path / "in.png"), "--checkpoint", str(model), "--card",
                                   "--out", str(tmp_path / "o")])
    line = next(line for line in res.output.splitlines() if "has no model card" in line)
    assert "issue" not in line and "i2i writes one into each checkpoint folder of a training run" in line, res.output


def test_an_onnx_file_has_no_card_even_where_its_checkpoint_path_names_one(tmp_path: Path) -> None:
    """An .onnx file's metadata keeps the (possibly relative) path of the checkpoint it was exported
    from; read from another folder it may name another run's card: files show none, checkpoints theirs."""
    from torch import nn

    from i2i.artifact import GeneratorMeta
    from i2i.loader import Generator
    from i2i.modelcard import CARD

    (tmp_path / CARD).write_text("# cyclegan resnet_9blocks\n\n> trained 200 epochs on horse2zebra\n")
    meta = GeneratorMeta(name="unet_128", info={"checkpoint": str(tmp_path / "weights.safetensors")})
    onnx_file = Generator(lambda x: x, meta, "cpu", source="m.onnx", module=None)
    assert onnx_file.describe()["model_card"] is None and onnx_file.describe()["summary"] == ""
    checkpoint = Generator(lambda x: x, meta, "cpu", source=str(tmp_path), module=nn.Identity())
    assert checkpoint.describe()["model_card"].startswith("# cyclegan")
