"""Validation during training: metrics on held-aside images every ``val_every`` steps, and ``best``.

BasicSR's pattern (a metric registry, validation every N iterations, the best kept by one metric),
on i2i's metric plugins (:mod:`i2i.metrics`):

- the images: the method's held-aside split (:meth:`i2i.method.Method.validation_dataset`: pix2pix
  and CycleGAN read ``val/``, else ``test/``; inpaint its ``holdout``) or ``val_data``; the first
  ``val_images`` of them, prepared without randomness, so every validation sees the same pixels;
- each method turns a batch into ``(output, target, mask)`` in [0, 1] (``Method.validation_batch``),
  with the EMA generators when EMA is on, in eval mode, as ``i2i translate`` runs them;
- the values go to metrics.jsonl as a row ``{"step", "epoch", "split": "val", "val/<metric>": ...,
  "val/seconds", "val/images"}`` and to TensorBoard as ``val/<metric>``;
- a distribution metric that can keep its reference set across ``reset()`` (``keep_reference``:
  FID, KID) is given the real images at the first validation only;
- ``select_by`` names the metric that keeps ``checkpoints/best`` (its direction from the metric's
  ``higher_is_better``); the best value and step live in the checkpoint state, so resume keeps them.

Validation never touches the training RNG streams (it runs under ``torch.random.fork_rng``), so a
run trains the same weights with validation on or off.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..config import TrainConfig
from ..errors import I2IError
from ..method import Batch, Method
from ..modelcard import ValidationInfo

#: decoded validation batches are kept in memory (CPU) up to this size, so each validation after the
#: first costs only the generator and the metrics; larger sets are read again each time
CACHE_BYTES = 256 << 20


def check_config(cfg: TrainConfig, method: Method) -> list[str]:
    """The metric names validation will compute (empty: validation is off), or a one-line I2IError.

    Runs before any data is read: unknown metric names, a ``select_by`` that is not computed, a
    metric the method's validation cannot feed (a paired metric for unpaired CycleGAN) and bad numbers
    are refused here.
    """
    if cfg.val_every < 0:
        raise I2IError(f"val_every must be >= 0 (0: no validation), got {cfg.val_every}")
    if cfg.val_images < 1:
        raise I2IError(f"val_images must be >= 1, got {cfg.val_images}")
    if cfg.val_every == 0:
        for key in ("select_by", "val_metrics", "val_data"):
            if getattr(cfg, key):
                raise I2IError(f"{key}={_show(getattr(cfg, key))} needs validation, which is off: --set val_every=N "
                               f"(validate every N steps)")
        return []
    from .. import metrics as M

    names = list(dict.fromkeys(cfg.val_metrics)) or ([cfg.select_by] if cfg.select_by else
                                                     list(method.default_val_metrics))
    if not names:
        raise I2IError(f"{method.method_name} names no default validation metrics: choose some with "
                       f"--set val_metrics=NAME,NAME (`i2i list metrics`)")
    for name in names:
        kind = M.spec(name).kind  # an unknown name is an I2IError listing close matches
        if kind not in method.validation_kinds:
            fits = [s.name for s in _metric_specs() if s.kind in method.validation_kinds]
            key = "val_metrics" if cfg.val_metrics else "select_by"  # the setting the user gave
            raise I2IError(f"{key}: {name} is a {kind} metric, which {method.method_name}'s validation cannot "
                           f"feed (it gives {' and '.join(method.validation_kinds)} data); metrics that fit: "
                           f"{', '.join(fits) or 'none'}")
    if cfg.select_by:
        M.spec(cfg.select_by)
        if cfg.select_by not in names:
            raise I2IError(f"select_by={cfg.select_by} is not among val_metrics ({', '.join(names)}): add it, "
                           f"--set val_metrics={','.join([*names, cfg.select_by])}")
    return names


def _parameters(factory: Any) -> set[str]:
    import inspect

    try:
        return set(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return set()


def _metric_specs() -> list[Any]:
    from ..registry import registry

    return registry("metric").list()


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


@dataclass
class Best:
    """The best value of ``metric`` so far and its step (None before the first validation)."""

    metric: str
    higher_is_better: bool
    value: float | None = None
    step: int | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far (ties do not). NaN never does; an infinity is the best
        possible in its good direction (PSNR of a perfect output: +inf) and never in the bad one."""
        if math.isnan(value):
            return False
        if math.isinf(value) and (value > 0) != self.higher_is_better:
            return False
        if self.value is None:
            return True
        return value > self.value if self.higher_is_better else value < self.value


