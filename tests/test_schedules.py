"""Optimizers and LR schedules from config (i2i/engine/schedule.py): the papers' LRs at their
iterations, each policy's shape, and one-line errors for keys nothing reads."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from i2i.cli import cli
from i2i.config import TrainConfig, build, load_recipe
from i2i.engine.schedule import check, make_optimizer, make_scheduler
from i2i.errors import I2IError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def lrs(cfg: TrainConfig, at: list[int], lr: float | None = None) -> list[float]:
    """The LR a run of ``cfg`` uses at each step (0-based) of ``at``: one scheduler step per lr_unit."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = make_optimizer(cfg, [param], cfg.lr if lr is None else lr)
    sched = make_scheduler(opt, cfg)
    out, t = [], 0
    with warnings.catch_warnings():  # stepping the schedule alone (no gradients) is what is tested here
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        for target in at:
            while t < target:
                sched.step()
                t += 1
            out.append(opt.param_groups[0]["lr"])
    return out


def recipe(name: str):
    from i2i_srgan.method import SRGANConfig

    return build(SRGANConfig, load_recipe(CONFIGS / f"{name}.yaml"), name)


def test_esrgan_recipe_halves_at_the_papers_iterations() -> None:
    """Wang et al. 2018: 1e-4, halved at 50k, 100k, 200k and 300k of 400k iterations."""
    cfg = recipe("esrgan")
    check(cfg)
    assert (cfg.lr_unit, cfg.n_iters + cfg.n_iters_decay) == ("iter", 400_000)
    steps = [0, 49_999, 50_000, 99_999, 100_000, 199_999, 200_000, 299_999, 300_000, 399_999]
    want = [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 2.5e-5, 1.25e-5, 1.25e-5, 6.25e-6, 6.25e-6]
    assert lrs(cfg, steps) == pytest.approx(want, rel=1e-12)


def test_srgan_recipe_is_1e4_then_1e5() -> None:
    """Ledig et al. 2017: 10^5 iterations at 1e-4, then 10^5 at 1e-5."""
    cfg = recipe("srgan")
    check(cfg)
    assert cfg.n_iters + cfg.n_iters_decay == 200_000
    assert lrs(cfg, [0, 99_999, 100_000, 199_999]) == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5], rel=1e-12)


def test_no_sr_recipe_fakes_iterations_with_repeat() -> None:
    for name in ("esrgan", "srgan", "esrgan_psnr", "srresnet"):
        data = load_recipe(CONFIGS / f"{name}.yaml")
        assert "repeat" not in data and data["lr_unit"] == "iter", name


