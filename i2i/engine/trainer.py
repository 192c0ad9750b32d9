"""The one adversarial training loop every method shares.

Read it top to bottom: set-up (devices, method, data, optimizers, resume), then the loop
(forward -> discriminator step -> generator step -> EMA, logs, samples, checkpoints).
"""

from __future__ import annotations

import dataclasses
import random
import re
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..checkpoint import STATE, WEIGHTS, prune, write_checkpoint
from ..modelcard import CARD
from ..config import TrainConfig, to_dict
from ..errors import I2IError
from ..method import Method
from ..registry import methods
from . import distributed as D
from .data import make_loader
from .ema import EMA
from .logs import RunLog, save_grid
from .validation import Validator, check_config as check_validation
from .monitor import DiversityMonitor
from .precision import autocast, make_scaler, masked_step, nonfinite_flag, resolve_device, resolve_precision
from .prefetch import Prefetcher
from .schedule import check as check_schedule, make_optimizer, make_scheduler


def build_method(name: str, cfg: TrainConfig) -> Method:
    """Instantiate a registered method on its config (networks built, still on the CPU)."""
    spec = methods().get(name)
    from ..config import check_numbers

    check_numbers(cfg)  # non-finite or negative rates, weights, gammas: one line before anything is built
    method: Method = spec.factory(cfg)
    method.name = name
    method.build_networks()
    method.check_generators_fit()  # every method: the crop against the generators' declared minimum
    return method


def set_requires_grad(nets: Iterable[nn.Module], flag: bool) -> None:
    for net in nets:
        net.requires_grad_(flag)


