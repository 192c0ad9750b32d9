"""The GAN stabilisers (docs/stabilisers.md): each one's maths, each one in every method, and a tiny
real run with each switched on through ``i2i train ... --set key=value``.

Switches: real_label (one-sided label smoothing), d_spectral_norm, feat_match_weight, r1_gamma /
r2_gamma, diffaugment; the relativistic average loss (ragan) as a plugin loss of i2i_losses.
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

import i2i
from i2i import plugins
from i2i.cli import cli
from i2i.config import build
from i2i.engine.augment import DiffAugment
from i2i.engine.stabilisers import feature_matching, spectral_normalise
from i2i.engine.trainer import build_method
from i2i.errors import I2IError
from i2i.method import Adversarial
from i2i.plugins import BUILTIN_PLUGINS, PluginHost
from i2i.registry import discriminators, losses, methods

pytestmark = pytest.mark.usefixtures("one_thread")

FACADES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "facades"
HORSES = FACADES.parent / "horses"
EVERY_METHOD = ["pix2pix", "cyclegan", "srgan", "inpaint"]


def _method(name: str, **overrides: Any) -> Any:
    cls = methods().get(name).factory
    return build_method(name, build(cls.Config, overrides={**cls.conformance_config(), **overrides}))


def _tiny_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Conv2d(4, 1, 3))


# --------------------------------------------------------------------------- label smoothing


@pytest.mark.parametrize("name, criterion", [("vanilla", F.binary_cross_entropy_with_logits), ("lsgan", F.mse_loss)])
def test_label_smoothing_is_one_sided(name: str, criterion: Callable[..., torch.Tensor]) -> None:
    """The discriminator aims at 0.9 for reals and 0.0 for fakes; the generator still aims at 1.0."""
    adv = Adversarial(name, real_label=0.9)
    real, fake = torch.randn(2, 1, 5, 5), torch.randn(2, 1, 5, 5)
    identity = nn.Identity()  # the logits are the inputs: the targets can be read off exactly
    terms = adv.discriminator_terms(identity, real, fake)
    assert torch.allclose(terms["real"], criterion(real, torch.full_like(real, 0.9)))
    assert torch.allclose(terms["fake"], criterion(fake, torch.zeros_like(fake)))
    assert torch.allclose(adv.generator_terms(identity, fake)["gan"], criterion(fake, torch.ones_like(fake)))
    assert not torch.allclose(terms["real"], criterion(real, torch.ones_like(real)))


@pytest.mark.parametrize("method, key", [("pix2pix", "gan_loss"), ("cyclegan", "gan_loss"), ("srgan", "gan_mode"),
                                         ("inpaint", "gan_mode")])
def test_every_method_reads_real_label_and_refuses_it_where_it_means_nothing(method: str, key: str) -> None:
    assert _method(method, real_label=0.9, **{key: "lsgan"}).adversarial.loss.real_label == 0.9
    for loss, extra in (("hinge", {}), ("wgan-gp", {"gp_weight": 10.0}), ("ragan", {})):
        with pytest.raises(I2IError, match=f"real_label=0.9 does nothing with {key}={loss}") as err:
            _method(method, real_label=0.9, **{key: loss}, **extra)
        assert "\n" not in str(err.value)
    with pytest.raises(I2IError, match=r"real_label must be in \(0, 1\]"):
        _method(method, real_label=1.5, **{key: "lsgan"})


# --------------------------------------------------------------------------- R1 / R2


def _autograd_sq_norms(D: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """||grad_x sum_p D_p(x_i)||^2 / P per sample (P logits per image), one sample at a time."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].clone().requires_grad_(True)
        logits = D(xi)
        (g,) = torch.autograd.grad(logits.sum(), xi)
        out.append(g.pow(2).sum() / logits.numel())
    return torch.stack(out)


