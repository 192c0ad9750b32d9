"""SR training through the CLI on real Set5 crops: PSNR pre-training lowers the L1 loss, GAN
fine-tuning starts from it, and the perceptual loss works offline with a local VGG file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli

SET5 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "sr" / "Set5"
TINY_KW = "{num_feat: 16, num_block: 2, norm: none}"  # as configs/srresnet_tiny.yaml
TINY_G = ["--set", f"generator_kwargs={TINY_KW}", "--set", "crop_size=32", "--set", "num_workers=0",
          "--set", "sample_every=0", "--device", "cpu"]

pytestmark = [pytest.mark.skipif(not SET5.is_dir(), reason="needs ../shared/datasets/sr/Set5"),
              pytest.mark.usefixtures("one_thread")]


def _train(method: str, run_dir: Path, *args: str) -> list[dict]:
    result = CliRunner().invoke(cli, ["train", method, "--data", str(SET5), "--out-dir", str(run_dir.parent),
                                      "--name", run_dir.name, *TINY_G, *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def psnr_run(tmp_path_factory) -> tuple[Path, list[dict]]:
    run = tmp_path_factory.mktemp("sr") / "psnr"
    # the shipped smoke recipe: L1, lr 2e-3, batch 8 of 32x32 HR crops, logs every 10 steps
    logs = _train("srresnet", run, "--config", "srresnet_tiny", "--max-steps", "30")
    return run, logs


def test_srresnet_lowers_l1_on_set5_crops(psnr_run) -> None:
    run, logs = psnr_run
    l1 = [r["G_l1"] for r in logs]
    assert len(l1) == 3 and all(v > 0 for v in l1)
    assert l1[-1] < 0.8 * l1[0], l1  # mean L1 over steps 21-30 well below steps 1-10
    assert (run / "checkpoints" / "final" / "weights.safetensors").is_file()


def _vgg_file(tmp_path: Path) -> tuple[Path, dict]:
    """A tiny local 'VGG19': only the first conv, in torchvision's key layout."""
    gen = torch.Generator().manual_seed(1)
    sd = {"features.0.weight": torch.randn(64, 3, 3, 3, generator=gen) * 0.1, "features.0.bias": torch.zeros(64)}
    path = tmp_path / "vgg19_first_conv.pth"
    torch.save(sd, path)
    return path, sd


def test_gan_fine_tune_starts_from_the_psnr_run(psnr_run, tmp_path: Path) -> None:
    from i2i.checkpoint import generator_state, resolve
    from i2i.config import build
    from i2i.engine import build_method
    from i2i_srgan.method import SRGANConfig
    from safetensors.torch import load_file

    run, _ = psnr_run
    vgg, vgg_sd = _vgg_file(tmp_path)
    keys = {"generator_kwargs": TINY_KW, "init_from": str(run), "perceptual_weights": str(vgg),
            "perceptual_layers": "{relu1_1: 1.0}", "discriminator_kwargs": "{ndf: 8}", "gan_mode": "ragan"}
    # The generator built for fine-tuning holds the PSNR run's final weights, and the perceptual
    # loss the local VGG file's.
    method = build_method("srgan", build(SRGANConfig, overrides=keys))
    trained = generator_state(load_file(str(resolve(run))), "G")
    for k, v in method.nets["G"].state_dict().items():
        torch.testing.assert_close(v, trained[k], rtol=0, atol=0)
    torch.testing.assert_close(method.perceptual.vgg[0].weight, vgg_sd["features.0.weight"])
    # ... and the CLI trains it adversarially (relativistic D, perceptual + GAN losses)
    args = [a for k, v in keys.items() for a in ("--set", f"{k}={v}")]
    logs = _train("srgan", tmp_path / "gan", "--max-steps", "4", "--batch-size", "2", "--set", "log_every=2", *args)
    assert {"D_real", "D_fake", "G_perceptual", "G_gan"} <= set(logs[-1])
    assert all(torch.isfinite(torch.tensor(r["G_gan"])) for r in logs)


def test_init_from_a_different_architecture_is_a_clear_error(psnr_run, tmp_path: Path) -> None:
    run, _ = psnr_run
    result = CliRunner().invoke(cli, ["train", "srgan", "--data", str(SET5), "--out-dir", str(tmp_path), "--max-steps", "1",
                                      "--set", f"init_from={run}", "--set", "perceptual_weight=0", "--device", "cpu"])
    assert result.exit_code != 0
    assert "init_from" in result.output and "generator_kwargs" in result.output
    assert "Traceback" not in result.output


def _offline(monkeypatch, tmp_path: Path) -> None:
    """No network (every connection refused) and an empty torch hub cache."""
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


def test_perceptual_loss_offline_is_a_clear_error_and_a_local_file_works(monkeypatch, tmp_path: Path) -> None:
    from i2i.errors import I2IError
    from i2i_srgan.losses import PerceptualLoss

    _offline(monkeypatch, tmp_path)
    with pytest.raises(I2IError, match="perceptual_weights=FILE"):
        PerceptualLoss({"relu1_1": 1.0})
    result = CliRunner().invoke(cli, ["train", "srgan", "--data", str(SET5), "--out-dir", str(tmp_path), "--max-steps", "1",
                                      *TINY_G])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "VGG19" in result.output and "perceptual_weights=FILE" in result.output
    # one error line (torch.hub's own "Downloading: ..." notice may precede it)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "perceptual_weights=FILE" in errors[0], result.output
    # A local file instead: loads without the network, and the loss is a real feature distance
    vgg, _ = _vgg_file(tmp_path)
    loss = PerceptualLoss({"relu1_1": 1.0}, weights=str(vgg))
    x = torch.rand(1, 3, 16, 16)
    assert float(loss(x, x)) == 0.0 and float(loss(x, torch.rand(1, 3, 16, 16))) > 0
    with pytest.raises(I2IError, match="lack VGG19 layers"):
        PerceptualLoss({"relu2_1": 1.0}, weights=str(vgg))  # the file has no conv1_2 / conv2_1
    with pytest.raises(I2IError, match="does not exist"):
        PerceptualLoss({"relu1_1": 1.0}, weights=str(tmp_path / "missing.pth"))


def test_eval_sr_takes_the_trained_checkpoint(psnr_run) -> None:
    run, _ = psnr_run
    result = CliRunner().invoke(cli, ["eval", "sr", "--data", str(SET5), "--checkpoint", str(run), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    bicubic, ours = doc["models"]
    assert ours["name"] == run.name and len(ours["images"]) == 5
    # 30 steps of a tiny net (no input skip): far from bicubic's 28.4 dB yet (~12 dB; ~23 dB after 200 steps)
    assert all(8 < r["psnr_y"] < 30 and 0 < r["ssim_y"] < 1 for r in ours["images"])
    assert ours["mean"]["psnr_y"] < bicubic["mean"]["psnr_y"]
