"""Validation during training: metrics rows, checkpoints/best by select_by, resume, config errors.

Tiny real runs: unet_128 with 8 filters on 128x128 crops of real facades (tests/tiny_pix2pix.py),
4 training and 3 held-aside (test/) images. The metrics are fake plugins registered inline: a
scripted one returns the next value of a list at each validation, so which checkpoint is best is
known in advance; a recording one keeps what the engine fed it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from click.testing import CliRunner

import i2i
from i2i import plugins
from i2i.checkpoint import LATEST, STATE, WEIGHTS, read_meta
from i2i.errors import I2IError
from tiny_pix2pix import FACADES, TINY, needs_facades, tiny_config

pytestmark = [needs_facades, pytest.mark.usefixtures("one_thread", "fake_metrics")]

#: values the scripted metrics return, one per validation (filled by each test)
SCRIPT: list[float] = []
#: what the recording metric was given: (output, target, mask) per update
SEEN: list[tuple[torch.Tensor, Any, Any]] = []


class _Scripted:
    def __init__(self, device: torch.device | None = None) -> None:
        self.updates = 0

    def update(self, output: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        self.updates += 1

    def compute(self) -> float:
        assert self.updates, "compute before any update"
        return SCRIPT.pop(0)

    def reset(self) -> None:
        self.updates = 0


class _Recording(_Scripted):
    def update(self, output: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        SEEN.append((output.clone(), None if target is None else target.clone(), mask))
        super().update(output, target, mask)

    def compute(self) -> float:
        return float(sum((o - t).abs().mean() for o, t, _ in SEEN[-self.updates:]) / self.updates)


class _Reference(_Scripted):
    """A distribution metric that can keep its reference set: records whether each update had targets."""

    def __init__(self, device: torch.device | None = None, keep_reference: bool = False) -> None:
        super().__init__(device)
        self.keep_reference = keep_reference

    def update(self, output: torch.Tensor, target: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        SEEN.append((output, target is not None, self.keep_reference))
        super().update(output, target, mask)

    def compute(self) -> float:
        return 0.0


class FakeMetrics:
    """A third-party-style metrics plugin, registered on the plugin manager."""

    @i2i.hookimpl
    def register_metrics(self, register: Any) -> None:
        register("scripted_low", _Scripted, kind="paired", higher_is_better=False, description="scripted, lower is better")
        register("scripted_high", _Scripted, kind="paired", higher_is_better=True, description="scripted, higher is better")
        register("recorded_l1", _Recording, kind="paired", higher_is_better=False, description="L1 of what it saw")
        register("scripted_fid", _Scripted, kind="distribution", higher_is_better=False, description="unpaired")
        register("reference_fid", _Reference, kind="distribution", higher_is_better=False, description="keeps reals")


@pytest.fixture
def fake_metrics(clean_plugin_env: None) -> Iterator[None]:
    plugins.manager().pm.register(FakeMetrics(), name="fake_metrics")
    SCRIPT.clear()
    SEEN.clear()
    yield


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 real facades training images in train/ and 3 test images in test/ (the held-aside split)."""
    root = tmp_path_factory.mktemp("facades")
    for split, n in (("train", 4), ("test", 3)):
        (root / split).mkdir()
        for f in sorted((FACADES / split).iterdir())[:n]:
            shutil.copy(f, root / split / f.name)
    return root


def run(data: Path, out: Path, resume_from: Path | None = None, **values: Any) -> Path:
    from i2i.engine import train

    settings = {"max_steps": 5, "val_every": 1, "sample_every": 0, **values}
    return train("pix2pix", tiny_config(TINY, data=data, out_dir=out, name="r", **settings), resume_from)


def val_rows(run_dir: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "val"]


def saved_step(checkpoint: Path) -> int:
    return read_meta(checkpoint / WEIGHTS)["step"]


def saved_best(checkpoint: Path) -> dict[str, Any]:
    return torch.load(checkpoint / STATE, weights_only=True)["validation"]["best"]


@pytest.mark.parametrize("metric, script, best_step", [
    ("scripted_low", [5.0, 3.0, 4.0, 1.0, 2.0], 4),
    ("scripted_high", [1.0, 3.0, 2.0, 5.0, 4.0], 4),
    ("scripted_high", [2.0, 7.0, 7.0, 6.0, float("nan")], 2),  # a tie is no improvement; NaN never is
])
def test_best_follows_a_scripted_metric(data: Path, tmp_path: Path, metric: str, script: list[float],
                                        best_step: int) -> None:
    SCRIPT[:] = script
    run_dir = run(data, tmp_path, select_by=metric, keep_last=1, save_every=1)
    rows = val_rows(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r[f"val/{metric}"] for r in rows] == [None if v != v else v for v in script]  # NaN is null
    assert all(r["val/images"] == 3 and r["val/seconds"] >= 0 for r in rows)
    ckpts = run_dir / "checkpoints"
    assert saved_step(ckpts / "best") == best_step
    assert saved_best(ckpts / "best") == {"metric": metric, "value": script[best_step - 1], "step": best_step}
    # best is not where a resumed run goes on from, and keep_last never prunes it
    assert (ckpts / LATEST).read_text().strip() == "final"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "final", "last", "latest", "step_0000005"]


