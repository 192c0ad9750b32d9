"""`i2i eval translate` (issue 18) on real data: facades A|B pairs (paired + distribution metrics),
an unaligned testA/testB layout (FID/KID only) and the one-line errors. The feature networks are
randomly initialised files given by flag (no network here): the figures are exercised, not judged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FACADES, HORSES, MONET = SHARED / "facades" / "test", SHARED / "horses", SHARED / "monet2photo" / "monet"
pytestmark = pytest.mark.skipif(not (FACADES.is_dir() and HORSES.is_dir() and MONET.is_dir()),
                                reason="../shared/datasets (facades, horses, monet2photo) not present")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny label->photo 'pix2pix' (right half of A|B files in, as facades BtoA), random Inception and
    AlexNet weights, and small data folders linked from the shared datasets."""
    from torchvision.models import alexnet

    from i2i.checkpoint import save_generator
    from i2i.loader import build_meta
    from i2i.registry import generators
    from i2i_metrics.distribution import random_inception_file

    root = tmp_path_factory.mktemp("eval_translate")
    torch.manual_seed(0)
    module = generators().create("resnet_6blocks", ngf=4).eval()
    meta = build_meta("resnet_6blocks", {"ngf": 4}, method="pix2pix", module=module,
                      info={"ab_pairs": {"input": "right", "aspect": 2.0}})
    model = save_generator(root / "model.safetensors", module, meta)
    inception = random_inception_file(tmp_path_factory.getbasetemp())  # one file for the whole run
    alex = root / "alexnet.pth"
    torch.save({k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")}, alex)
    pairs = root / "facades" / "test"
    pairs.mkdir(parents=True)
    for f in sorted(FACADES.iterdir())[:3]:
        (pairs / f.name).symlink_to(f)
    unaligned = root / "h2m"
    for side, src in (("testA", HORSES), ("testB", MONET)):
        (unaligned / side).mkdir(parents=True)
        for f in sorted(src.iterdir())[:3]:
            (unaligned / side / f.name).symlink_to(f)
    return {"model": model, "inception": inception, "alex": alex, "pairs": root / "facades", "unaligned": unaligned,
            "root": root}


def invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["eval", "translate", *args])
    return res.exit_code, res.output


def test_facades_pairs_give_paired_and_distribution_metrics(files: dict[str, Path]) -> None:
    from i2i.imageio import read_image
    from i2i.loader import load

    out_dir = files["root"] / "outputs"
    # KID rather than FID here: a 2048-d FID's matrix square root costs tens of seconds on a busy 2-core
    # CPU; FID through Inception is tested in test_metrics.py, and `auto` choosing it below
    code, out = invoke(str(files["model"]), "--data", str(files["pairs"]), "--feature-weights", str(files["inception"]),
                       "--lpips-weights", str(files["alex"]), "--metrics", "kid,psnr,ssim,lpips", "--device", "cpu",
                       "--save-dir", str(out_dir), "--json")
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    assert doc["pairing"] == "pairs" and doc["images"] == 3 and doc["references"] == 3
    assert set(doc["metrics"]) == {"kid", "psnr", "ssim", "lpips"}
    assert doc["metrics"]["kid"]["higher_is_better"] is False and doc["metrics"]["psnr"]["higher_is_better"] is True
    assert all(isinstance(m["value"], float) for m in doc["metrics"].values())
    # the outputs are the model's translation of the right halves, scored against the left halves
    g = load(str(files["model"]), device="cpu")
    psnrs = []
    for f in sorted((files["pairs"] / "test").iterdir()):
        pair = read_image(f, 3)
        half = pair.shape[1] // 2
        want = g.translate(np.ascontiguousarray(pair[:, half:]), whole=True)
        saved = read_image(out_dir / f"{f.stem}.png", 3)
        assert np.array_equal(saved, want)
        mse = np.mean((saved.astype(np.float64) - pair[:, :half].astype(np.float64)) ** 2)
        psnrs.append(10 * np.log10(255.0**2 / mse))
    assert doc["metrics"]["psnr"]["value"] == pytest.approx(np.mean(psnrs), abs=1e-6)


def test_auto_chooses_fid_and_kid_and_paired_metrics_only_with_pairs() -> None:
    from i2i_metrics.translate_eval import choose_metrics

    assert choose_metrics("auto", "unpaired") == ["fid", "kid"]
    assert choose_metrics("auto", "pairs") == choose_metrics("auto", "named") == ["fid", "kid", "psnr", "ssim", "lpips"]
    assert choose_metrics("kid, is,kid", "unpaired") == ["kid", "is"]


def test_unaligned_test_sets_get_distribution_metrics_in_a_table(files: dict[str, Path]) -> None:
    code, out = invoke(str(files["model"]), "--data", str(files["unaligned"]), "--feature-weights",
                       str(files["inception"]), "--metrics", "kid,is", "--device", "cpu")
    assert code == 0, out
    lines = out.splitlines()
    assert any("testA -> testB" in line and "3 outputs, 3 references" in line for line in lines), out
    header = next(i for i, line in enumerate(lines) if line.startswith("metric"))
    rows = {line.split()[0]: line.split() for line in lines[header + 2: header + 4]}
    assert set(rows) == {"kid", "is"} and rows["kid"][2] == "lower" and rows["is"][2] == "higher"
    assert rows["kid"][3] == "distribution"


@pytest.mark.parametrize("args, needle", [
    (["--metrics", "psnr"], "psnr compares each output with its own target, but this test set has no pairs"),
    (["--metrics", "masked_l1"], "masked_l1 needs hole masks: use `i2i eval inpaint`"),
    (["--metrics", "fidd"], "unknown metric 'fidd' (did you mean: fid"),
])
def test_wrong_metrics_are_one_line(files: dict[str, Path], args: list[str], needle: str) -> None:
    code, out = invoke(str(files["model"]), "--data", str(files["unaligned"]), "--device", "cpu", *args)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code != 0 and "Traceback" not in out and lines[-1].startswith("Error:") and needle in lines[-1], out


def test_single_images_without_a_target_folder_are_one_line(files: dict[str, Path]) -> None:
    code, out = invoke(str(files["model"]), "--data", str(files["unaligned"] / "testA"), "--device", "cpu")
    assert code != 0 and "not A|B pairs: pass --target DIR" in out.splitlines()[-1], out


def test_pairs_wider_than_two_to_one_are_pairs_as_in_training(tmp_path: Path) -> None:
    """pix2pix trains on A|B files at least 1.5x as wide as tall; eval reads the same files as pairs."""
    from PIL import Image

    from i2i_metrics.translate_eval import find_test_set

    (tmp_path / "test").mkdir()
    Image.new("RGB", (600, 256)).save(tmp_path / "test" / "wide.png")
    test = find_test_set(tmp_path, "test", None, None, None)
    assert test.pairing == "pairs" and len(test.inputs) == 1


def test_a_folder_of_videos_says_it_holds_videos(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "clip.mp4").write_bytes(b"not decoded: the suffix is what is counted")
    code, out = invoke(str(files["model"]), "--data", str(tmp_path), "--device", "cpu")
    last = out.splitlines()[-1]
    assert code != 0 and "no test images in" in last and "it holds 1 video: eval scores images" in last, out


def test_a_target_folder_with_the_same_names_gives_pairs(files: dict[str, Path]) -> None:
    # the horses against themselves: pairs by name, so PSNR is measured (a random model: low)
    code, out = invoke(str(files["model"]), "--data", str(files["unaligned"] / "testA"), "--target",
                       str(files["unaligned"] / "testA"), "--metrics", "psnr,ssim", "--device", "cpu", "--json")
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    assert doc["pairing"] == "named" and 0 < doc["metrics"]["psnr"]["value"] < 40


def test_a_cyclegan_run_is_measured_in_either_direction(files: dict[str, Path]) -> None:
    """One step of a tiny CycleGAN (horses -> Monet) on the unaligned folders: AtoB runs G_A on testA,
    BtoA runs G_B on testB without --net."""
    import shutil

    data = files["root"] / "h2m_train"
    for side, test in (("trainA", "testA"), ("trainB", "testB")):
        shutil.copytree(files["unaligned"] / test, data / side, symlinks=True)
        shutil.copytree(files["unaligned"] / test, data / test, symlinks=True)
    res = CliRunner().invoke(cli, ["train", "cyclegan", "--data", str(data), "--max-steps", "1", "--out-dir",
                                   str(files["root"] / "runs"), "--name", "cg", "--set", "generator=resnet_6blocks",
                                   "--set", "generator_kwargs.ngf=4", "--set", "discriminator_kwargs.ndf=4",
                                   "--set", "load_size=36", "--set", "crop_size=32", "--set", "num_workers=0"])
    assert res.exit_code == 0, res.output
    run = files["root"] / "runs" / "cg"
    for direction, net, n in (("AtoB", "G_A", 3), ("BtoA", "G_B", 3)):
        code, out = invoke(str(run), "--data", str(data), "--direction", direction, "--metrics", "kid",
                           "--feature-weights", str(files["inception"]), "--device", "cpu", "--json")
        assert code == 0, out
        doc = json.loads(out[out.index("{"):])
        assert doc["net"] == net and doc["images"] == n and doc["pairing"] == "unpaired", doc
        assert ("testB -> testA" if direction == "BtoA" else "testA -> testB") in doc["test_set"]
    # --net picks the direction: G_B is B -> A with or without --direction; a contradiction is one line
    for extra, net, want in ((["--net", "G_B"], "G_B", "testB -> testA"), (["--net", "G_A"], "G_A", "testA -> testB"),
                             (["--net", "G_B", "--direction", "BtoA"], "G_B", "testB -> testA")):
        code, out = invoke(str(run), "--data", str(data), *extra, "--metrics", "kid", "--feature-weights",
                           str(files["inception"]), "--device", "cpu", "--json")
        assert code == 0, out
        doc = json.loads(out[out.index("{"):])
        assert doc["net"] == net and want in doc["test_set"], doc
    for net, direction in (("G_B", "AtoB"), ("G_A", "BtoA")):
        code, out = invoke(str(run), "--data", str(data), "--net", net, "--direction", direction, "--metrics", "kid",
                           "--device", "cpu")
        last = out.splitlines()[-1]
        assert code != 0 and "Traceback" not in out and f"--net {net} translates" in last and "drop --direction" in last, out


def test_net_direction_for_every_combination() -> None:
    from i2i_metrics.translate_eval import net_direction

    assert net_direction("cyclegan", "G_B", None) == "BtoA" and net_direction("cyclegan", "G_A", None) == "AtoB"
    assert net_direction("pix2pix", "G", "BtoA") == "BtoA" and net_direction("pix2pix", "G", None) is None
    with pytest.raises(Exception, match="--net G_B translates B -> A"):
        net_direction("cyclegan", "G_B", "AtoB")


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_an_empty_metric_list_is_refused_before_any_work(files: dict[str, Path], value: str) -> None:
    code, out = invoke(str(files["model"]), "--data", str(files["pairs"]), "--metrics", value, "--device", "cpu")
    lines = [line for line in out.splitlines() if line.strip()]
    assert code != 0 and len(lines) == 1 and "names no metric" in lines[0] and "translated" not in out, out


def test_json_and_table_agree_on_references(files: dict[str, Path]) -> None:
    args = [str(files["model"]), "--data", str(files["pairs"]), "--metrics", "psnr", "--device", "cpu"]
    code, out = invoke(*args, "--json")
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    code, table = invoke(*args)
    assert code == 0 and doc["references"] == doc["images"] == 3 and "3 outputs, 3 references" in table, table


def test_a_mistyped_source_is_reported_before_the_data_is_looked_up(tmp_path: Path) -> None:
    code, out = invoke(str(tmp_path / "runs" / "nope"), "--data", "no-such-dataset-xyz", "--device", "cpu")
    assert code != 0 and "Traceback" not in out and "no-such-dataset-xyz" not in out.splitlines()[-1], out


def test_the_feature_weights_used_are_recorded_in_json_and_table(files: dict[str, Path]) -> None:
    from i2i.download import sha256_file

    want = f"{files['inception'].name}, sha256 {sha256_file(files['inception'])[:12]} (not the published "
    args = [str(files["model"]), "--data", str(files["unaligned"]), "--feature-weights", str(files["inception"]),
            "--metrics", "kid", "--device", "cpu", "--max-images", "2"]
    code, out = invoke(*args, "--json")
    assert code == 0, out
    doc = json.loads(out[out.index("{"):])
    assert doc["feature_weights"]["kid"].startswith(want), doc
    code, table = invoke(*args)
    assert code == 0 and table.splitlines()[-1].startswith(f"kid features: {want}"), table


def test_a_published_file_is_named_as_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from i2i_metrics import weights as W

    f = tmp_path / "alexnet-owt-xxxxxxxx.pth"
    f.write_bytes(b"abc")
    monkeypatch.setitem(W.SOURCES, "lpips_alex", W.SOURCES["lpips_alex"].__class__(
        **{**W.SOURCES["lpips_alex"].__dict__, "sha256_prefix": hashlib.sha256(b"abc").hexdigest()[:8]}))
    assert W.describe("lpips_alex", f).startswith("published alexnet-owt-7be5be79.pth, sha256 ")
