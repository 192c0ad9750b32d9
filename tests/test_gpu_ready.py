"""GPU-ready stepping, proved on the CPU: no host read of a tensor inside a step (every such read
is a device sync on CUDA), non-finite steps skipped on the device, the prefetcher a plain loop here."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch
from torch import nn

import tiny_pix2pix
from i2i.config import TrainConfig, build
from i2i.engine import Trainer
from i2i.engine.precision import masked_step, nonfinite_flag
from i2i.engine.prefetch import Prefetcher
from i2i.engine.trainer import Group
from tiny_pix2pix import copy_facades, needs_facades, tiny_config

#: the Python doors through which a tensor's value reaches the host
READS = ("__bool__", "__float__", "__int__", "__index__", "__format__", "item", "tolist", "numpy")


class SyncCounter:
    """Counts host reads of tensor values, split into those inside allowed places (logging, samples,
    saves) and the rest; counting starts at the first step."""

    def __init__(self) -> None:
        self.allowed_depth = 0
        self.started = False
        self.inside, self.outside = 0, []

    @contextlib.contextmanager
    def allowed(self):
        self.allowed_depth += 1
        try:
            yield
        finally:
            self.allowed_depth -= 1

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in READS:
            original = getattr(torch.Tensor, name)

            def counting(self_, *args, _original=original, _name=name, **kwargs):
                if self.started:
                    if self.allowed_depth:
                        self.inside += 1
                    else:
                        import traceback

                        self.outside.append(f"{_name}: {traceback.format_stack(limit=4)[-2].strip()}")
                return _original(self_, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counting)

    def wrap(self, monkeypatch: pytest.MonkeyPatch, cls: type, name: str, start: bool = False) -> None:
        original = getattr(cls, name)

        def wrapper(*args, **kwargs):
            if start:
                self.started = True
                return original(*args, **kwargs)
            with self.allowed():
                return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)


def run_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, **overrides) -> SyncCounter:
    counter = SyncCounter()
    for method in ("_log_window", "sample", "save", "_say_duration"):
        counter.wrap(monkeypatch, Trainer, method)
    counter.wrap(monkeypatch, Trainer, "train_step", start=True)
    # the DataLoader works on host tensors only (sampler order, items, collation: a worker's job with
    # num_workers > 0), never on the device
    from torch.utils.data.dataloader import _BaseDataLoaderIter

    counter.wrap(monkeypatch, torch.utils.data.DataLoader, "__iter__")
    counter.wrap(monkeypatch, _BaseDataLoaderIter, "__next__")
    counter.wrap(monkeypatch, Group, "read")  # the counters' one read (log rows, the closing line)
    # Method.to_device reads the batch's host-side geometry (CPU tensors by design: i2i/data/batch.py)
    # before its images go to the device; on CUDA those reads touch no device memory
    from i2i.method import Method

    counter.wrap(monkeypatch, Method, "to_device")
    counter.patch(monkeypatch)
    settings = [*tiny_pix2pix.TINY, "n_epochs=2", "n_epochs_decay=0", "save_every_minutes=0", "sample_every=0"]
    cfg = tiny_config(settings, **{"data": tmp_path / "facades", "out_dir": tmp_path / "runs", "name": name,
                                   "log_every": 3, "max_steps": 8, **overrides})
    Trainer("pix2pix", cfg).fit()
    monkeypatch.undo()
    return counter


@needs_facades
def test_no_host_sync_inside_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """8 steps over an epoch boundary with gradient clipping, EMA, a D-only step (d_steps=2) and the
    diversity monitor: the host reads tensors at log steps (3, 6, 8) and saves only."""
    copy_facades(tmp_path / "facades", 6)
    counter = run_counted(tmp_path, monkeypatch, "quiet", grad_clip=1.0, ema_decay=0.9, d_steps=2)
    assert counter.outside == [], counter.outside[:5]
    assert counter.inside > 0  # the counter does see reads where they are allowed (the log rows)


@needs_facades
def test_the_counter_catches_a_sync_in_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old guard, ``bool(torch.isfinite(total))`` in every step, is caught: the test can fail."""
    copy_facades(tmp_path / "facades", 6)
    original = Group.step

    def old_guard(self, losses, *args, **kwargs):
        bool(torch.isfinite(sum(losses.values())))
        return original(self, losses, *args, **kwargs)

    monkeypatch.setattr(Group, "step", old_guard)
    counter = run_counted(tmp_path, monkeypatch, "syncs", max_steps=3)
    assert len(counter.outside) == 6 and all(s.startswith("__bool__") for s in counter.outside)  # G and D, 3 steps


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_a_nonfinite_step_is_skipped_on_the_device(optimizer: str) -> None:
    """fp32: parameters and optimizer state stay bitwise as they were, the counters count it."""
    torch.manual_seed(0)
    net = nn.Linear(4, 2)
    cfg = build(TrainConfig, overrides={"optimizer": optimizer, **({"momentum": 0.9} if optimizer == "rmsprop" else {})})
    group = Group("G", [net], 1e-2, cfg, torch.device("cpu"), "fp32")
    x = torch.randn(8, 4)
    group.step({"loss": net(x).pow(2).mean()}, 0.0, at_step=1)  # state exists after a good step
    params = [p.detach().clone() for p in net.parameters()]
    state = {i: {k: v.clone() for k, v in group.optimizer.state[p].items()} for i, p in enumerate(net.parameters())}
    group.step({"loss": net(x).pow(2).mean() * float("nan")}, 1.0, at_step=2)
    group.step({"loss": (net(x) * torch.tensor([1.0, float("inf")])).sum()}, 0.0, at_step=3)  # inf loss
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))
    for i, p in enumerate(net.parameters()):
        assert all(torch.equal(state[i][k], v) for k, v in group.optimizer.state[p].items())
    group.step({"loss": net(x).pow(2).mean()}, 0.0, at_step=4)
    assert not all(torch.equal(a, b) for a, b in zip(params, net.parameters()))  # and it trains on
    assert group.read() == {"skipped": 2, "streak": 0, "worst": 2, "first_skip": 2}
    assert group.read()["worst"] == 0  # the worst streak is per read (log window)