def test_resume_keeps_the_best_value(data: Path, tmp_path: Path) -> None:
    SCRIPT[:] = [2.0, 1.0, 3.0]
    run_dir = run(data, tmp_path, max_steps=3, select_by="scripted_low")
    assert saved_step(run_dir / "checkpoints" / "best") == 2
    # 1.5 and 1.2 are worse than the 1.0 of step 2: a resumed run that forgot it would call them best
    SCRIPT[:] = [1.5, 1.2]
    run(data, tmp_path, resume_from=run_dir / "checkpoints" / "final", max_steps=5, select_by="scripted_low")
    assert saved_step(run_dir / "checkpoints" / "best") == 2
    assert saved_best(run_dir / "checkpoints" / "final") == {"metric": "scripted_low", "value": 1.0, "step": 2}
    assert [r["step"] for r in val_rows(run_dir)] == [1, 2, 3, 4, 5]
    assert not SCRIPT


def test_the_metrics_see_held_aside_images_in_0_1_from_the_ema_generator(data: Path, tmp_path: Path) -> None:
    from i2i.data import AlignedDataset

    run_dir = run(data, tmp_path, max_steps=2, val_every=2, val_metrics=["recorded_l1"], ema_decay=0.5, batch_size=2)
    assert len(SEEN) == 2  # 3 images in batches of 2
    outputs = torch.cat([o for o, _, _ in SEEN])
    targets = torch.cat([t for _, t, _ in SEEN])
    assert outputs.shape == targets.shape == (3, 3, 128, 128)
    assert 0 <= float(outputs.min()) and float(outputs.max()) <= 1
    held_aside = AlignedDataset(data, phase="test", load_size=128, crop_size=128, train=False)
    expected = torch.stack([(held_aside[i]["B"] + 1) / 2 for i in range(3)])
    assert torch.allclose(targets, expected, atol=1e-6)  # the test split's targets, no random crop or flip
    # the EMA generator's outputs, in eval mode (as `i2i translate` runs the checkpoint)
    generator = i2i.load(run_dir / "checkpoints" / "final")
    first = generator.module(held_aside[0]["A"][None])
    assert torch.allclose(outputs[0], ((first[0] + 1) / 2).clamp(0, 1), atol=1e-5)
    assert (run_dir / "samples" / "val_step_0000002.png").is_file()  # the fixed validation images, sampled


def test_real_images_are_fed_once_to_a_metric_that_keeps_its_reference_set(data: Path, tmp_path: Path) -> None:
    SCRIPT[:] = [3.0, 2.0, 1.0]
    run(data, tmp_path, max_steps=3, val_metrics=["reference_fid", "scripted_low"], select_by="scripted_low")
    seen = [(has_target, keeps) for _, has_target, keeps in SEEN]
    assert seen == [(True, True)] * 3 + [(False, True)] * 6  # 3 images, batch 1; the reals at validation 1 only


