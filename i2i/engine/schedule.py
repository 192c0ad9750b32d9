"""Optimizers and learning-rate schedules from config, through ``torch.optim`` and
``torch.optim.lr_scheduler`` (library first: no hand-written update rules or schedules).

A schedule steps once per epoch (``lr_unit: epoch``, the pix2pix/CycleGAN reference) or once per
iteration (``lr_unit: iter``, BasicSR and the SR papers, which count iterations). Its policies:

- ``linear``: constant for ``n_epochs`` (``n_iters``), then linear decay to ~0 over
  ``n_epochs_decay`` (``n_iters_decay``): the reference's ``lambda_rule`` (LambdaLR).
- ``constant``: the base LR throughout.
- ``step``: x ``lr_gamma`` at each of ``lr_milestones`` (MultiStepLR); ESRGAN halves at 50k, 100k,
  200k and 300k iterations, SRGAN divides by 10 after 10^5.
- ``cosine``: cosine annealing from the base LR to 0 over the whole run (CosineAnnealingLR;
  Loshchilov & Hutter 2017, SGDR without restarts).

``lr_warmup`` > 0 puts a linear warm-up first (LinearLR from ``1/lr_warmup`` of the LR to the LR;
Goyal et al. 2017), chained with SequentialLR. Milestones count from the run's start, warm-up
included (as BasicSR's ``warmup_iter``).

A key that the chosen optimizer or policy does not read, set to anything but its default, is a
one-line :class:`~i2i.errors.I2IError` (:func:`check`), never silently accepted.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch.optim import lr_scheduler

from ..errors import I2IError

POLICIES = ("linear", "constant", "step", "cosine")
UNITS = ("epoch", "iter")
OPTIMIZERS = ("adam", "adamw", "rmsprop")

#: the config keys each optimizer reads besides lr (others set away from their default are refused)
OPTIMIZER_KEYS = {"adam": ("beta1", "beta2", "weight_decay"), "adamw": ("beta1", "beta2", "weight_decay"),
                  "rmsprop": ("weight_decay", "momentum")}
#: the config keys each policy reads besides the run's length
POLICY_KEYS = {"linear": (), "constant": (), "step": ("lr_milestones", "lr_gamma"), "cosine": ()}


def lr_lambda(policy: str, n_epochs: int, n_epochs_decay: int, milestones: Sequence[int] = (),
              gamma: float = 0.5) -> Callable[[int], float]:
    """Factor of the base LR after ``t`` scheduler steps (epochs or iterations).

    ``linear``: 1 for ``n_epochs`` steps, then ``1 - (t + 1 - n_epochs) / (n_epochs_decay + 1)``: the
    pix2pix/CycleGAN reference's ``lambda_rule`` (junyanz/pytorch-CycleGAN-and-pix2pix,
    models/networks.py). ``constant``: 1. ``step``: ``gamma`` to the number of milestones passed.
    Raises I2IError for an unknown policy or bad milestones/gamma.
    """
    if policy == "constant":
        return lambda epoch: 1.0
    if policy == "linear":
        return lambda epoch: 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)
    if policy == "step":
        marks = _milestones(milestones, gamma)
        return lambda epoch: gamma ** sum(epoch >= m for m in marks)
    raise I2IError(f"unknown lr_policy {policy!r}; choose one of {', '.join(POLICIES)}")


def _milestones(milestones: Sequence[int], gamma: float) -> list[int]:
    marks = list(milestones)
    if not marks or any(m <= 0 for m in marks) or marks != sorted(set(marks)):
        raise I2IError(f"lr_policy 'step' needs lr_milestones: increasing positive steps of lr_unit, e.g. [50, 100]; "
                       f"got {marks}")
    if not 0 < gamma <= 1:
        raise I2IError(f"lr_gamma must be in (0, 1], got {gamma}")
    return marks


def check(cfg: Any) -> None:
    """Refuse, in one line, what the chosen optimizer, policy and unit do not read.

    ``cfg`` is a :class:`~i2i.config.TrainConfig` (any method's subclass): a key counts as set when it
    differs from :func:`i2i.config.baseline` (the shipped recipe or resumed checkpoint it was built
    on, else the class defaults), as for Method.refuse_unused. Called before any data is read.
    """
    from ..config import baseline

    defaults = baseline(cfg)
    changed = {k for k in vars(defaults) if getattr(cfg, k) != getattr(defaults, k)}
    if cfg.optimizer not in OPTIMIZERS:
        raise I2IError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if cfg.lr_policy not in POLICIES:
        raise I2IError(f"unknown lr_policy {cfg.lr_policy!r}; choose one of {', '.join(POLICIES)}")
    if cfg.lr_unit not in UNITS:
        raise I2IError(f"unknown lr_unit {cfg.lr_unit!r}; choose epoch (n_epochs, n_epochs_decay) or iter "
                       f"(n_iters, n_iters_decay)")
    for key in sorted(changed & {k for keys in OPTIMIZER_KEYS.values() for k in keys} - set(OPTIMIZER_KEYS[cfg.optimizer])):
        readers = [o for o, keys in OPTIMIZER_KEYS.items() if key in keys]
        raise I2IError(f"{key}={getattr(cfg, key)} is not read by optimizer {cfg.optimizer} (only by "
                       f"{', '.join(readers)}); remove it or choose one of those optimizers")
    for key in sorted(changed & {"lr_milestones", "lr_gamma"} - set(POLICY_KEYS[cfg.lr_policy])):
        raise I2IError(f"{key} is read only by lr_policy step, not {cfg.lr_policy}; remove it or set lr_policy=step")
    if cfg.lr_policy == "step":
        _milestones(cfg.lr_milestones, cfg.lr_gamma)
    if cfg.lr_warmup < 0:
        raise I2IError(f"lr_warmup must be >= 0 (steps of lr_unit), got {cfg.lr_warmup}")
    other = {"epoch": ("n_iters", "n_iters_decay"), "iter": ("n_epochs", "n_epochs_decay")}[cfg.lr_unit]
    for key in sorted(changed & set(other)):
        length = "n_epochs (+ n_epochs_decay)" if cfg.lr_unit == "epoch" else "n_iters (+ n_iters_decay)"
        raise I2IError(f"{key} is not read with lr_unit={cfg.lr_unit}: the run's length is {length}; remove it or "
                       f"set lr_unit={'iter' if cfg.lr_unit == 'epoch' else 'epoch'}")
    if cfg.lr_unit == "iter" and cfg.n_iters <= 0:
        raise I2IError("lr_unit=iter needs n_iters > 0 (iterations at the initial lr; n_iters_decay more decay it "
                       "with lr_policy=linear)")
    length = schedule_length(cfg)
    if cfg.lr_warmup >= length:
        raise I2IError(f"lr_warmup={cfg.lr_warmup} is not shorter than the run ({length} {cfg.lr_unit}s)")
    if cfg.lr_policy == "step" and cfg.lr_milestones[0] <= cfg.lr_warmup:
        raise I2IError(f"the first lr_milestone ({cfg.lr_milestones[0]}) falls inside the warm-up "
                       f"(lr_warmup={cfg.lr_warmup}); milestones count from the run's start")


def schedule_length(cfg: Any) -> int:
    """The run's length in units of ``lr_unit`` (epochs or iterations)."""
    return cfg.n_epochs + cfg.n_epochs_decay if cfg.lr_unit == "epoch" else cfg.n_iters + cfg.n_iters_decay


def make_optimizer(cfg: Any, params: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params`` (torch.optim.Adam / AdamW / RMSprop).

    Adam and AdamW use torch's fused kernel wherever the parameters allow it (CPU or CUDA, floating
    point): it updates all tensors in one pass (2.6x faster on unet_256 here, BENCHMARKS.md) and takes
    a device-side ``found_inf`` flag, so a non-finite step is skipped without a host sync. RMSprop
    has no fused kernel; on CUDA it is built ``capturable`` so its state stays on the device.
    ``weight_decay`` unset (None) is the optimizer's own default (AdamW: 1e-2, others 0).
    """
    on_device = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    extra: dict[str, Any] = {} if cfg.weight_decay is None else {"weight_decay": cfg.weight_decay}
    if cfg.optimizer in ("adam", "adamw"):
        cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=(cfg.beta1, cfg.beta2), fused=on_device or None, **extra)
    if cfg.optimizer == "rmsprop":
        cuda = bool(params) and params[0].device.type == "cuda"
        return torch.optim.RMSprop(params, lr=lr, momentum=cfg.momentum, capturable=cuda, **extra)
    raise I2IError(f"unknown optimizer {cfg.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any) -> lr_scheduler.LRScheduler:
    """The LR schedule of ``cfg`` (see the module docstring), stepped once per ``lr_unit``."""
    length = schedule_length(cfg)
    if cfg.lr_unit == "epoch":
        keep, decay = cfg.n_epochs, cfg.n_epochs_decay
    else:
        keep, decay = cfg.n_iters, cfg.n_iters_decay
    warm = cfg.lr_warmup
    main: lr_scheduler.LRScheduler
    if cfg.lr_policy == "step":  # milestones count from the start: the warm-up's steps come off them
        main = lr_scheduler.MultiStepLR(optimizer, [m - warm for m in _milestones(cfg.lr_milestones, cfg.lr_gamma)],
                                        gamma=cfg.lr_gamma)
    elif cfg.lr_policy == "cosine":
        main = lr_scheduler.CosineAnnealingLR(optimizer, T_max=length - warm)
    elif cfg.lr_policy == "linear":
        rule = lr_lambda("linear", keep - warm, decay)
        main = lr_scheduler.LambdaLR(optimizer, rule)
    else:
        main = lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.lr_policy, keep, decay))
    if warm <= 0:
        return main
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm)
    return lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warm])


__all__ = ["POLICIES", "UNITS", "OPTIMIZERS", "lr_lambda", "check", "make_optimizer", "make_scheduler",
           "schedule_length"]
