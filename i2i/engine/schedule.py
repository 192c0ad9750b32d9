"""Learning-rate schedules, stepped once per epoch (the reference's policy)."""

from __future__ import annotations

from typing import Callable, Sequence

from ..errors import I2IError

POLICIES = ("linear", "constant", "step")


def lr_lambda(policy: str, n_epochs: int, n_epochs_decay: int, milestones: Sequence[int] = (),
              gamma: float = 0.5) -> Callable[[int], float]:
    """Factor of the base LR at a given epoch.

    ``linear``: constant for n_epochs, then linear decay to ~0 over n_epochs_decay (pix2pix/CycleGAN).
    ``constant``: always 1. ``step``: multiplied by ``gamma`` at each epoch of ``milestones`` (the
    SRGAN/ESRGAN papers' halvings: ESRGAN halves at 50k, 100k, 200k and 300k of 400k steps).
    """
    if policy == "constant":
        return lambda epoch: 1.0
    if policy == "linear":
        return lambda epoch: 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)
    if policy == "step":
        marks = list(milestones)
        if not marks or any(m <= 0 for m in marks) or marks != sorted(set(marks)):
            raise I2IError(f"lr_policy 'step' needs lr_milestones: increasing positive epochs, e.g. [50, 100]; got {marks}")
        if not 0 < gamma <= 1:
            raise I2IError(f"lr_gamma must be in (0, 1], got {gamma}")
        return lambda epoch: gamma ** sum(epoch >= m for m in marks)
    raise I2IError(f"unknown lr_policy {policy!r}; choose one of {', '.join(POLICIES)}")
