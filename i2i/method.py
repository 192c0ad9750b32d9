"""The method contract: what a training method (pix2pix, CycleGAN, ...) provides to the engine.

A method builds its networks and losses from its config and computes the losses for a batch.
The engine (:mod:`i2i.engine`) owns everything else: devices, autocast, loss scaling, backward,
optimizer steps, ``requires_grad`` toggling, clipping, EMA, LR schedules, checkpoints, logs,
sample grids and DDP.

One iteration of the engine::

    out = method.forward(batch)                    # generators run; fakes kept in `out`
    if method.discriminator_nets:                  # discriminators trainable
        losses_D = method.discriminator_loss(batch, out)   # detach fakes yourself
        backward(sum(losses_D.values())); step the D optimizer
    losses_G = method.generator_loss(batch, out)   # discriminators frozen here
    backward(sum(losses_G.values())); step the G optimizer
    logged: losses_D, losses_G and method.metrics(batch, out) (monitors, no gradient)

Always reach networks through ``self.nets[name]``: the engine may swap in DDP-wrapped modules,
and during ``generator_loss`` it hands you the discriminators unwrapped and frozen.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from .artifact import GeneratorMeta
from .config import TrainConfig
from .errors import I2IError
from .registry import create_discriminator, create_generator, generators

Batch = dict[str, Any]


class Method:
    """Base class for methods; subclasses set ``Config`` and implement the hooks below."""

    #: registry name, set by the host when the method is created
    name: ClassVar[str] = ""
    #: the method's config dataclass (a TrainConfig subclass with the method's own fields)
    Config: ClassVar[type[TrainConfig]] = TrainConfig

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        #: all networks by name; set by build_networks via make_generator / make_discriminator
        self.nets: dict[str, nn.Module] = {}
        self.generator_nets: list[str] = []
        self.discriminator_nets: list[str] = []
        #: registry name + kwargs of every generator, for self-describing checkpoints
        self.generator_specs: dict[str, tuple[str, dict[str, Any]]] = {}
        #: the generator exported and used by `i2i translate` by default
        self.main_generator: str = "G"
        self.device = torch.device("cpu")

    # -- to implement -------------------------------------------------------------------------
    def build_networks(self) -> None:
        """Create the networks with make_generator / make_discriminator, and the losses."""
        raise NotImplementedError

    def build_dataset(self, root: str, train: bool = True) -> Dataset:
        """The dataset over a resolved data folder; items are dicts of tensors (and paths)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Run the generators on a batch; return what the losses and visuals need."""
        raise NotImplementedError

    def discriminator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named loss terms for the discriminators (summed for backward; each one logged)."""
        raise NotImplementedError

    def generator_loss(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named loss terms for the generators (summed for backward; each one logged)."""
        raise NotImplementedError

    def visuals(self, batch: Batch, out: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Image batches in the generator's value range for the sample grid (input | output | target)."""
        raise NotImplementedError

    # -- optional -----------------------------------------------------------------------------
    def metrics(self, batch: Batch, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named monitors logged with the losses but never back-propagated (run under no_grad)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Training state beyond networks and optimizers (e.g. an image pool), as tensors/plain data."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what extra_state returned."""

    def to_device(self, batch: Batch) -> Batch:
        """Move the batch's tensors to the training device."""
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- helpers ------------------------------------------------------------------------------
    def make_generator(self, net: str, name: str, **kwargs: Any) -> nn.Module:
        module = create_generator(name, **kwargs)
        self.nets[net] = module
        self.generator_nets.append(net)
        self.generator_specs[net] = (name, dict(kwargs))
        return module

    def make_discriminator(self, net: str, name: str, **kwargs: Any) -> nn.Module:
        module = create_discriminator(name, **kwargs)
        self.nets[net] = module
        self.discriminator_nets.append(net)
        return module

    def check_crop_fits(self, generator: str, crop_size: int) -> None:
        """Training crops must have sides the generator takes: a clear error here, not a failed concat later."""
        multiple = generators().get(generator).size_multiple
        if crop_size % multiple:
            fit = max(multiple, crop_size // multiple * multiple)
            raise I2IError(f"crop_size {crop_size} does not fit {generator}, which needs sides divisible by "
                           f"{multiple}; use --set crop_size={fit} or another generator")

    def generator_meta(self, net: str | None = None) -> GeneratorMeta:
        """The self-description saved with the weights of one generator."""
        from .loader import build_meta

        net = net or self.main_generator
        name, kwargs = self.generator_specs[net]
        return build_meta(name, kwargs, method=self.name, net=net, module=self.nets[net])