def test_r1_and_r2_are_half_gamma_times_the_autograd_gradient_norm() -> None:
    D = _tiny_d()
    real, fake = torch.randn(3, 3, 8, 8), torch.randn(3, 3, 8, 8)
    adv = Adversarial("lsgan", r1_gamma=2.0, r2_gamma=4.0)
    terms = adv.discriminator_terms(D, real, fake)
    assert torch.allclose(terms["r1"], 0.5 * 2.0 * _autograd_sq_norms(D, real).mean(), rtol=1e-5)
    assert torch.allclose(terms["r2"], 0.5 * 4.0 * _autograd_sq_norms(D, fake).mean(), rtol=1e-5)
    # a penalty trains the discriminator: it is differentiable in D's weights (create_graph)
    terms["r1"].backward()
    assert D[0].weight.grad is not None and D[0].weight.grad.abs().sum() > 0
    # in fp32 even under autocast
    D.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = adv.discriminator_terms(D, real, fake)
    assert under["r1"].dtype == torch.float32 and torch.allclose(under["r1"], terms["r1"], rtol=1e-5)


# --------------------------------------------------------------------------- DiffAugment


def test_diffaugment_is_differentiable() -> None:
    aug = DiffAugment("color,translation,cutout")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def one_draw(t: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(3)  # the same draw at every call gradcheck makes
        return aug(t)

    assert torch.autograd.gradcheck(one_draw, (x,))
    # and the generator's gradient reaches its output through D(augment(fake)) in the G step
    fake = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    adv = Adversarial("lsgan", diffaugment="color,translation,cutout")
    adv.generator_terms(_tiny_d(), fake)["gan"].backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


class Recorder(nn.Module):
    """A discriminator that keeps what it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.conv = nn.Conv2d(3, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.conv(x)


def test_diffaugment_treats_reals_and_fakes_alike_in_both_steps() -> None:
    """The reference (DiffAugment_pytorch.py) calls ``D(DiffAugment(x, policy))`` for reals and for
    fakes: the same ops from the same distributions, each call with its own per-sample draws."""
    adv = Adversarial("ragan", diffaugment="color,translation,cutout")  # ragan: D sees reals in the G step too
    real, fake = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    for step in ("D", "G"):
        D = Recorder()
        torch.manual_seed(7)
        if step == "D":
            adv.discriminator_terms(D, real, fake)
            order = (real, fake)
        else:
            adv.generator_terms(D, fake, real)
            order = (fake, real)
        torch.manual_seed(7)
        expected = [adv.augment(x) for x in order]  # type: ignore[misc]
        assert len(D.seen) == 2
        for seen, want, raw in zip(D.seen, expected, order):
            assert torch.equal(seen, want) and not torch.equal(seen, raw)
            assert (seen == 0).flatten(1).sum(1).min() >= 64 * 3  # each image has its 8x8 cutout
    # pair(): one draw for both (feature matching compares position by position)
    a, b = adv.augment.pair(real, real)  # type: ignore[union-attr]
    assert torch.equal(a, b)


def test_diffaugment_ops_are_the_references() -> None:
    torch.manual_seed(0)
    # colour on a grey constant image: saturation and contrast leave it, brightness adds U(-0.5, 0.5)
    y = DiffAugment("color")(torch.full((64, 3, 8, 8), 0.2))
    shift = y[:, :1, :1, :1] - 0.2
    assert torch.allclose(y, 0.2 + shift.expand_as(y), atol=1e-6)
    assert shift.min() >= -0.5 and shift.max() <= 0.5 and shift.std() > 0.2  # U(-0.5, 0.5): std 0.29
    # translation: whole-pixel shifts of up to 1/8 of the side, zero padding
    x = torch.rand(6, 3, 32, 32)
    y = DiffAugment("translation")(x)
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(6):
        hits = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                if torch.equal(padded[i, :, 4 - dy : 36 - dy, 4 - dx : 36 - dx], y[i])]
        assert len(hits) == 1
    # cutout: one square of half the side set to zero
    y = DiffAugment("cutout")(torch.ones(6, 3, 32, 32))
    assert ((y == 0).sum(dim=(1, 2, 3)) == 16 * 16 * 3).all()
    # images in [0, 1] get the same ops: mid-grey (0.5) padding and cutout, half the brightness shift
    grey = torch.full((16, 3, 32, 32), 0.5)
    assert torch.equal(DiffAugment("translation,cutout", value_range=(0.0, 1.0))(grey), grey)
    y = DiffAugment("color", value_range=(0.0, 1.0))(grey)
    assert y.min() >= 0.25 - 1e-6 and y.max() <= 0.75 + 1e-6 and y.std() > 0.05
    # a layout keeps masks out of the colour ops: (image of 3 channels, 1 mask channel)
    x = torch.cat([torch.rand(4, 3, 8, 8), (torch.rand(4, 1, 8, 8) > 0.5).float()], 1)
    y = DiffAugment("color")(x, (3, -1))
    assert torch.equal(y[:, 3], x[:, 3]) and not torch.equal(y[:, :3], x[:, :3])


def test_an_unknown_policy_is_one_line() -> None:
    with pytest.raises(I2IError, match=r"diffaugment='colour,cutout': unknown policy 'colour' \(did you mean: color"):
        _method("pix2pix", diffaugment="colour,cutout")


# --------------------------------------------------------------------------- spectral norm


def test_spectral_norm_bounds_every_discriminator_layer_at_one() -> None:
    torch.manual_seed(0)
    m = _method("pix2pix", d_spectral_norm=True)
    D = m.nets["D"].train()
    convs = [c for c in D.modules() if isinstance(c, nn.Conv2d)]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    with torch.no_grad():
        D(torch.randn(1, 6, 24, 24))  # training forwards run the power iteration ...
        for c in convs:
            for _ in range(300):  # ... once per weight computation: a few hundred, without the convolutions
                c.weight
        D.eval()  # eval: the weight normalised by the estimate as it stands, no further iteration
        for c in convs:
            sigma = float(torch.linalg.matrix_norm(c.weight.flatten(1), ord=2))
            assert 1.0 - 1e-4 <= sigma < 1.0 + 1e-2  # the estimate approaches sigma from below
    # sn_patch has it already: not added twice
    sn = _method("inpaint").nets["D"]
    assert spectral_normalise(sn) == 0
    assert all(len(c.parametrizations.weight) == 1 for c in sn.modules() if isinstance(c, nn.Conv2d))


# --------------------------------------------------------------------------- feature matching


def test_feature_matching_is_pix2pixhds_l1_over_the_features() -> None:
    m = _method("pix2pix", feat_match_weight=10.0)
    D = m.nets["D"]
    fake = (torch.rand(2, 6, 32, 32) * 2 - 1).requires_grad_(True)
    real = torch.rand(2, 6, 32, 32) * 2 - 1
    torch.manual_seed(0)
    terms = m.adversarial.generator_terms(D, fake, real)
    torch.manual_seed(0)
    _, ff = D(fake, features=True)
    _, rf = D(real, features=True)
    assert len(ff) == 4  # the 70x70 PatchGAN: four LeakyReLUs before the output conv
    want = 10.0 * 4 / len(ff) * sum(F.l1_loss(f, r) for f, r in zip(ff, rf))
    assert torch.allclose(terms["feat"], want, rtol=1e-5)
    # unpaired (CycleGAN): statistics, the per-channel means over batch and positions
    stats = feature_matching(ff, rf, paired=False)
    assert torch.allclose(stats, 4 / len(ff) * sum(F.l1_loss(f.mean((0, 2, 3)), r.mean((0, 2, 3))) for f, r in zip(ff, rf)))
    assert _method("cyclegan", feat_match_weight=1.0).adversarial.paired is False


@pytest.mark.parametrize("name", [s.name for s in discriminators().list() if s.features])
def test_a_discriminator_that_declares_features_returns_them(name: str) -> None:
    """``features=True``: the same logits as a plain call, and a non-empty list of 4-D maps that
    depend on the input (what feature matching back-propagates through)."""
    spec = discriminators().get(name)
    torch.manual_seed(0)
    net = spec.factory(**spec.test_kwargs).eval()
    x = (torch.rand(2, spec.test_in_channels, spec.test_size, spec.test_size) * 2 - 1).requires_grad_(True)
    logits, feats = net(x, features=True)
    assert torch.equal(logits, net(x)) and feats and all(f.dim() == 4 and f.shape[0] == 2 for f in feats)
    sum(f.abs().mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.fixture
def with_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    def install(**hooks: Callable[..., Any]) -> None:
        mod = types.ModuleType("i2i_fake_stabilisers")
        for attr, fn in hooks.items():
            setattr(mod, attr, i2i.hookimpl(fn))
        monkeypatch.setitem(sys.modules, "i2i_fake_stabilisers", mod)
        monkeypatch.setattr(plugins, "_host", PluginHost({**BUILTIN_PLUGINS, "fake": "i2i_fake_stabilisers"},
                                                         entry_points=False))
    yield install
    plugins.reset()


class PlainD(nn.Module):
    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 1, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_feature_matching_is_refused_for_a_discriminator_without_features(with_plugin: Callable[..., None]) -> None:
    with_plugin(register_discriminators=lambda register: register("plain_d", PlainD))
    assert _method("pix2pix", discriminator="plain_d", discriminator_kwargs={}).nets["D"]  # fine without
    with pytest.raises(I2IError, match="feat_match_weight=10.0 needs a discriminator that returns its features; "
                                       "plain_d does not; ones that do: .*patch_70"):
        _method("pix2pix", discriminator="plain_d", discriminator_kwargs={}, feat_match_weight=10.0)


# --------------------------------------------------------------------------- every method, ragan, no-D methods


@pytest.mark.parametrize("method", EVERY_METHOD)
def test_every_method_gets_every_stabiliser(method: str) -> None:
    key = "gan_mode" if method in ("srgan", "inpaint") else "gan_loss"
    # inpaint's sn_patch is spectrally normalised already: d_spectral_norm there is refused (test below)
    m = _method(method, real_label=0.9, d_spectral_norm=method != "inpaint", feat_match_weight=10.0, r1_gamma=1.0, r2_gamma=1.0,
                diffaugment="color,translation,cutout", **{key: "lsgan"})
    torch.manual_seed(0)
    batch = m.example_batch(2)
    out = m.forward(batch)
    d_losses, g_losses = m.discriminator_loss(batch, out), m.generator_loss(batch, out)
    prefixes = m.discriminator_nets if method == "cyclegan" else ["D"]
    for p in prefixes:
        assert d_losses[f"{p}_r1"] > 0 and d_losses[f"{p}_r2"] > 0
    assert [k for k in g_losses if k.endswith("feat")] and all(torch.isfinite(v) for v in g_losses.values())
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight")
               for n in m.discriminator_nets for c in m.nets[n].modules() if isinstance(c, nn.Conv2d))
    assert m.adversarial.augment is not None and m.adversarial.loss.real_label == 0.9


def test_ragan_is_an_ordinary_loss_plugin_and_its_old_name_still_imports() -> None:
    from i2i_losses.gan import RelativisticAverageLoss
    from i2i_srgan.losses import RelativisticAverageLoss as old

    spec = losses().get("ragan")
    assert spec.plugin == "i2i_losses" and spec.needs_reference and spec.factory is RelativisticAverageLoss
    assert old is RelativisticAverageLoss
    assert losses().get("i2i_losses:ragan") is spec


def test_gradient_penalties_are_refused_with_torch_compile() -> None:
    """torch.compile has no double backward (measured: a RuntimeError at the first D step): one line first."""
    for settings in ({"r1_gamma": 1.0}, {"r2_gamma": 0.5}, {"gan_loss": "wgan-gp", "gp_weight": 10.0}):
        with pytest.raises(I2IError, match="needs a double backward through the discriminator, which torch.compile"):
            _method("pix2pix", compile=True, **settings)
    assert _method("pix2pix", compile=True, d_spectral_norm=True).adversarial  # the others are fine


def test_stabilisers_are_refused_where_there_is_no_discriminator() -> None:
    with pytest.raises(I2IError, match="r1_gamma=1.0 would do nothing: srresnet has no discriminator"):
        _method("srresnet", r1_gamma=1.0)
    with pytest.raises(I2IError, match="diffaugment='color' would do nothing: gan_weight is 0"):
        _method("inpaint", gan_weight=0, discriminator_kwargs={}, diffaugment="color")


# --------------------------------------------------------------------------- tiny real runs, as a user


def _train(tmp_path: Path, method: str, name: str, *settings: str, max_steps: int = 2, resume: bool = False) -> list[dict]:
    if method == "pix2pix":
        data = ["--data", str(FACADES), "--set", "direction=BtoA", "--set", "generator=resnet_6blocks"]
    else:  # horses in both domains: real images, nothing copied
        data = ["--data", str(HORSES), "--set", f"a_dir={HORSES}", "--set", f"b_dir={HORSES}",
                "--set", "generator=resnet_6blocks"]
    args = ["train", method, *data, "--out-dir", str(tmp_path), "--name", name, "--max-steps", str(max_steps),
            "--set", "generator_kwargs.ngf=4", "--set", "discriminator_kwargs.ndf=4", "--set", "crop_size=32",
            "--set", "load_size=36", "--set", "num_workers=0", "--set", "log_every=1", "--set", "sample_every=0",
            "--set", "save_every_minutes=0", "--set", "threads=1", *[a for s in settings for a in ("--set", s)]]
    if resume:
        args.append("--resume")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.skipif(not FACADES.is_dir() or not HORSES.is_dir(), reason="needs ../shared/datasets/facades and horses")
@pytest.mark.parametrize("method, settings, logged", [
    ("pix2pix", ["real_label=0.9"], ["D_real", "D_fake"]),
    ("pix2pix", ["r1_gamma=1", "r2_gamma=1"], ["D_r1", "D_r2"]),
    ("pix2pix", ["feat_match_weight=10", "diffaugment=color,translation,cutout"], ["G_feat"]),
    ("cyclegan", ["feat_match_weight=10", "diffaugment=translation,cutout"], ["G_A_feat", "G_B_feat"]),
], ids=["label_smoothing", "r1_r2", "fm_diffaugment_pix2pix", "fm_diffaugment_cyclegan"])
def test_a_tiny_real_run_with_each_switch(tmp_path: Path, method: str, settings: list[str], logged: list[str]) -> None:
    records = _train(tmp_path, method, "run", *settings)
    assert records[-1]["step"] == 2
    for key in logged:
        assert all(math.isfinite(r[key]) for r in records if key in r) and any(key in r for r in records)


@pytest.mark.skipif(not FACADES.is_dir(), reason="needs ../shared/datasets/facades")
def test_a_spectrally_normalised_run_checkpoints_and_resumes(tmp_path: Path) -> None:
    _train(tmp_path, "pix2pix", "sn", "d_spectral_norm=true", max_steps=2)
    from safetensors.torch import load_file

    ckpts = tmp_path / "sn" / "checkpoints"
    weights = load_file(ckpts / (ckpts / "latest").read_text().strip() / "weights.safetensors")
    # the discriminator's weights are saved as torch's parametrization holds them, power-iteration vectors too
    assert {"D.model.0.parametrizations.weight.original", "D.model.0.parametrizations.weight.0._u",
            "D.model.0.parametrizations.weight.0._v"} <= set(weights)
    records = _train(tmp_path, "pix2pix", "sn", "d_spectral_norm=true", max_steps=3, resume=True)
    assert records[-1]["step"] == 3
    assert i2i.load(str(tmp_path / "sn"), device="cpu").meta.name == "resnet_6blocks"  # the generator is unaffected



@pytest.mark.skipif(not FACADES.is_dir(), reason="needs ../shared/datasets/facades")
def test_the_stabilisers_add_no_host_sync_to_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every switch on at once, DiffAugment's kornia ops included: no tensor value is read by the host
    inside a step (each such read is a device sync on CUDA); test_gpu_ready's counter, which can fail."""
    from test_gpu_ready import run_counted
    from tiny_pix2pix import copy_facades

    copy_facades(tmp_path / "facades", 3)
    counter = run_counted(tmp_path, monkeypatch, "stabilised", max_steps=3, real_label=0.9, d_spectral_norm=True,
                          feat_match_weight=10.0, r1_gamma=1.0, r2_gamma=1.0, diffaugment="color,translation,cutout")
    assert counter.outside == [], counter.outside[:5]
    assert counter.inside > 0


def test_inpaint_refuses_only_what_the_user_set_and_names_its_own_layers_key(tmp_path) -> None:
    """With the shipped recipe (ndf 64, d_layers 6), gan_weight=0 refuses the stabiliser the user set,
    not the recipe's discriminator keys; the min-size advice names inpaint's d_layers (its
    discriminator_kwargs.n_layers disagrees with the recipe's d_layers)."""
    from click.testing import CliRunner

    from i2i.cli import cli

    nowhere = str(tmp_path / "nowhere")

    def error(*sets: str) -> str:
        args = ["train", "inpaint", "--data", nowhere]
        for s in sets:
            args += ["--set", s]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(lines) == 1, result.output
        return lines[0]

    line = error("gan_weight=0", "r1_gamma=1")
    assert "r1_gamma=1.0 would do nothing: gan_weight is 0" in line and "ndf" not in line and "d_layers" not in line
    assert "d_layers=3 would do nothing" in error("gan_weight=0", "d_layers=3")  # the user's own key still is
    line = error("discriminator=patch_70", "crop_size=16")
    assert "--set d_layers=N" in line and "discriminator_kwargs.n_layers" not in line


def test_d_spectral_norm_on_an_already_normalised_discriminator_is_refused(tmp_path) -> None:
    """sn_patch is spectrally normalised already: d_spectral_norm=true would do nothing, so one line."""
    from click.testing import CliRunner

    from i2i.cli import cli

    for method in ("inpaint", "pix2pix"):
        result = CliRunner().invoke(cli, ["train", method, "--data", str(tmp_path / "nowhere"), "--set",
                                          "discriminator=sn_patch", "--set", "d_spectral_norm=true"])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "d_spectral_norm=true would do nothing: discriminator sn_patch" in errors[0], \
            result.output


def test_r1_is_per_logit_so_a_patchgan_is_not_scaled_by_its_patch_count() -> None:
    """A PatchGAN whose patches see disjoint pixels (a 1x1 conv): its R1 is the mean per-patch R1,
    the same as one patch's D alone, not P times it (the 30x30 PatchGAN's D_r1 was ~1100 at gamma 1)."""
    from i2i.engine.penalties import grad_norm_penalty

    torch.manual_seed(0)
    D = nn.Conv2d(3, 1, 1)
    small, big = torch.randn(2, 3, 1, 1), torch.randn(2, 3, 30, 30)
    one = grad_norm_penalty(D, small)
    assert torch.allclose(one, D.weight.pow(2).sum(), rtol=1e-5)  # 1 logit: ||w||^2
    assert torch.allclose(grad_norm_penalty(D, big), one, rtol=1e-5)  # 900 logits: the same, not 900x
