"""Small building blocks shared by the built-in networks (norm layers, the reference init)."""

from __future__ import annotations

import functools
from typing import Callable

from torch import nn

from .errors import I2IError

NORMS = ("batch", "instance", "none")


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The reference's norm choices: BatchNorm (affine, running stats), InstanceNorm (neither), none."""
    if norm == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm == "none":
        return lambda channels: nn.Identity()
    raise I2IError(f"unknown norm {norm!r}; choose one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Convolutions followed by BatchNorm carry no bias (the reference layout)."""
    return norm != "batch"


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """The reference initialisation: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    for m in net.modules():
        name = type(m).__name__
        if hasattr(m, "weight") and m.weight is not None and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise I2IError(f"unknown init_type {init_type!r}; choose normal, xavier, kaiming or orthogonal")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net