def test_policies_through_torch_schedulers() -> None:
    base = dict(lr=1.0, lr_unit="iter", n_epochs=100, n_epochs_decay=100)
    # the reference's linear rule in iterations: 4 at lr, then 4 decaying by 1/5 each (towards 0)
    linear = build(TrainConfig, overrides={**base, "n_iters": 4, "n_iters_decay": 4})
    assert lrs(linear, list(range(8))) == pytest.approx([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2], abs=1e-12)
    # cosine to 0 over the whole run: half-way at the middle
    cosine = build(TrainConfig, overrides={**base, "n_iters": 10, "lr_policy": "cosine"})
    assert lrs(cosine, [0, 5, 10]) == pytest.approx([1.0, 0.5, 0.0], abs=1e-12)
    # warm-up 4 steps from lr/4, then milestones counted from the run's start (BasicSR's warmup_iter)
    warm = build(TrainConfig, overrides={**base, "n_iters": 12, "lr_policy": "step", "lr_milestones": [6, 9],
                                         "lr_gamma": 0.5, "lr_warmup": 4})
    got = lrs(warm, list(range(11)))
    assert got[0] == pytest.approx(0.25) and got[:4] == sorted(got[:4]) and got[3] < 1.0
    assert got[4:] == pytest.approx([1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    # epochs are unchanged: linear per epoch as the reference
    epochs = build(TrainConfig, overrides={"lr": 1.0, "n_epochs": 2, "n_epochs_decay": 2})
    assert lrs(epochs, [0, 1, 2, 3]) == pytest.approx([1.0, 1.0, 2 / 3, 1 / 3])


def test_optimizers_by_name() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    adamw = make_optimizer(build(TrainConfig, overrides={"optimizer": "adamw"}), p, 1e-3)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["weight_decay"] == 0.01  # torch's own default
    rms = make_optimizer(build(TrainConfig, overrides={"optimizer": "rmsprop", "momentum": 0.5, "weight_decay": 1e-4}), p, 5e-5)
    assert type(rms) is torch.optim.RMSprop and (rms.defaults["momentum"], rms.defaults["weight_decay"]) == (0.5, 1e-4)
    adam = make_optimizer(build(TrainConfig, overrides={"beta1": 0.9}), p, 1e-4)
    assert type(adam) is torch.optim.Adam and adam.defaults["betas"] == (0.9, 0.999) and adam.defaults["fused"]


@pytest.mark.parametrize("overrides, message", [
    ({"optimizer": "rmsprop", "beta1": 0.9}, "beta1=0.9 is not read by optimizer rmsprop"),
    ({"momentum": 0.9}, "momentum=0.9 is not read by optimizer adam"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"lr_milestones": [5]}, "lr_milestones is read only by lr_policy step"),
    ({"lr_policy": "cosine", "lr_gamma": 0.1}, "lr_gamma is read only by lr_policy step"),
    ({"lr_policy": "exp"}, "unknown lr_policy 'exp'"),
    ({"lr_unit": "iter"}, "lr_unit=iter needs n_iters > 0"),
    ({"lr_unit": "iter", "n_iters": 10, "n_epochs": 5}, "n_epochs is not read with lr_unit=iter"),
    ({"n_iters": 10}, "n_iters is not read with lr_unit=epoch"),
    ({"lr_unit": "iters"}, "unknown lr_unit 'iters'"),
    ({"lr_unit": "iter", "n_iters": 10, "lr_warmup": 10}, "lr_warmup=10 is not shorter than the run"),
    ({"lr_unit": "iter", "n_iters": 10, "lr_warmup": 3, "lr_policy": "step", "lr_milestones": [2]},
     "falls inside the warm-up"),
    ({"lr_policy": "step", "lr_milestones": [3, 2]}, "increasing positive"),
])
def test_keys_nothing_reads_are_one_line_errors(overrides: dict, message: str) -> None:
    with pytest.raises(I2IError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check(build(TrainConfig, overrides=overrides))


def test_a_method_config_counts_its_own_defaults() -> None:
    """SRGAN's default beta1 is 0.9: that is its default, not a key set for RMSprop to refuse."""
    from i2i_srgan.method import SRGANConfig

    check(build(SRGANConfig, overrides={"optimizer": "rmsprop"}))


def test_the_cli_says_it_in_one_line_before_reading_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(tmp_path / "nowhere"),
                                      "--set", "optimizer=rmsprop", "--set", "beta1=0.9"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "beta1=0.9 is not read by optimizer rmsprop" in lines[-1], result.output


def test_every_shipped_recipe_passes_the_check() -> None:
    import yaml

    from i2i.registry import methods

    for path in sorted(CONFIGS.glob("*.yaml")):
        cls = methods().get(yaml.safe_load(path.read_text())["method"]).factory.Config
        check(build(cls, load_recipe(path), path.name))


@pytest.mark.parametrize("sets,message", [
    (["lr=-1"], "lr must be in (0, inf)"), (["lr_D=-1"], "lr_D must be in (0, inf)"), (["lr=0"], "lr must be in (0, inf)"),
    (["optimizer=adamw", "weight_decay=-1"], "weight_decay must be >= 0"),
    (["optimizer=rmsprop", "momentum=-1"], "momentum must be >= 0"), (["beta2=2"], "beta2 must be in [0, 1)"),
    (["beta1=nan"], "beta1=nan is not a finite number"), (["r1_gamma=nan"], "r1_gamma=nan is not a finite number"),
    (["r2_gamma=inf"], "r2_gamma=inf is not a finite number"),
    (["feat_match_weight=inf"], "feat_match_weight=inf is not a finite number"),
    (["diversity_threshold=-1"], "diversity_threshold must be >= 0"),
    (["diversity_threshold=nan"], "diversity_threshold=nan is not a finite number"),
    (["diversity_patience=0"], "diversity_patience must be >= 1"),
    (["diffaugment=color,,cutout"], "has an empty item"), (["lambda_l1=-1"], "lambda_l1 must be >= 0"),
    (["gp_weight=inf"], "gp_weight=inf is not a finite number"), (["ema_decay=1"], "ema_decay must be in [0, 1)"),
])
def test_numbers_no_setting_can_use_are_one_line_errors_before_any_data(tmp_path: Path, sets: list[str],
                                                                         message: str) -> None:
    """Every float key is finite and >= 0 (tighter for rates and decays), checked with the config for
    every method (engine.build_method), before the data folder is looked at: never a torch traceback,
    never silently off (r1_gamma=nan failed every ``> 0`` test, so the penalty was off)."""
    args = ["train", "pix2pix", "--data", str(tmp_path / "nowhere")]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert "nowhere" not in errors[0]
