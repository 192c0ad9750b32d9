"""CycleGAN: reference layout, image pool, exact resume with the pool, and a short real training run
on monet2photo through the CLI that lowers the cycle loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from i2i.cli import cli
from i2i.config import build, parse_overrides
from i2i.engine import train
from i2i.errors import I2IError
from i2i.registry import create_generator

SHARED = Path(__file__).resolve().parents[2] / "shared"
MONET = SHARED / "datasets" / "monet2photo"
LAYOUT = SHARED / "weights" / "key_layouts" / "cyclegan_resnet_9blocks_instancenorm.json"
needs_monet = pytest.mark.skipif(not MONET.is_dir(), reason="../shared/datasets/monet2photo not present")

TINY = ["generator=resnet_6blocks", "generator_kwargs.ngf=8", "discriminator_kwargs.ndf=8", "load_size=36",
        "crop_size=32", "num_workers=0", "log_every=1"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_resnet_9blocks_matches_the_official_key_layout() -> None:
    layout = json.loads(LAYOUT.read_text())["keys"] if LAYOUT.is_file() else None
    if layout is None:
        pytest.skip("key layout not present")
    sd = create_generator("resnet_9blocks").state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == layout


def test_affine_and_dropout_variants_keep_reference_indices() -> None:
    sd = create_generator("resnet_6blocks", ngf=8, norm="instance_affine", use_dropout=True).state_dict()
    assert "model.2.weight" in sd and sd["model.10.conv_block.6.weight"].ndim == 4  # dropout at index 4
    with pytest.raises(I2IError, match="unknown norm"):
        create_generator("resnet_6blocks", norm="group")


def test_image_pool_fills_then_swaps_and_restores_exactly() -> None:
    from i2i_cyclegan.pool import ImagePool

    pool = ImagePool(3, seed=7)
    batches = [torch.full((2, 1, 2, 2), float(i)) for i in range(12)]
    first = [pool.query(b) for b in batches[:2]]
    assert torch.equal(first[0], batches[0]) and len(pool) == 3  # filling: returned unchanged
    state = pool.state_dict()
    rest = [pool.query(b) for b in batches[2:]]
    returned = torch.cat(rest).flatten(1)[:, 0]
    assert (returned < torch.tensor([float(i) for i in range(2, 12) for _ in range(2)])).any(), "pool never swapped"
    again = ImagePool(3, seed=0)
    again.load_state_dict(state)
    assert all(torch.equal(a, again.query(b)) for a, b in zip(rest, batches[2:]))
    assert torch.equal(ImagePool(0).query(batches[5]), batches[5])


@pytest.fixture
def small_monet(tmp_path: Path) -> Path:
    """5 real Monet paintings and 3 real photos (unaligned, different sizes): an epoch is 5 steps."""
    for sub, n in (("monet", 5), ("photo", 3)):
        dest = tmp_path / "m2p" / sub
        dest.mkdir(parents=True)
        for f in sorted((MONET / sub).iterdir())[:n]:
            shutil.copy(f, dest / f.name)
    return tmp_path / "m2p"


def cfg(tmp_path: Path, data: Path, **overrides):
    from i2i_cyclegan.method import CycleGANConfig

    values = parse_overrides(TINY + ["n_epochs=1", "n_epochs_decay=1", "pool_size=2"])
    values.update({"data": str(data), "out_dir": str(tmp_path / "runs"), "name": "t", **overrides})
    return build(CycleGANConfig, overrides=values)


@needs_monet
def test_resume_with_image_pool_is_bitwise_exact(tmp_path: Path, small_monet: Path, monkeypatch) -> None:
    full = train("cyclegan", cfg(tmp_path, small_monet, name="full", max_steps=8))
    part = train("cyclegan", cfg(tmp_path, small_monet, name="part", max_steps=4))
    state = torch.load(part / "checkpoints" / "final" / "state.pt", weights_only=True)
    assert state["extra"]["pool_B"]["images"].shape == (2, 3, 32, 32)  # the pool is in the checkpoint
    resumed = train("cyclegan", cfg(tmp_path, small_monet, name="part", max_steps=8),
                    resume_from=part / "checkpoints" / "final")
    a = load_file(str(full / "checkpoints" / "final" / "weights.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "final" / "weights.safetensors"))
    assert {k.split(".")[0] for k in a} == {"G_A", "G_B", "D_A", "D_B"}
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"

    # without the saved pool, the same resume goes elsewhere: the pool state is what made it exact
    from i2i_cyclegan.method import CycleGAN

    monkeypatch.setattr(CycleGAN, "load_extra_state", lambda self, s: None)
    part2 = train("cyclegan", cfg(tmp_path, small_monet, name="part2", max_steps=4))
    lost = train("cyclegan", cfg(tmp_path, small_monet, name="part2", max_steps=8), resume_from=part2 / "checkpoints" / "final")
    c = load_file(str(lost / "checkpoints" / "final" / "weights.safetensors"))
    assert any(not torch.equal(a[k], c[k]) for k in a if k.startswith("D_"))


@needs_monet
def test_train_monet2photo_via_cli_lowers_cycle_loss(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("I2I_DATA_DIR", str(SHARED / "datasets"))
    args = ["train", "cyclegan", "--data", "monet2photo", "--max-steps", "40", "--out-dir", str(tmp_path), "--name", "m2p"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    run = tmp_path / "m2p"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 41))
    assert {"D_A", "D_B", "G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B"} <= records[0].keys()
    cycle = [r["cycle_A"] + r["cycle_B"] for r in records]
    early, late = sum(cycle[:10]) / 10, sum(cycle[-10:]) / 10
    assert late < 0.9 * early, f"cycle loss did not drop: first 10 steps {early:.3f}, last 10 {late:.3f}"
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())  # the shipped recipe under the --set flags
    assert (saved["method"], saved["gan_loss"], saved["lambda_A"], saved["pool_size"]) == ("cyclegan", "lsgan", 10.0, 50)
    # the main generator is G_A (A = monet -> B = photo); --net G_B goes the other way
    from i2i.loader import load

    module, gmeta = (g := load(run, device='cpu')).module, g.meta
    assert (gmeta.net, gmeta.name, gmeta.method, gmeta.kwargs["ngf"]) == ("G_A", "resnet_6blocks", "cyclegan", 8)
    out = tmp_path / "translated"
    photo = sorted((MONET / "monet").iterdir())[0]
    result = CliRunner().invoke(cli, ["translate", str(photo), "--checkpoint", str(run), "--out", str(out), "--net", "G_B"])
    assert result.exit_code == 0, result.output
    assert (out / f"{photo.stem}.png").is_file()