def test_validation_leaves_training_unchanged(data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    off = run(data, tmp_path / "off", max_steps=3, val_every=0)
    SCRIPT[:] = [1.0, 2.0, 3.0]
    on = run(data, tmp_path / "on", max_steps=3, select_by="scripted_high")
    a = load_file(str(off / "checkpoints" / "final" / WEIGHTS))
    b = load_file(str(on / "checkpoints" / "final" / WEIGHTS))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("settings, message", [
    (["val_every=2", "select_by=fdi"], "unknown metric 'fdi'"),
    (["val_every=2", "val_metrics=scripted_high", "select_by=scripted_low"],
     "select_by=scripted_low is not among val_metrics (scripted_high): add it, --set val_metrics=scripted_high,scripted_low"),
    (["select_by=scripted_low"], "select_by=scripted_low needs validation, which is off: --set val_every=N"),
    (["val_every=-1"], "val_every must be >= 0"),
    (["val_every=2", "val_images=0"], "val_images must be >= 1"),
])
def test_bad_validation_settings_are_one_line_errors_before_any_data_is_read(tmp_path: Path, settings: list[str],
                                                                             message: str) -> None:
    from i2i.cli import cli

    args = ["train", "pix2pix", "--data", str(tmp_path / "no-such-folder"), "--out-dir", str(tmp_path)]
    for item in [*TINY, *settings]:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    error = result.output.strip().splitlines()[-1]  # after the line naming the recipe
    assert error.startswith("Error: ") and message in error, result.output


def test_unpaired_cyclegan_refuses_a_paired_metric_and_takes_a_distribution_one() -> None:
    from i2i.config import build
    from i2i.engine.trainer import build_method
    from i2i.engine.validation import check_config
    from i2i_cyclegan.method import CycleGANConfig

    def check(**values: Any) -> list[str]:
        cfg = build(CycleGANConfig, overrides={"generator": "resnet_6blocks", "generator_kwargs": {"ngf": 8},
                                               "crop_size": 32, "val_every": 1, **values})
        return check_config(cfg, build_method("cyclegan", cfg))

    with pytest.raises(I2IError, match="^val_metrics: scripted_low is a paired metric, which cyclegan's validation cannot feed"):
        check(val_metrics=["scripted_low"])
    with pytest.raises(I2IError, match="^select_by: scripted_low is a paired metric"):  # the setting the user gave
        check(select_by="scripted_low")
    assert check(select_by="scripted_fid") == ["scripted_fid"]


def test_no_held_aside_split_says_to_give_val_data(tmp_path: Path) -> None:
    root = tmp_path / "only-train"
    (root / "train").mkdir(parents=True)
    for f in sorted((FACADES / "train").iterdir())[:2]:
        shutil.copy(f, root / "train" / f.name)
    with pytest.raises(I2IError, match=r"no held-aside images to validate on in .* --set val_data=FOLDER"):
        run(root, tmp_path, max_steps=1, select_by="scripted_low")


SHARED = FACADES.parent


def _method(name: str, **overrides: Any):
    """A method with its tiny conformance networks (and ``overrides``), built as the trainer builds it."""
    from i2i.config import build
    from i2i.engine.trainer import build_method
    from i2i.registry import methods

    cls = methods().get(name).factory
    return build_method(name, build(cls.Config, overrides={**cls.conformance_config(), **overrides}))


def _first_batch(method: Any, dataset: Any, n: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader, Subset

    return method.to_device(next(iter(DataLoader(Subset(dataset, range(n)), batch_size=n))))


def _check_unit(*images: torch.Tensor) -> None:
    for x in images:
        assert x.dtype == torch.float32 and x.shape[1] == 3 and 0 <= float(x.min()) and float(x.max()) <= 1


@pytest.mark.skipif(not (SHARED / "monet2photo").is_dir(), reason="../shared/datasets/monet2photo not present")
def test_cyclegan_validates_translations_against_real_b_images_of_val_data() -> None:
    method = _method("cyclegan", val_every=1)
    data = method.validation_dataset(str(SHARED / "monet2photo"), explicit=True)  # monet/ and photo/
    batch = _first_batch(method, data, 2)
    with torch.no_grad():
        output, target, mask = method.validation_batch(batch)
    _check_unit(output, target)
    assert output.shape == target.shape == (2, 3, 32, 32) and mask is None
    assert torch.allclose(target, (batch["B"] + 1) / 2)  # real photos: the reference set
    with pytest.raises(I2IError, match="no held-aside images to validate on"):
        method.validation_dataset(str(SHARED / "monet2photo"), explicit=False)


@pytest.mark.skipif(not (SHARED / "sr" / "Set5").is_dir(), reason="../shared/datasets/sr/Set5 not present")
def test_sr_validates_whole_set5_images_and_crops_the_border_by_the_scale() -> None:
    method = _method("srresnet")
    assert method.validation_metric_kwargs("psnr_y") == {"crop_border": method.cfg.scale}
    assert method.validation_batch_size == 1
    with pytest.raises(I2IError, match="--set val_data=FOLDER"):
        method.validation_dataset(str(SHARED / "sr" / "Set5"), explicit=False)
    data = method.validation_dataset(str(SHARED / "sr" / "Set5"), explicit=True)
    assert len(data) == 5
    batch = _first_batch(method, data, 1)
    with torch.no_grad():
        output, target, mask = method.validation_batch(batch)
    _check_unit(output, target)
    assert output.shape == target.shape == batch["hr"].shape and mask is None  # the whole (modcropped) image


@pytest.mark.skipif(not (SHARED / "inpaint" / "celeba_hq").is_dir(), reason="../shared/datasets/inpaint not present")
def test_inpaint_validates_its_holdout_with_fixed_masks() -> None:
    method = _method("inpaint")
    data = method.validation_dataset(str(SHARED / "inpaint" / "celeba_hq"), explicit=False)
    assert len(data) == method.cfg.holdout
    first = _first_batch(method, data, 2)
    again = _first_batch(method, method.validation_dataset(str(SHARED / "inpaint" / "celeba_hq"), explicit=False), 2)
    assert torch.equal(first["mask"], again["mask"])  # the eval masks are seeded: every validation the same holes
    with torch.no_grad():
        output, target, mask = method.validation_batch(first)
    _check_unit(output, target)
    assert mask is not None and mask.shape == (2, 1, *output.shape[-2:]) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert "masked" in method.validation_kinds


def test_a_distribution_metric_on_one_image_is_refused_before_training(data: Path, tmp_path: Path) -> None:
    with pytest.raises(I2IError, match=r"scripted_fid compares two sets of images and needs at least 2 validation "
                                       r"images; found 1 \(val_images=1"):
        run(data, tmp_path, val_images=1, val_metrics=["scripted_fid"])
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_an_infinity_in_the_good_direction_is_the_best_possible_and_nan_never_is() -> None:
    from i2i.engine.validation import Best

    high = Best("psnr", True, value=40.0, step=1)
    assert high.improves(float("inf")) and not high.improves(float("-inf")) and not high.improves(float("nan"))
    assert Best("psnr", True).improves(float("inf"))
    high.value = float("inf")
    assert not high.improves(float("inf")) and not high.improves(99.0)  # a tie with +inf is no improvement
    low = Best("fid", False, value=3.0, step=1)
    assert low.improves(float("-inf")) and not low.improves(float("inf")) and not low.improves(float("nan"))


def test_resuming_with_another_select_by_keeps_the_old_best(data: Path, tmp_path: Path) -> None:
    """A different select_by on --resume is refused in one line while checkpoints/best (kept by the old
    metric) is there; moved away, the run goes on and starts a new best by the new metric."""
    SCRIPT[:] = [2.0, 1.0]
    run_dir = run(data, tmp_path, max_steps=2, select_by="scripted_low")
    best = run_dir / "checkpoints" / "best"
    before = (best / WEIGHTS).read_bytes()
    SCRIPT[:] = [5.0]
    with pytest.raises(I2IError, match=r"was kept by select_by=scripted_low \(1 at step 2\); resuming with "
                                       r"select_by=scripted_high would overwrite it: .*move .* away first") as err:
        run(data, tmp_path, resume_from=run_dir / "checkpoints" / "final", max_steps=3, select_by="scripted_high")
    assert "\n" not in str(err.value) and (best / WEIGHTS).read_bytes() == before
    best.rename(tmp_path / "old_best")
    run(data, tmp_path, resume_from=run_dir / "checkpoints" / "final", max_steps=3, select_by="scripted_high")
    assert saved_best(best) == {"metric": "scripted_high", "value": 5.0, "step": 3}


def test_pix2pix_refuses_val_data_of_single_images(data: Path, tmp_path: Path) -> None:
    """Set5 (single images) is not A|B pairs: one line before training, not PSNR of half against half."""
    set5 = FACADES.parent / "sr" / "Set5"
    if not set5.is_dir():
        pytest.skip("../shared/datasets/sr/Set5 not present")
    with pytest.raises(I2IError, match=r"^val_data: .*Set5 holds single images \(.* is \d+x\d+\), not A\|B side-by-side "
                                       r"pairs .* or A/ and B/ folders") as err:
        run(data, tmp_path, val_data=str(set5), val_metrics=["psnr"])
    assert "\n" not in str(err.value) and not (tmp_path / "r" / "checkpoints").exists()


def test_training_takes_feature_weights_by_setting_and_its_messages_name_it(
        data: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, training's message names what `i2i train` takes (--set fid_weights=FILE or the variable),
    never eval's --feature-weights; with fid_weights set, FID validates from that file."""
    from i2i_metrics.distribution import random_inception_file

    monkeypatch.setenv("I2I_OFFLINE", "1")
    monkeypatch.delenv("I2I_FID_WEIGHTS", raising=False)
    with pytest.raises(I2IError) as err:
        run(data, tmp_path, max_steps=1, select_by="fid")
    text = str(err.value)
    assert "pass --set fid_weights=FILE or set I2I_FID_WEIGHTS=FILE" in text and "--feature-weights" not in text, text
    weights = random_inception_file(tmp_path_factory.getbasetemp())
    run_dir = run(data, tmp_path, max_steps=1, select_by="fid", fid_weights=str(weights))
    assert val_rows(run_dir)[0]["val/fid"] >= 0
    with pytest.raises(I2IError, match=r"from fid_weights\) is not a file; .*pass --set fid_weights=FILE"):
        run(data, tmp_path / "b", max_steps=1, select_by="fid", fid_weights=str(tmp_path / "nope.pth"))
