"""Learning-rate schedules, stepped once per epoch (the reference's policy)."""

from __future__ import annotations

from typing import Callable

from ..errors import I2IError

POLICIES = ("linear", "constant")


def lr_lambda(policy: str, n_epochs: int, n_epochs_decay: int) -> Callable[[int], float]:
    """Factor of the base LR at a given epoch: constant for n_epochs, then linear decay to ~0."""
    if policy == "constant":
        return lambda epoch: 1.0
    if policy == "linear":
        return lambda epoch: 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)
    raise I2IError(f"unknown lr_policy {policy!r}; choose one of {', '.join(POLICIES)}")
