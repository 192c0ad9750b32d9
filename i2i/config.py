"""Typed training configs: defaults in code < recipe file (YAML) < CLI flags (``--set key=value``).

A config is a flat dataclass: :class:`TrainConfig` holds what the engine reads and each method
subclasses it with its own fields. Unknown or ill-typed keys are clear errors naming the key and
the closest valid one.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

from .errors import I2IError, did_you_mean


@dataclass
class TrainConfig:
    """What the shared engine reads. Methods subclass this with their own fields."""

    #: run name: the run directory is ``out_dir/name`` (default: ``<method>_<data>``)
    name: str = ""
    out_dir: str = "runs"
    #: dataset name from the catalogue (``i2i list datasets``) or a folder path
    data: str = ""
    seed: int = 0
    #: "auto" (cuda if available), "cpu", "cuda", "cuda:1" ...
    device: str = "auto"
    #: "auto" (fp16 with loss scaling on CUDA, fp32 on CPU), "fp32", "fp16", "bf16"
    precision: str = "auto"
    batch_size: int = 1
    num_workers: int = 2
    pin_memory: bool = True
    persistent_workers: bool = True
    #: the unit of the run's length and of the LR schedule: "epoch" (n_epochs + n_epochs_decay; the
    #: schedule steps at each epoch's end, the reference) or "iter" (n_iters + n_iters_decay; it steps
    #: every iteration, as BasicSR and the SR papers count)
    lr_unit: str = "epoch"
    #: epochs at the initial learning rate, then epochs of linear decay to zero (the reference)
    n_epochs: int = 100
    n_epochs_decay: int = 100
    #: with lr_unit=iter: iterations at the initial learning rate, then iterations of linear decay
    n_iters: int = 0
    n_iters_decay: int = 0
    #: stop after this many iterations (0: run the whole length)
    max_steps: int = 0
    #: "adam", "adamw" or "rmsprop" (torch.optim; WGAN's critic used RMSprop)
    optimizer: str = "adam"
    lr: float = 2e-4
    #: discriminator learning rate (default: lr)
    lr_D: float | None = None
    #: Adam/AdamW betas
    beta1: float = 0.5
    beta2: float = 0.999
    #: weight decay (None: the optimizer's own default, AdamW 1e-2, Adam and RMSprop 0)
    weight_decay: float | None = None
    #: RMSprop momentum
    momentum: float = 0.0
    #: "linear" (constant, then linear decay), "constant", "step" (x lr_gamma at each of lr_milestones)
    #: or "cosine" (annealed to 0 over the run)
    lr_policy: str = "linear"
    #: steps of lr_unit, counted from the start, at which "step" multiplies the lr by lr_gamma
    lr_milestones: list[int] = field(default_factory=list)
    lr_gamma: float = 0.5
    #: linear warm-up over this many steps of lr_unit, from lr/lr_warmup to lr (0: off)
    lr_warmup: int = 0
    #: discriminator steps per generator step: D steps every iteration (each on its own batch), G
    #: every d_steps-th (WGAN-GP: 5; BasicSR's net_d_iters)
    d_steps: int = 1
    #: iterations at the start that train only D (BasicSR's net_d_init_iters)
    d_warmup_steps: int = 0
    #: clip gradient norm of each network group (0: off)
    grad_clip: float = 0.0
    #: exponential moving average of the generators' weights (0: off; e.g. 0.999)
    ema_decay: float = 0.0
    log_every: int = 50
    sample_every: int = 500
    #: keep a checkpoint every N steps (0: only the last, per epoch, and the final)
    save_every: int = 0
    #: also keep one every N minutes, so no run loses more than that (0: off)
    save_every_minutes: float = 15.0
    #: step checkpoints kept (the newest); last, final and interrupted are always kept (0: keep all)
    keep_last: int = 3
    # GAN stabilisers (docs/stabilisers.md), for every method with a discriminator; one implementation
    # in i2i.method.Adversarial, checked when the networks are built
    #: one-sided label smoothing: the discriminator's target for real images (vanilla, lsgan; 0.9 as
    #: Salimans et al. 2016); the generator still aims at 1.0
    real_label: float = 1.0
    #: spectral normalisation on every conv and linear layer of the discriminators (Miyato et al. 2018)
    d_spectral_norm: bool = False
    #: weight of the L1 between the discriminators' intermediate features of real and generated images
    #: (pix2pixHD's feature matching: 10); 0 = off
    feat_match_weight: float = 0.0
    #: R1 / R2 gradient penalties on real / generated images: gamma / 2 * E||grad D||^2 (Mescheder et al. 2018)
    r1_gamma: float = 0.0
    r2_gamma: float = 0.0
    #: DiffAugment on everything the discriminators see, reals and fakes, D and G steps: a comma list of
    #: color, translation, cutout (Zhao et al. 2020; "" = off)
    diffaugment: str = ""
    channels_last: bool = False
    compile: bool = False
    #: opt-in CPU kernels for the generators (the i2i_cpu plugin's ``accelerate`` hook), fp32 on CPU only
    cpu_kernels: bool = False
    cudnn_benchmark: bool = True
    sync_bn: bool = False
    #: CPU threads for torch (0: torch's default, one per core)
    threads: int = 0
    #: stop after this many consecutive non-finite losses (each one skips its step); checked at log
    #: intervals, so the run stops at the first log step after the limit is reached
    nan_limit: int = 20
    #: mode-collapse monitor: warn when ``diversity`` (mean pairwise distance of generated images over
    #: that of the real ones) stays below this for diversity_patience log intervals (0: no warning)
    diversity_threshold: float = 0.2
    diversity_patience: int = 5
    #: skip unreadable images (reported) instead of stopping with an error
    skip_bad_images: bool = False
    #: validate every N steps, and at the last step, on held-aside images (0: off; i2i/engine/validation.py)
    val_every: int = 0
    #: metrics of each validation (`i2i list metrics`; empty: select_by, else the method's own defaults)
    val_metrics: list[str] = field(default_factory=list)
    #: validation images: the first N of the held-aside split (bounds each validation's cost)
    val_images: int = 50
    #: validation data: a folder or catalogue name (default: the training data's val/ or test/ split)
    val_data: str = ""
    #: keep checkpoints/best by this validation metric, e.g. fid, lpips, psnr_y ("": no best checkpoint)
    select_by: str = ""
    #: local Inception weights for FID/KID/IS validation ("": $I2I_FID_WEIGHTS, else fetched once)
    fid_weights: str = ""
    #: local AlexNet weights for LPIPS validation ("": $I2I_LPIPS_WEIGHTS, else fetched once)
    lpips_weights: str = ""


C = TypeVar("C", bound=TrainConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert ``value`` (from YAML or the command line) to the field type, or fail clearly."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except I2IError as exc:
                errors.append(str(exc))
        raise I2IError(errors[0] if errors else f"config key {key!r}: bad value {value!r}")
    if origin in (dict, Mapping) or tp is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise I2IError(f"config key {key!r} expects a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise I2IError(f"config key {key!r} expects a list, got {value!r}")
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [coerce(key, v, item) if item is not Any else v for v in value]
        return tuple(items) if origin is tuple or tp is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise I2IError(f"config key {key!r} expects true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise I2IError(f"config key {key!r} expects {tp.__name__}, got {value!r}")
        try:
            number = float(value) if tp is float else int(str(value), 0) if isinstance(value, str) else value
        except (TypeError, ValueError):
            raise I2IError(f"config key {key!r} expects {tp.__name__}, got {value!r}") from None
        if tp is int and (not isinstance(number, int) and not float(number).is_integer()):
            raise I2IError(f"config key {key!r} expects int, got {value!r}")
        return tp(number)
    if tp is str:
        if isinstance(value, (dict, list)):
            raise I2IError(f"config key {key!r} expects a string, got {value!r}")
        return str(value)
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply(cfg: C, values: Mapping[str, Any], source: str) -> C:
    """Return ``cfg`` updated from a flat mapping; ``a.b`` keys set one entry of a dict field."""
    types_ = _field_types(type(cfg))
    changes: dict[str, Any] = {}
    for key, value in values.items():
        base, _, sub = key.partition(".")
        if base not in types_:
            raise I2IError(f"unknown config key {base!r} in {source}{did_you_mean(base, types_)}; see `i2i train METHOD --help-config`")
        if sub:
            current = dict(changes.get(base, getattr(cfg, base)) or {})
            if not isinstance(current, dict):
                raise I2IError(f"config key {base!r} is not a mapping, so {key!r} is invalid ({source})")
            current[sub] = yaml.safe_load(value) if isinstance(value, str) else value
            changes[base] = current
        else:
            changes[base] = coerce(base, value, types_[base])
    return dataclasses.replace(cfg, **changes)


def parse_overrides(pairs: typing.Iterable[str]) -> dict[str, Any]:
    """``["lr=1e-4", "generator_kwargs.ngf=8"]`` -> ``{"lr": "1e-4", ...}`` (typed later)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise I2IError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def load_recipe(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise I2IError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    except OSError as exc:
        raise I2IError(f"cannot read config file {path}: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise I2IError(f"config file {path} must hold a mapping of keys to values")
    data.pop("method", None)  # recipes name their method for the reader; the CLI already knows it
    return data


#: a network choice and its kwargs: a recipe's kwargs are for the network the recipe names
PAIRED_KEYS = {"generator": "generator_kwargs", "discriminator": "discriminator_kwargs", "mask": "mask_kwargs"}


def build(cls: type[C], recipe: Mapping[str, Any] | None = None, recipe_name: str = "recipe",
          overrides: Mapping[str, Any] | None = None, *, recipe_is_baseline: bool = False) -> C:
    """defaults < recipe < overrides.

    ``recipe_is_baseline``: the recipe is not the user's (a shipped recipe, or the checkpoint a run
    resumes from), so a key it sets does not count as set by the user: :func:`baseline` gives the
    config before the overrides, and a method refuses only keys the user set (Method.refuse_unused).

    A recipe's ``generator_kwargs`` (``discriminator_kwargs``, ``mask_kwargs``) belong to the network
    it names: when the overrides choose another one, that one starts from the defaults' kwargs (said
    in a warning), and ``--set generator_kwargs.ngf=8`` sets one kwarg of the network chosen.
    """
    cfg = cls()
    if recipe and overrides:
        recipe = dict(recipe)
        for name, kwargs_key in PAIRED_KEYS.items():
            chosen, ours = overrides.get(name), recipe.get(name, getattr(cfg, name, None))
            if chosen is not None and kwargs_key in recipe and str(chosen) != str(ours):
                dropped = recipe.pop(kwargs_key)
                import warnings

                warnings.warn(f"i2i: {recipe_name} sets {kwargs_key} {dropped} for {name} {ours}; not used for "
                              f"{name} {chosen}", UserWarning, stacklevel=2)
    if recipe:
        cfg = apply(cfg, recipe, recipe_name)
    base = cfg
    if overrides:
        cfg = apply(cfg, overrides, "command line")
    if recipe and recipe_is_baseline:
        cfg.__dict__["_baseline"] = base  # not a field: not saved, not in --help-config
    return cfg


def baseline(cfg: C) -> C:
    """What ``cfg``'s keys count as set against: the shipped recipe (or resumed checkpoint) it was
    built on with ``recipe_is_baseline``, else the class defaults."""
    return cfg.__dict__.get("_baseline") or type(cfg)()


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Rebuild a saved config, ignoring keys a newer/older version no longer has."""
    names = {f.name for f in dataclasses.fields(cls)}
    return apply(cls(), {k: v for k, v in data.items() if k in names}, "checkpoint")


def describe(cls: type[TrainConfig]) -> list[tuple[str, str, Any]]:
    """(key, type, default) for every config key, for ``--help-config``."""
    out = []
    defaults = cls()
    for name, tp in _field_types(cls).items():
        out.append((name, _type_name(tp), getattr(defaults, name)))
    return out


__all__ = ["TrainConfig", "build", "apply", "parse_overrides", "load_recipe", "to_dict", "from_dict", "describe", "field"]


#: float keys that may be negative (none today: every float key is a weight, rate, gamma, ratio or
#: time); ranges tighter than ">= 0" are below in :data:`RANGES`
SIGNED_FLOAT_KEYS: frozenset[str] = frozenset()
#: (low, high, low_open, high_open, what it is) for float keys with a tighter range than ">= 0"
RANGES: dict[str, tuple[float, float, bool, bool, str]] = {
    "lr": (0.0, float("inf"), True, True, "the learning rate"),
    "lr_D": (0.0, float("inf"), True, True, "the discriminators' learning rate"),
    "beta1": (0.0, 1.0, False, True, "Adam's first-moment decay"),
    "beta2": (0.0, 1.0, False, True, "Adam's second-moment decay"),
    "ema_decay": (0.0, 1.0, False, True, "the EMA decay (0: off)"),
    "real_label": (0.0, 1.0, True, False, "one-sided label smoothing, e.g. 0.9"),
    "lr_gamma": (0.0, 1.0, True, False, ""),
}


def _floats(cls: type, cfg: Any) -> list[tuple[str, Any]]:
    """``(key, value)`` for every float-typed field of ``cfg`` (``float``, ``float | None``, and each
    value of a ``dict[str, float]`` as ``key.name``)."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        hint, value = hints.get(f.name), getattr(cfg, f.name)
        args = typing.get_args(hint)
        if hint is float or (float in args and dict not in (typing.get_origin(hint),)):
            if value is not None:
                out.append((f.name, value))
        elif typing.get_origin(hint) is dict and len(args) == 2 and args[1] is float and isinstance(value, dict):
            out.extend((f"{f.name}.{k}", v) for k, v in value.items())
    return out


def check_numbers(cfg: Any) -> None:
    """One line for a number no setting can use, before any network is built or data is read: every
    float key must be finite (nan would silently switch a penalty off or poison the weights, inf
    overflow them) and >= 0, tighter where :data:`RANGES` says; ``diversity_patience`` >= 1."""
    import math

    for key, value in _floats(type(cfg), cfg):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise I2IError(f"{key}={value} is not a finite number; set a finite value (see `i2i train METHOD "
                           f"--help-config`)")
        if key in RANGES:
            lo, hi, lo_open, hi_open, what = RANGES[key]
            if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
                span = f"{'(' if lo_open else '['}{lo:g}, {'inf' if math.isinf(hi) else f'{hi:g}'}{')' if hi_open else ']'}"
                raise I2IError(f"{key} must be in {span}{f' ({what})' if what else ''}, got {value}")
        elif value < 0 and key.split(".")[0] not in SIGNED_FLOAT_KEYS:
            raise I2IError(f"{key} must be >= 0, got {value}")
    patience = getattr(cfg, "diversity_patience", 1)
    if isinstance(patience, int) and patience < 1 and getattr(cfg, "diversity_threshold", 0) > 0:
        raise I2IError(f"diversity_patience must be >= 1 (log intervals below diversity_threshold before the "
                       f"warning), got {patience}; set diversity_threshold=0 to turn the warning off")