def test_a_first_step_that_is_not_finite_leaves_no_state() -> None:
    net = nn.Linear(3, 1)
    before = [p.detach().clone() for p in net.parameters()]
    cfg = build(TrainConfig, overrides={"optimizer": "rmsprop"})
    group = Group("G", [net], 1e-2, cfg, torch.device("cpu"), "fp32")
    group.step({"loss": net(torch.randn(2, 3)).sum() * float("nan")}, 0.0, at_step=1)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(float(v.abs().sum()) == 0 for p in net.parameters() for v in group.optimizer.state[p].values())


def test_nonfinite_flag_sees_gradients_and_losses() -> None:
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([0.0, float("inf"), 1.0])
    assert float(nonfinite_flag(torch.tensor(1.0), [p])) == 1.0
    p.grad = torch.zeros(3)
    assert float(nonfinite_flag(torch.tensor(1.0), [p])) == 0.0
    assert float(nonfinite_flag(torch.tensor(float("nan")), [p])) == 1.0
    opt = torch.optim.RMSprop([p], lr=1.0)
    p.grad = torch.ones(3)
    masked_step(opt, torch.tensor(0.0))
    assert not torch.equal(p.detach(), torch.ones(3))  # a clean flag steps


def test_prefetcher_on_cpu_is_the_plain_loop() -> None:
    batches = [{"A": torch.full((1, 3, 4, 4), float(i)), "path": [str(i)]} for i in range(3)]
    seen = list(Prefetcher(batches, lambda b: {**b, "moved": True}, torch.device("cpu"), channels_last=True))
    assert [int(b["A"][0, 0, 0, 0]) for b in seen] == [0, 1, 2] and all(b["moved"] for b in seen)
    assert all(b["A"].is_contiguous(memory_format=torch.channels_last) for b in seen)


# -- on CUDA (test_cuda_*: marked cuda by conftest, skipped without a GPU; bench/gpu_check.sh runs them)


def test_cuda_prefetcher_moves_batches_on_a_side_stream() -> None:
    device = torch.device("cuda")
    batches = [{"A": torch.full((2, 3, 8, 8), float(i)).pin_memory(), "path": [str(i)]} for i in range(4)]
    moved = Prefetcher(batches, lambda b: {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                                           for k, v in b.items()}, device)
    sums = [float(b["A"].sum()) for b in moved]  # each read on the compute stream, after its copy
    assert sums == [0.0, 384.0, 768.0, 1152.0]


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_cuda_a_nonfinite_step_is_skipped_without_a_sync(optimizer: str) -> None:
    torch.manual_seed(0)
    net = nn.Linear(4, 2).cuda()
    cfg = build(TrainConfig, overrides={"optimizer": optimizer})
    group = Group("G", [net], 1e-2, cfg, torch.device("cuda"), "fp32")
    x = torch.randn(8, 4, device="cuda")
    group.step({"loss": net(x).pow(2).mean()}, 1.0, at_step=1)
    before = [p.detach().clone() for p in net.parameters()]
    torch.cuda.set_sync_debug_mode("error")
    try:
        group.step({"loss": net(x).pow(2).mean() * float("nan")}, 1.0, at_step=2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert group.read()["skipped"] == 1


def test_cuda_steps_raise_no_sync_in_torch_sync_debug_mode(tmp_path: Path) -> None:
    """On CUDA, torch's own detector: a synchronising call inside a step is an error."""
    copy_facades(tmp_path / "facades", 6)
    settings = [*tiny_pix2pix.TINY, "n_epochs=2", "n_epochs_decay=0", "save_every_minutes=0", "sample_every=0"]
    cfg = tiny_config(settings, **{"data": tmp_path / "facades", "out_dir": tmp_path / "runs", "name": "cuda",
                                   "device": "cuda", "precision": "fp16", "log_every": 100, "max_steps": 6})
    trainer = Trainer("pix2pix", cfg)
    original = trainer.train_step

    def strict(batch):
        torch.cuda.set_sync_debug_mode("error")
        try:
            return original(batch)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    trainer.train_step = strict  # type: ignore[method-assign]
    trainer.fit()