@contextlib.contextmanager
def evaluating(method: Method, raw: dict[str, nn.Module], ema: dict[str, Any]) -> Iterator[None]:
    """The method sees its unwrapped networks in eval mode, with the EMA copies as its generators
    (when EMA is on), and no gradients; the training modes and wrapped views come back after."""
    before = method.nets
    nets = {**raw, **{n: e.module for n, e in ema.items()}}
    modes = {n: net.training for n, net in nets.items()}
    for net in nets.values():
        net.eval()
    method.nets = nets
    try:
        with torch.no_grad():
            yield
    finally:
        method.nets = before
        for n, net in nets.items():
            net.train(modes[n])


def _settings_offered() -> contextlib.AbstractContextManager:
    """The metrics plugin's "name training's settings" block, when that plugin is there."""
    try:
        from i2i_metrics.weights import settings_offered
    except ImportError:  # another metrics provider: its own messages
        return contextlib.nullcontext()
    return settings_offered()


class Validator:
    """Computes the validation metrics of a run and keeps the best value of ``select_by``."""

    def __init__(self, method: Method, cfg: TrainConfig, names: list[str], data_root: Path, device: torch.device,
                 precision: str) -> None:
        from .. import metrics as M

        self.method, self.cfg, self.device, self.precision = method, cfg, device, precision
        explicit = bool(cfg.val_data)
        if explicit:
            from ..data import resolve_data

            data_root = resolve_data(cfg.val_data)
        self.root = data_root
        dataset = method.validation_dataset(str(data_root), explicit)
        n = min(len(dataset), cfg.val_images)  # type: ignore[arg-type]
        if n == 0:
            raise I2IError(f"no validation images found in {data_root}" +
                           ("" if explicit else "; give them with --set val_data=FOLDER"))
        self.images = n
        self.dataset = dataset
        self.loader = DataLoader(Subset(dataset, range(n)), batch_size=method.validation_batch_size or cfg.batch_size,
                                 shuffle=False, num_workers=0, generator=torch.Generator())
        self.specs = {name: M.spec(name) for name in names}
        sets = [name for name in names if self.specs[name].kind == "distribution"]
        if sets and n < 2:  # a covariance (FID) or an MMD (KID) needs two images on each side
            verbs = "compares two sets of images and needs" if len(sets) == 1 else "compare two sets of images and need"
            raise I2IError(f"{', '.join(sets)} {verbs} at least 2 validation images; "
                           f"found {n} (val_images={cfg.val_images}, in {data_root})")
        # built once: feature networks (Inception, LPIPS) load their weights here, before training starts
        options = {name: method.validation_metric_kwargs(name) for name in names}
        # distribution metrics that can keep the reference set's features across reset() (FID, KID) see
        # the real images at the first validation only: later ones cost just the generated half
        self.keeps_reference = {name for name in names if self.specs[name].kind == "distribution"
                                and "keep_reference" in _parameters(self.specs[name].factory)}
        for name in names:  # local feature weights from the config (fid_weights, lpips_weights)
            local = cfg.lpips_weights if name == "lpips" else cfg.fid_weights if name in ("fid", "kid", "is") else ""
            if local and _parameters(self.specs[name].factory) & {"weights", "kwargs"}:
                options[name] = {**options[name], "weights": local}
        with _settings_offered():  # offline: the message names --set fid_weights=FILE, not eval's flag
            self.metrics = {name: M.create(name, device=device, **options[name],
                                           **({"keep_reference": True} if name in self.keeps_reference else {}))
                            for name in names}
        self._reference_fed = False
        self._improved = False
        self.best = Best(cfg.select_by, self.specs[cfg.select_by].higher_is_better) if cfg.select_by else None
        self.last: ValidationInfo | None = None
        self._cache: list[Batch] | None = None
        split = getattr(dataset, "phase", "") if not explicit else ""
        self.protocol = (f"the first {n} images of {data_root}" + (f" ({split} split)" if split else "")
                         + f", prepared without randomness; {method.method_name}'s validation_batch; "
                         + ("EMA generator" if cfg.ema_decay > 0 else "trained generator") + " in eval mode"
                         + "".join(f"; {name} with {', '.join(f'{k}={v}' for k, v in o.items())}"
                                   for name, o in options.items() if o)
                         + "".join(f"; {name} features: {m.weights_record}" for name, m in self.metrics.items()
                                   if isinstance(getattr(m, "weights_record", None), str)))

    # -- running --------------------------------------------------------------------------------
    def batches(self) -> Iterator[Batch]:
        """The validation batches, decoded once and kept on the CPU when they fit in CACHE_BYTES."""
        if self._cache is not None:
            yield from self._cache
            return
        kept: list[Batch] | None = []
        size = 0
        for batch in self.loader:
            if kept is not None:
                size += sum(v.numel() * v.element_size() for v in batch.values() if isinstance(v, torch.Tensor))
                if size <= CACHE_BYTES:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        self._cache = kept

    def run(self, step: int, raw: dict[str, nn.Module], ema: dict[str, Any]) -> ValidationInfo:
        """Compute every metric over the validation images at ``step``; updates ``last`` (and ``best``'s
        value when it improves: :meth:`improved` says so)."""
        from .precision import autocast

        started = time.perf_counter()
        for metric in self.metrics.values():
            metric.reset()
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), evaluating(self.method, raw, ema):
            for batch in self.batches():
                batch = self.method.to_device(batch)
                with autocast(self.device, self.precision):
                    output, target, mask = self.method.validation_batch(batch)
                output = output.float()
                target = target.float() if target is not None else None
                for name, metric in self.metrics.items():
                    kept = self._reference_fed and name in self.keeps_reference
                    metric.update(output, None if kept else target, mask)
            values = {name: float(metric.compute()) for name, metric in self.metrics.items()}
        self._reference_fed = True
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self._improved = False
        if self.best is not None and self.best.improves(values[self.best.metric]):
            self.best.value, self.best.step = values[self.best.metric], step
            self._improved = True
        self.last = ValidationInfo(
            step=step, values=values, protocol=self.protocol, images=self.images, seconds=seconds,
            specs={n: (s.description, bool(s.higher_is_better), s.kind) for n, s in self.specs.items()},
            select_by=self.best.metric if self.best else "", best_value=self.best.value if self.best else None,
            best_step=self.best.step if self.best else None)
        return self.last

    @property
    def improved(self) -> bool:
        """Whether the last :meth:`run` set a new best ``select_by`` value."""
        return self._improved

    def record(self, epoch: int) -> dict[str, Any]:
        """The metrics.jsonl row of the last validation."""
        assert self.last is not None
        row: dict[str, Any] = {"step": self.last.step, "epoch": epoch, "split": "val"}
        row.update({f"val/{k}": v for k, v in self.last.values.items()})
        row.update({"val/seconds": self.last.seconds, "val/images": self.last.images})
        if self.best is not None and self.best.value is not None:
            row[f"val/best_{self.best.metric}"] = self.best.value
        return row

    def visuals(self, raw: dict[str, nn.Module], ema: dict[str, Any], rows: int = 4) -> list[torch.Tensor]:
        """The sample-grid columns (``Method.visuals``) of the first ``rows`` validation images: the
        same images at every sample, so the grids show the run's progress on fixed pictures."""
        first = next(iter(self.batches()))
        batch = self.method.to_device({k: v[:rows] if isinstance(v, (torch.Tensor, list)) else v
                                       for k, v in first.items()})
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), evaluating(self.method, raw, ema):
            return self.method.visuals(batch, self.method.forward(batch))

    # -- checkpoint state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps (plain data): the best so far and the last validation's values."""
        best = {"metric": self.best.metric, "value": self.best.value, "step": self.best.step} if self.best else None
        last = {"step": self.last.step, "values": dict(self.last.values), "seconds": self.last.seconds} if self.last else None
        return {"best": best, "last": last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best so far (when it was kept by the same metric) and the last values.

        A resumed run whose ``select_by`` differs from the metric that kept the run's ``checkpoints/best``
        is refused (one line): the new metric's first validation would overwrite that best. Moving
        ``checkpoints/best`` away (or resuming with the old ``select_by``) goes on without losing it."""
        best = state.get("best")
        if (self.best is not None and best and best.get("value") is not None
                and best.get("metric") != self.best.metric):
            kept = Path(self.cfg.out_dir) / self.cfg.name / "checkpoints" / "best"
            if kept.exists():
                raise I2IError(f"{kept} was kept by select_by={best['metric']} ({best['value']:.6g} at step "
                               f"{best.get('step')}); resuming with select_by={self.best.metric} would overwrite it: "
                               f"resume with --set select_by={best['metric']}, or move {kept} away first to start "
                               f"a new best by {self.best.metric}")
        if self.best is not None and best and best.get("metric") == self.best.metric:
            self.best.value, self.best.step = best["value"], best["step"]
        last = state.get("last")
        if last:
            self.last = ValidationInfo(
                step=last["step"], values=dict(last["values"]), protocol=self.protocol, images=self.images,
                seconds=last.get("seconds", 0.0),
                specs={n: (s.description, bool(s.higher_is_better), s.kind) for n, s in self.specs.items()},
                select_by=self.best.metric if self.best else "", best_value=self.best.value if self.best else None,
                best_step=self.best.step if self.best else None)


__all__ = ["check_config", "Best", "Validator", "evaluating", "CACHE_BYTES"]