class Group:
    """One optimizer over some networks, with its scaler, schedule and on-device skip counters.

    A step whose loss (or, fp32/bf16, any gradient) is not finite is skipped on the device, never
    by asking the host: on fp16 through the GradScaler's found-inf, on fp32/bf16 through a device
    flag given to the optimizer (precision.masked_step). The counters (skipped steps, the current
    and worst streak, the first skipped step) stay device tensors until :meth:`read`, at log intervals.
    """

    def __init__(self, name: str, nets: list[nn.Module], lr: float, cfg: TrainConfig, device: torch.device, precision: str) -> None:
        self.name = name
        self.params = [p for net in nets for p in net.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(cfg, self.params, lr)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scaler = make_scaler(device, precision)
        self.precision = precision
        self.skipped, self.streak, self.worst, self.first_skip = (torch.zeros((), dtype=torch.int64, device=device)
                                                                  for _ in range(4))

    def step(self, losses: dict[str, torch.Tensor], grad_clip: float, at_step: int = 0) -> None:
        """Backward and step; a non-finite step (``at_step``: its number) leaves the weights as they were."""
        total = sum(losses.values())
        assert isinstance(total, torch.Tensor)
        self.optimizer.zero_grad(set_to_none=True)
        bad = ~torch.isfinite(total.detach())
        self.scaler.scale(total).backward()
        if self.scaler.is_enabled():  # fp16: the scaler finds inf/NaN gradients and skips on the device
            if grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            found = nonfinite_flag(total, self.params)
            bad = found > 0
            if grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.params, grad_clip)
            masked_step(self.optimizer, found)
        with torch.no_grad():  # the counters, on the device
            self.skipped.add_(bad.long())
            self.streak.add_(1).mul_(bad.long())
            torch.maximum(self.worst, self.streak, out=self.worst)
            self.first_skip.copy_(torch.where(bad & (self.first_skip == 0), at_step, self.first_skip))

    def read(self) -> dict[str, int]:
        """The counters on the host (one sync; at log intervals): ``worst`` is the longest streak since
        the last read."""
        skipped, streak, worst, first = torch.stack([self.skipped, self.streak, self.worst, self.first_skip]).tolist()
        self.worst.copy_(self.streak)
        return {"skipped": skipped, "streak": streak, "worst": worst, "first_skip": first}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "skipped": int(self.skipped), "streak": int(self.streak),
                "worst": int(self.worst), "first_skip": int(self.first_skip)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        for key in ("skipped", "streak", "worst", "first_skip"):
            getattr(self, key).fill_(state.get(key, state["streak"] if key == "worst" else 0))


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class TrainingInterrupted(I2IError):
    """Training stopped on SIGINT/SIGTERM: after saving an ``interrupted`` checkpoint (the first signal),
    or at once, saving nothing (a second one)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        #: what the process should exit with: 128 + the signal's number, as a shell reports it
        self.exit_code = exit_code


#: Under DDP the ranks check for a signal about this often (seconds): torchrun forwards SIGINT/SIGTERM to
#: its workers and kills them 30 s later, which must leave time for the step and rank 0's save.
STOP_CHECK_SECONDS = 10.0


class _StopOnSignal:
    """The first SIGINT/SIGTERM asks the loop to stop after its step; a second aborts at once."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.on_first: Any = None
        self._old: dict[int, Any] = {}

    def install(self) -> None:
        import threading

        if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            self.uninstall()
            raise TrainingInterrupted(f"a second signal ({name}): aborted at once; nothing was saved since the last "
                                      f"checkpoint", exit_code=128 + signum)
        self.signal = name
        if self.on_first:
            self.on_first(self.signal)

    def uninstall(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def other_checkpoints(directory: Path) -> str:
    """What to resume from instead of checkpoint ``directory`` (for one-line errors)."""
    if Path(directory).parent.name == "checkpoints":
        return f"--resume-from {Path(directory).parent}/last, or a step_* folder"
    return "--resume-from runs/NAME/checkpoints/last, or a step_* folder"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


class Trainer:
    def __init__(self, method_name: str, cfg: TrainConfig, resume_from: Path | None = None) -> None:
        self.cfg = cfg
        self.dist = D.init_distributed("cuda" if cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = resolve_device(cfg.device, self.dist.local_rank if self.dist.enabled else None)
        self.precision = resolve_precision(cfg.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)

        # The method: networks and losses; the engine owns devices, wrapping and optimisation.
        self.method = build_method(method_name, cfg)
        self.method.device = self.device
        fmt = torch.channels_last if cfg.channels_last else torch.preserve_format
        self.raw = {n: net.to(self.device, memory_format=fmt) for n, net in self.method.nets.items()}
        self.G_names, self.D_names = list(self.method.generator_nets), list(self.method.discriminator_nets)
        if cfg.cpu_kernels:  # opt-in: the accelerator plugins' CPU kernels (i2i/accelerate.py)
            from ..accelerate import cpu_kernels

            # The discriminators too, unless a gradient penalty differentiates them twice (the Winograd
            # layers give first derivatives only) or the method does not say (no `adversarial`).
            adversarial = getattr(self.method, "adversarial", None)
            twice = adversarial is None or getattr(adversarial, "penalised", True)
            for n in self.G_names + ([] if twice else self.D_names):
                cpu_kernels(self.raw[n], self.device, self.precision)

        # The optimizer, schedule and critic steps are checked before any data is read (schedule.py).
        check_schedule(cfg)
        if cfg.d_steps < 1 or cfg.d_warmup_steps < 0:
            raise I2IError(f"d_steps must be >= 1 and d_warmup_steps >= 0, got {cfg.d_steps} and {cfg.d_warmup_steps}")
        if not self.D_names and (cfg.d_steps != 1 or cfg.d_warmup_steps):
            raise I2IError(f"d_steps and d_warmup_steps need a discriminator; {method_name} trains none here")

        # Validation settings are checked before any data is read (unknown metrics, select_by).
        self.val_metrics = check_validation(cfg, self.method)

        # Data.
        from ..data import resolve_data

        self.data_root = resolve_data(cfg.data)
        dataset = self.method.build_dataset(str(self.data_root), train=True)
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise I2IError(f"no training images found in {self.data_root}")
        self.loader, self.sampler = make_loader(
            dataset, cfg.batch_size, cfg.seed, self.dist, cfg.num_workers,
            pin_memory=cfg.pin_memory and self.device.type == "cuda", persistent_workers=cfg.persistent_workers,
        )
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size + (len(self.sampler) % cfg.batch_size > 0)
        if cfg.lr_unit == "iter":  # the length is in iterations: as many epochs as they take
            self.total_steps = cfg.n_iters + cfg.n_iters_decay
            self.total_epochs = -(-self.total_steps // self.steps_per_epoch)
        else:
            self.total_epochs = cfg.n_epochs + cfg.n_epochs_decay
            self.total_steps = self.total_epochs * self.steps_per_epoch
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)

        # Optimisation state.
        self.groups = {"G": Group("G", [self.raw[n] for n in self.G_names], cfg.lr, cfg, self.device, self.precision)}
        if self.D_names:
            self.groups["D"] = Group("D", [self.raw[n] for n in self.D_names], cfg.lr_D or cfg.lr, cfg, self.device, self.precision)
        self.ema = {n: EMA(self.raw[n], cfg.ema_decay) for n in self.G_names} if cfg.ema_decay > 0 else {}
        self.step, self.epoch, self.epoch_pos = 0, 0, 0
        self.diversity = DiversityMonitor(cfg.diversity_threshold, cfg.diversity_patience)
        self.loss_keys: dict[str, list[str]] = {}  # each group's loss terms, named in the nan_limit error

        self.run_dir = Path(cfg.out_dir) / cfg.name
        self.validator = self._make_validator()
        self.resumed_from: Path | None = None
        if resume_from is not None:
            self.load(resume_from)
            self.resumed_from = Path(resume_from)
            if self.step >= self.total_steps:
                by_epochs = self.total_steps == self.total_epochs * self.steps_per_epoch and cfg.lr_unit == "epoch"
                by_iters = cfg.lr_unit == "iter" and self.total_steps == cfg.n_iters + cfg.n_iters_decay
                how = ("more epochs (--set n_epochs=N / n_epochs_decay=N: its epochs end at this step)" if by_epochs
                       else "more iterations (--set n_iters=N / n_iters_decay=N)" if by_iters
                       else "a larger --max-steps")
                own = Path(resume_from).resolve().is_relative_to(self.run_dir.resolve())
                what = f"the run in {self.run_dir}" if own else f"the checkpoint {resume_from}"  # --resume-from elsewhere
                raise I2IError(f"{what} is finished at step {self.step} of {self.total_steps}; to "
                               f"train longer, resume it with {how}")
        if self.dist.enabled:  # different dropout masks per rank; identical weights come from DDP's broadcast
            torch.manual_seed(cfg.seed + 1000 * self.dist.rank + self.step)

        # Wrapped views: DDP (and torch.compile) for training; discriminators unwrapped for the G step.
        self.train_nets = {n: self._wrap(net) for n, net in self.raw.items()}
        self.g_phase_nets = dict(self.train_nets)
        if self.dist.enabled:
            self.g_phase_nets.update({n: self.raw[n] for n in self.D_names})

    def _wrap(self, net: nn.Module) -> nn.Module:
        net = D.wrap(net, self.dist, self.device, self.cfg.sync_bn)
        return torch.compile(net) if self.cfg.compile else net

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_meta(self) -> dict[str, Any]:
        from ..plugins import manager

        return {
            "format": 1,
            "method": self.method.name,
            "main": self.method.main_generator,
            "generators": {n: dataclasses.asdict(self.method.generator_meta(n)) for n in self.G_names},
            "config": to_dict(self.cfg),
            "step": self.step,
            "epoch": self.epoch,
            "i2i_version": __version__,
            "plugins": {p.name: p.version for p in manager().info.values()},
        }

    def save(self, tag: str) -> Path:
        weights = {f"{n}.{k}": v for n, net in self.raw.items() for k, v in net.state_dict().items()}
        weights.update({f"ema.{n}.{k}": v for n, e in self.ema.items() for k, v in e.state_dict().items()})
        state = {
            "step": self.step, "epoch": self.epoch, "epoch_pos": self.epoch_pos,
            "groups": {k: g.state_dict() for k, g in self.groups.items()},
            "rng": rng_state(),
            "extra": self.method.extra_state(),
            "diversity": self.diversity.state_dict(),  # its ring buffer: resumed rows match an unbroken run
        }
        if self.validator is not None:
            state["validation"] = self.validator.state_dict()
        # "best" is not where a resumed run goes on from: `latest` keeps naming the newest checkpoint
        path = write_checkpoint(self.run_dir / "checkpoints" / tag, weights, self.checkpoint_meta(), state,
                                files={CARD: self.model_card(tag)}, point_latest=tag != "best")
        if tag.startswith("step_"):
            prune(self.run_dir / "checkpoints", self.cfg.keep_last)
        self._saved_at = time.monotonic()
        return path

    def load(self, directory: Path) -> None:
        """Restore networks, EMA, optimizers, schedules, RNG and position; any problem is one line."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from ..zoo import load_strict

        weights_file, state_file = directory / WEIGHTS, directory / STATE
        other = f"resume from another checkpoint of the run ({other_checkpoints(directory)})"
        try:
            weights = load_file(str(weights_file), device=str(self.device))
        except (SafetensorError, OSError) as exc:
            raise I2IError(f"{weights_file} is damaged or unreadable ({_first_line(exc)}); {other}") from None
        for n, net in self.raw.items():
            load_strict(net, {k[len(n) + 1:]: v for k, v in weights.items() if k.startswith(n + ".")},
                        f"the {n} weights in {weights_file}", f"this run's {n}")
        for n, e in self.ema.items():
            sd = {k[len(n) + 5:]: v for k, v in weights.items() if k.startswith(f"ema.{n}.")}
            if sd:
                load_strict(e.module, sd, f"the EMA {n} weights in {weights_file}", f"this run's {n}")
            else:  # EMA turned on at resume: it starts from the resumed weights
                e.module.load_state_dict(self.raw[n].state_dict())
        if not state_file.is_file():
            raise I2IError(f"{directory} has no {STATE} (weights only: it can be translated or exported, not "
                           f"resumed); {other}")
        from ..checkpoint import read_state

        state = read_state(state_file, other)  # damaged, truncated or unsafe: one line saying which
        try:
            for k, g in self.groups.items():
                g.load_state_dict(state["groups"][k])
            self.step, self.epoch, self.epoch_pos = state["step"], state["epoch"], state["epoch_pos"]
            self.method.load_extra_state(state.get("extra", {}))
            if state.get("diversity"):  # older checkpoints have none: the buffer starts empty
                self.diversity.load_state_dict(state["diversity"], self.device)
            if self.validator is not None and state.get("validation"):
                self.validator.load_state_dict(state["validation"])
            set_rng_state(state["rng"])
        except I2IError:
            raise
        except Exception as exc:  # key and shape errors of a state.pt that loaded: not one i2i wrote
            raise I2IError(f"{state_file} is damaged ({type(exc).__name__}: {_first_line(exc)}); {other}") from None

    # -- the loop ----------------------------------------------------------------------------
    def generator_steps_now(self) -> bool:
        """Whether this iteration steps G too: D steps every iteration, each on its own batch (WGAN-GP's
        fresh batch per critic iteration); G only after ``d_warmup_steps`` and then every ``d_steps``-th
        (BasicSR's net_d_init_iters and net_d_iters; Gulrajani et al. 2017 use 5)."""
        cfg = self.cfg
        if not self.D_names:
            return True
        return self.step >= cfg.d_warmup_steps and (self.step - cfg.d_warmup_steps + 1) % cfg.d_steps == 0

    def train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """One iteration: forward, a D step, a G step when due, EMA; no host sync anywhere in it."""
        method, cfg = self.method, self.cfg
        step_G = self.generator_steps_now()
        method.nets = self.train_nets
        with autocast(self.device, self.precision), torch.set_grad_enabled(step_G):  # a D-only step: no G graph
            out = method.forward(batch)
        logs: dict[str, torch.Tensor] = {}
        if self.D_names:
            d_nets = [self.raw[n] for n in self.D_names]
            set_requires_grad(d_nets, True)
            with autocast(self.device, self.precision):
                losses_D = method.discriminator_loss(batch, out)
            self.groups["D"].step(losses_D, cfg.grad_clip, self.step + 1)
            self.loss_keys["D"] = list(losses_D)
            set_requires_grad(d_nets, False)  # the generator step must not touch D's gradients
            logs.update(losses_D)
        if step_G:
            method.nets = self.g_phase_nets
            with autocast(self.device, self.precision):
                losses_G = method.generator_loss(batch, out)
            self.groups["G"].step(losses_G, cfg.grad_clip, self.step + 1)
            self.loss_keys["G"] = list(losses_G)
            for n, e in self.ema.items():  # a step skipped on the device left the weights: EMA averages them in
                e.update(self.raw[n])
            method.nets = self.train_nets
            logs.update(losses_G)
        with torch.no_grad():
            logs.update(method.metrics(batch, out))
            self.diversity.collect(method, batch, out)
        self._last_out = out
        return {k: v.detach() for k, v in logs.items()}

    def sample(self, batch: dict[str, Any]) -> None:
        meta = self.method.generator_meta()
        columns = self.method.visuals(batch, self._last_out)
        save_grid(self.run_dir / "samples" / f"step_{self.step:07d}.png", columns, meta.value_range)
        if self.validator is not None:  # the same validation images at every sample
            columns = self.validator.visuals(self.raw, self.ema)
            save_grid(self.run_dir / "samples" / f"val_step_{self.step:07d}.png", columns, meta.value_range)

    def fit(self) -> Path:
        cfg, main = self.cfg, self.dist.is_main
        self._saved_at = time.monotonic()
        stop = _StopOnSignal()
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            import yaml

            (self.run_dir / "config.yaml").write_text(yaml.safe_dump({"method": self.method.name, **to_dict(cfg)}, sort_keys=False))
        log = RunLog(self.run_dir, self.total_steps, self.step, enabled=main)
        when = f"within {STOP_CHECK_SECONDS:.0f} s (the ranks agree on it)" if self.dist.enabled else "after this step"
        stop.on_first = lambda name: log.info(
            f"i2i: {name}: stopping {when} to save a checkpoint ("
            + ("press Ctrl-C again to abort" if name == "SIGINT" else "a second signal aborts") + " at once, saving nothing)")
        first_step, first_tick = self.step, time.perf_counter()
        # under DDP, steps between signal checks: every step until the first log step has timed them
        self._stop_every = 1
        log.info(f"i2i: training {self.method.name} on {self._data_description()} "
                 f"-> {self.run_dir}; device {self.device}, precision {self.precision}, "
                 f"{self.steps_per_epoch} steps/epoch, {self.total_steps} steps"
                 + (f", {self.dist.world_size} processes" if self.dist.enabled else ""))
        if self.resumed_from is not None:
            log.info(f"i2i: resuming from step {self.step} (epoch {self.epoch}) of {self.resumed_from}")
        for net in self.raw.values():
            net.train()
        sums: dict[str, torch.Tensor] = {}  # running loss sums: device tensors, read at log steps only
        counts: dict[str, int] = {}  # steps that logged each key (G's only every d_steps-th)
        window, data_time, compute_time, images = 0, 0.0, 0.0, 0
        self._said_skip = any(g.read()["skipped"] for g in self.groups.values())
        try:
            stop.install()
            while self.epoch < self.total_epochs and self.step < self.total_steps:
                self.sampler.set_position(self.epoch, self.epoch_pos)
                tick = time.perf_counter()
                # the next batch is copied to the device while this step runs (i2i/engine/prefetch.py)
                for batch in Prefetcher(self.loader, self.method.to_device, self.device, cfg.channels_last):
                    started = time.perf_counter()
                    data_time += started - tick
                    logs = self.train_step(batch)
                    if self.device.type == "cuda" and (self.step + 1) % cfg.log_every == 0:
                        torch.cuda.synchronize()
                    tick = time.perf_counter()
                    compute_time += tick - started
                    n = next(v for v in batch.values() if isinstance(v, torch.Tensor)).shape[0]
                    images += n * self.dist.world_size
                    self.step += 1
                    self.epoch_pos += n
                    window += 1
                    lr = self.groups["G"].optimizer.param_groups[0]["lr"]  # the lr this step used
                    if cfg.lr_unit == "iter":
                        self._step_schedules()
                    for k, v in logs.items():
                        sums[k] = sums[k] + v.float() if k in sums else v.float()
                        counts[k] = counts.get(k, 0) + 1
                    log.step()
                    at_log = self.step % cfg.log_every == 0 or self.step == self.total_steps
                    if at_log:  # the host reads the device here (and at samples and saves), never per step
                        elapsed = data_time + compute_time
                        if self.dist.enabled:  # steps between signal checks, from this window's step time
                            self._stop_every = self._agree_stop_every(elapsed / window)
                        self._log_window(log, sums, counts, {
                            "lr": lr, "data_time": data_time / window, "compute_time": compute_time / window,
                            "images_per_s": images / elapsed if elapsed else 0.0})
                        sums, counts, window, data_time, compute_time, images = {}, {}, 0, 0.0, 0.0, 0
                    if main and cfg.sample_every and self.step % cfg.sample_every == 0:
                        self.sample(batch)
                    if self.validator is not None and self.step % cfg.val_every == 0:
                        tick += self.validate(log)  # validation time is not data time
                    if self.step in (first_step + 5, first_step + 15) and self.device.type == "cuda":
                        torch.cuda.synchronize()  # the host runs ahead of the GPU: time what the GPU did
                    if self.step == first_step + 5:  # the first steps include start-up (workers, caches, kernels)
                        first_tick = time.perf_counter()
                    elif self.step == first_step + 15:  # so time the next ten
                        self._say_duration(log, (time.perf_counter() - first_tick) / 10)
                    due = cfg.save_every_minutes > 0 and time.monotonic() - self._saved_at >= 60 * cfg.save_every_minutes
                    if main and ((cfg.save_every and self.step % cfg.save_every == 0) or due):
                        self.save(f"step_{self.step:07d}")
                    # Every rank stops at the same step. Alone: after this step. Under DDP the ranks agree
                    # through an all-reduce (a host sync) every stop_every steps, about STOP_CHECK_SECONDS
                    # apart (measured at log steps), since torchrun kills its workers 30 s after it forwards
                    # a signal. At the last step the run just finishes: its final checkpoint is the save.
                    check = not self.dist.enabled or at_log or self.step % self._stop_every == 0
                    if check and self.step < self.total_steps and D.any_rank(stop.signal is not None, self.dist,
                                                                             self.device):
                        self._interrupted(log, stop.signal or "a signal on another rank")
                    if self.step >= self.total_steps:
                        if stop.signal is not None:
                            log.info(f"i2i: {stop.signal} came at the last step: the run finishes as planned")
                        break
                else:  # the epoch ran to its end
                    self.epoch += 1
                    self.epoch_pos = 0
                    if cfg.lr_unit == "epoch":
                        self._step_schedules()
                    if main and cfg.lr_unit == "epoch":  # by iterations an epoch may be a few steps: save_every
                        self.save("last")                 # and save_every_minutes keep those runs instead
                    continue
                break
            if main:
                if self.validator is not None and (self.validator.last is None or self.validator.last.step != self.step):
                    self.validate(log)  # the final checkpoint's card gets the metrics of its step
                self.sample(batch)
                path = self.save("final")
                skipped = sum(g.read()["skipped"] for g in self.groups.values())
                log.info(f"i2i: done at step {self.step}; checkpoint {path}"
                         + (f"; {skipped} step(s) skipped for non-finite losses" if skipped else ""))
            # The other ranks wait for rank 0's final save: a rank that tears its gloo/NCCL group down
            # while a peer still holds the connection can abort in C++ ("terminate called without an
            # active exception", SIGABRT), failing a run that finished.
            D.barrier(self.dist)
        finally:
            stop.uninstall()
            log.close()
            D.cleanup(self.dist)
        return self.run_dir

    def _agree_stop_every(self, seconds_per_step: float) -> int:
        """Under DDP: every how many steps the ranks check for a signal, so that a check comes about every
        STOP_CHECK_SECONDS (at most every log_every steps); the slowest rank's figure, agreed by all."""
        steps = max(1, min(self.cfg.log_every, int(STOP_CHECK_SECONDS / max(seconds_per_step, 1e-6))))
        return D.min_int(steps, self.dist, self.device)

    def _step_schedules(self) -> None:
        """Step every group's LR schedule (per epoch or per iteration, ``lr_unit``)."""
        with warnings.catch_warnings():  # during d_warmup_steps G's optimizer has not stepped yet: torch warns
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            for g in self.groups.values():
                g.scheduler.step()

    def _log_window(self, log: RunLog, sums: dict[str, torch.Tensor], counts: dict[str, int],
                    extra: dict[str, float]) -> None:
        """One metrics.jsonl row: the window's mean losses, the diversity monitor and the skip counters,
        read from the device in one go; then the warnings and the nan_limit stop (here, not per step)."""
        keys = list(sums)
        div = self.diversity.value()
        wanted = [sums[k] for k in keys] + ([div.float()] if div is not None else [])
        values = torch.stack(wanted).tolist() if wanted else []
        record = {k: values[i] / counts[k] for i, k in enumerate(keys)}
        if div is not None:
            record["diversity"] = values[-1]
        record = D.all_reduce_mean(record, self.dist, self.device)
        counters = {n: g.read() for n, g in self.groups.items()}
        skipped = sum(c["skipped"] for c in counters.values())
        log.write({"step": self.step, "epoch": self.epoch, "lr": extra.pop("lr"), **record, **extra,
                   "skipped_steps": skipped})
        if skipped and not self._said_skip:  # the run's first: say it once
            self._said_skip = True
            first = min(c["first_skip"] for c in counters.values() if c["skipped"])
            log.info(f"i2i: warning: step {first}: a loss is not finite "
                     f"({', '.join(n for n, c in counters.items() if c['skipped'])}); the step is skipped. "
                     f"metrics.jsonl counts them (skipped_steps); {self.cfg.nan_limit} in a row stop the run "
                     f"(checked every log_every={self.cfg.log_every} steps)")
        warning = self.diversity.check(record.get("diversity"), self.step)
        if warning:
            log.info(warning)
        for n, c in counters.items():
            if c["worst"] >= self.cfg.nan_limit:
                terms = ", ".join(f"{k}={record[k]:.3g}" for k in self.loss_keys.get(n, ()) if k in record)
                fp32 = "" if self.precision == "fp32" else "--precision fp32 or "
                raise I2IError(f"{c['worst']} non-finite {n} losses in a row by step {self.step} ({terms}); lower "
                               f"lr, try {fp32}a gradient clip (--set grad_clip=1)")

    # -- validation and the model card (i2i/engine/validation.py, i2i/modelcard.py) -------------
    def _make_validator(self) -> Validator | None:
        """The validator (rank 0 only: it alone saves checkpoints), or None when validation is off."""
        if not self.val_metrics or not self.dist.is_main:
            return None
        return Validator(self.method, self.cfg, self.val_metrics, self.data_root, self.device, self.precision)

    def validate(self, log: RunLog) -> float:
        """Validate at this step: log the row, say it, save ``best`` when select_by improved; returns seconds."""
        assert self.validator is not None
        started = time.perf_counter()
        info = self.validator.run(self.step, self.raw, self.ema)
        log.write_row(self.validator.record(self.epoch))
        shown = ", ".join(f"{k} {v:.4g}" for k, v in info.values.items())
        log.info(f"i2i: validation at step {self.step}: {shown} ({info.images} images, {info.seconds:.2f} s)")
        if self.validator.improved:
            self.save("best")
        return time.perf_counter() - started

    def model_card(self, tag: str) -> str:
        """The Markdown card written into the checkpoint folder ``tag`` (i2i/modelcard.py)."""
        from ..modelcard import data_info, render, reproduce_command, weights_line
        from ..plugins import manager

        name, kwargs = self.method.generator_specs[self.method.main_generator]
        config = to_dict(self.cfg)
        defaults = to_dict(type(self.cfg)())
        command = reproduce_command(self.method.name, {k: v for k, v in config.items() if k not in ("name", "out_dir")},
                                    defaults)
        return render(method=self.method.name, tag=tag, generator=name, generator_kwargs=kwargs,
                      main_net=self.method.main_generator,
                      data=data_info(self.cfg.data, self._data_size(), self._data_parts()),
                      step=self.step, epoch=self.epoch, total_steps=self.total_steps, precision=self.precision,
                      device=str(self.device), i2i_version=__version__,
                      plugins={p.name: p.version for p in manager().info.values()}, command=command,
                      validation=self.validator.last if self.validator is not None else None,
                      ema=bool(self.ema),
                      initial_weights=[weights_line(k, str(getattr(self.cfg, k))) for k in ("init", "init_from")
                                       if getattr(self.cfg, k, "")])

    def _data_parts(self) -> list[int] | None:
        """Each domain's image count for two unpaired image sets (CycleGAN: A, B), else None."""
        dataset = self._base_dataset()
        a, b = getattr(dataset, "paths_A", None), getattr(dataset, "paths_B", None)
        return [len(a), len(b)] if isinstance(a, list) and isinstance(b, list) else None

    def _data_description(self) -> str:
        """``ROOT (N images)``, or ``DIR_A + DIR_B (69 + 300 images)`` for two unpaired sets."""
        from ..modelcard import size_text

        dataset = self._base_dataset()
        parts = self._data_parts()
        if parts and getattr(dataset, "dir_A", None) is not None:
            return f"{dataset.dir_A} + {dataset.dir_B} ({size_text(None, parts)} images)"  # type: ignore[attr-defined]
        return f"{self.data_root} ({len(self.loader.dataset)} images)"  # type: ignore[arg-type]

    def _base_dataset(self) -> Any:
        """The method's dataset under the engine's wrappers (SeededItems: ``.dataset``)."""
        dataset = self.loader.dataset
        while not hasattr(dataset, "paths_A") and hasattr(dataset, "dataset"):
            dataset = dataset.dataset
        return dataset

    def _data_size(self) -> int:
        """Training images: dataset items, less SR's ``repeat`` (crops per image and epoch)."""
        dataset = self.loader.dataset
        return len(dataset) // max(int(getattr(dataset, "repeat", 1) or 1), 1)  # type: ignore[arg-type]

    def _interrupted(self, log: RunLog, why: str) -> None:
        """Save ``interrupted`` (rank 0) and stop with TrainingInterrupted, saying how to resume."""
        path = self.save("interrupted") if self.dist.is_main else None
        out = "" if Path(self.cfg.out_dir) == Path("runs") else f" --out-dir {self.cfg.out_dir}"
        raise TrainingInterrupted(
            f"{why} at step {self.step} of {self.total_steps}: saved {path}; resume with "
            f"`i2i train {self.method.name} --name {self.cfg.name}{out} --resume`",
            exit_code=143 if "SIGTERM" in why else 130)

    def _say_duration(self, log: RunLog, seconds_per_step: float) -> None:
        """The expected duration from the first steps; on a CPU with hours to go, how to get a quick look."""
        left = (self.total_steps - self.step) * seconds_per_step
        if self.step >= self.total_steps:
            return
        log.info(f"i2i: {seconds_per_step:.2f} s/step here: {self.total_steps - self.step} steps to go take about "
                 f"{_duration(left)}")
        if self.device.type == "cpu" and left > 2 * 3600:
            quick = (f"`--config {self.method.name}_facades_quick` trains facades in ~13 minutes on 2 quiet cores"
                     if self.method.name == "pix2pix" else "--max-steps or a smaller crop_size make a shorter run")
            log.info(f"i2i: that is a GPU-sized job on this CPU (a GPU runs it tens of times faster); {quick}")


def train(method_name: str, cfg: TrainConfig, resume_from: Path | None = None) -> Path:
    """Train ``method_name`` with ``cfg``; returns the run directory."""
    return Trainer(method_name, cfg, resume_from).fit()


__all__ = ["Trainer", "TrainingInterrupted", "train", "build_method"]
