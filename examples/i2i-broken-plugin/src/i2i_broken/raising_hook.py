"""Imports fine, registers a loss, then its generator hook raises halfway."""

import i2i
from torch import nn


@i2i.hookimpl
def register_generators(register):
    register("broken_identity", nn.Identity)  # dropped: the hook raises afterwards
    raise RuntimeError("this hook is broken on purpose")


@i2i.hookimpl
def register_losses(register):
    register("broken_plugin_l1", nn.L1Loss, kind="pixel")  # this hook works: the loss stays
