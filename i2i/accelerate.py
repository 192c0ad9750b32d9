"""Opt-in accelerators: the host side of the ``accelerate`` hook (:mod:`i2i.hookspecs`).

``cpu_kernels(module, device, precision)`` is what ``--set cpu_kernels=true`` (the engine, on each
generator, and on each discriminator unless a gradient penalty differentiates it twice) and
``i2i.load(..., cpu_kernels=True)`` (``i2i translate --cpu-kernels``) call. It asks
every plugin's ``accelerate`` hook, in registration order, and returns how many layers they
changed. Nothing is asked off the CPU or outside fp32: the CPU kernels are for that case only, and
the built-in networks run as the plain ``torch.nn`` modules they are everywhere else.
"""

from __future__ import annotations

import warnings
from typing import Any


class AccelerateWarning(UserWarning):
    """CPU kernels were asked for but do not apply (device, precision, or no plugin offers them)."""


def cpu_kernels(module: Any, device: Any, precision: str = "fp32") -> int:
    """Hand ``module`` (already on ``device``) to every accelerator plugin; returns the layers swapped.

    Off the CPU or outside fp32 it warns and changes nothing; with no accelerator plugin loaded
    (``I2I_BLOCK_PLUGINS=i2i_cpu``) it warns and the plain layers run.
    """
    import torch

    from .plugins import _one_line, manager

    device = torch.device(device)
    if device.type != "cpu" or precision != "fp32":
        warnings.warn(f"i2i: cpu_kernels ignored: they are for fp32 on the CPU, and this runs {precision} on {device}",
                      AccelerateWarning, stacklevel=2)
        return 0
    impls = list(reversed(manager().pm.hook.accelerate.get_hookimpls()))  # registration order
    if not impls:
        warnings.warn("i2i: cpu_kernels asked for, but no plugin offers them (is i2i_cpu blocked by "
                      "I2I_BLOCK_PLUGINS?); running the plain layers", AccelerateWarning, stacklevel=2)
        return 0
    swapped = 0
    for impl in impls:
        try:
            swapped += int(impl.function(module=module, device=device, precision=precision) or 0)
        except Exception as exc:  # noqa: BLE001 - a broken accelerator must not stop the run
            warnings.warn(f"i2i: plugin {impl.plugin_name!r} skipped in accelerate: {_one_line(exc)}",
                          AccelerateWarning, stacklevel=2)
    return swapped
