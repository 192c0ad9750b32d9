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

Networks are built through the host, in the contract's words (:mod:`i2i.contract`), never with a
method's own keyword vocabulary, so that any registered generator or discriminator that can give
what the method needs trains in it::

    self.make_generator("G", cfg.generator, cfg.generator_kwargs, in_channels=3, out_channels=3, scale=1,
                        extra_inputs=())
    self.make_discriminator("D", cfg.discriminator, cfg.discriminator_kwargs, in_channels=6)
    self.adversarial = self.make_adversarial(cfg.gan_loss, gp_weight=cfg.gp_weight)

Batches hold images in the method's ``data_range``; :meth:`Method.generate` maps them into a
generator's own ``value_range`` and back, so a [0, 1] generator trains in a [-1, 1] method.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from .artifact import GeneratorMeta
from .config import TrainConfig
from .errors import I2IError
from .registry import DiscriminatorSpec, GeneratorSpec, discriminators, generators, losses

Batch = dict[str, Any]


class Method:
    """Base class for methods; subclasses set ``Config`` and implement the hooks below."""

    #: registry name, set by the host when the method is created
    name: ClassVar[str] = ""
    #: the method's config dataclass (a TrainConfig subclass with the method's own fields)
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    #: value range of the images in this method's batches (generators see their own range: generate)
    data_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)

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
        #: the value_range of every generator, by net name (see generate)
        self.value_ranges: dict[str, tuple[float, float]] = {}

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

    def diversity_images(self, batch: Batch, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(generated, real) image batches [N, C, H, W] in one value range, for the engine's mode-collapse
        monitor (i2i/engine/monitor.py; run under no_grad). Default: the sample grid's output (second
        column) and target (last column) from :meth:`visuals`; override when the grid is laid out otherwise."""
        columns = self.visuals(batch, out)
        return columns[1], columns[-1]

    def extra_state(self) -> dict[str, Any]:
        """Training state beyond networks and optimizers (e.g. an image pool), as tensors/plain data."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what extra_state returned."""

    def to_device(self, batch: Batch) -> Batch:
        """Move the batch's tensors to the training device."""
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # -- optional, for the conformance suite (i2i.testing.check_method_trains) ------------------
    @classmethod
    def conformance_config(cls, generator: GeneratorSpec | None = None,
                           discriminator: DiscriminatorSpec | None = None) -> dict[str, Any] | None:
        """Config overrides for one tiny training step with these networks (None: the method's
        own; their ``test_kwargs``, small images). Return None when the method takes no part."""
        return None

    def example_batch(self, batch_size: int = 2) -> Batch:
        """A random batch shaped like the method's dataset items at its config (conformance suite)."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------
    @property
    def method_name(self) -> str:
        return self.name or type(self).__name__

    def make_generator(self, net: str, name: str, kwargs: Mapping[str, Any] | None = None, *,
                       in_channels: int | None = None, out_channels: int | None = None, scale: int | None = None,
                       extra_inputs: Sequence[str] | None = None, source: str = "generator_kwargs",
                       **more: Any) -> nn.Module:
        """Build registered generator ``name`` as ``self.nets[net]``, asking for what the method needs.

        ``kwargs`` (and ``more``) are the user's, in the generator's own keywords; ``in_channels``,
        ``out_channels``, ``scale`` and ``extra_inputs`` (the inputs after the image, by name:
        ``("mask",)``) are asked through the contract (None: not asked). A generator that cannot
        give them is a one-line ContractError naming the method and the generator.
        """
        from .contract import build, generator_kwargs

        spec = generators().get(name)
        full = generator_kwargs(spec, {**(kwargs or {}), **more}, method=self.method_name, in_channels=in_channels,
                                out_channels=out_channels, scale=scale, extra_inputs=extra_inputs, source=source)
        module = build("generator", spec, full, source)
        self.nets[net] = module
        self.generator_nets.append(net)
        self.generator_specs[net] = (name, dict(full))
        self.value_ranges[net] = (float(spec.value_range[0]), float(spec.value_range[1]))
        return module

    def make_discriminator(self, net: str, name: str, kwargs: Mapping[str, Any] | None = None, *,
                           in_channels: int | None = None, norm: str | None = None,
                           source: str = "discriminator_kwargs", **more: Any) -> nn.Module:
        """Build registered discriminator ``name`` as ``self.nets[net]``: ``in_channels`` asked
        through the contract, ``norm`` a preference used where the network offers it."""
        from .contract import build, discriminator_kwargs

        spec = discriminators().get(name)
        full = discriminator_kwargs(spec, {**(kwargs or {}), **more}, method=self.method_name,
                                    in_channels=in_channels, norm=norm, source=source)
        module = build("discriminator", spec, full, source)
        self.nets[net] = module
        self.discriminator_nets.append(net)
        return module

    def make_adversarial(self, name: str, *, gp_weight: float = 0.0, source: str = "gan_loss",
                         **loss_kwargs: Any) -> "Adversarial":
        """The GAN objective from registered loss ``name`` (see :class:`Adversarial`)."""
        return Adversarial(name, method=self.method_name, gp_weight=gp_weight, source=source, **loss_kwargs)

    def refuse_unused(self, keys: Sequence[str], why: str) -> None:
        """A one-line error when any of ``keys`` differs from its default: the method would not read it."""
        defaults = type(self.cfg)()
        changed = [k for k in keys if getattr(self.cfg, k) != getattr(defaults, k)]
        if changed:
            raise I2IError(f"{', '.join(f'{k}={getattr(self.cfg, k)!r}' for k in changed)} would do nothing: {why}")

    # the method's data range <-> a generator's value range
    def to_net(self, x: torch.Tensor, net: str | None = None) -> torch.Tensor:
        """Images in ``data_range`` -> the value range of generator ``net`` (default: the main one)."""
        lo, hi = self.value_ranges.get(net or self.main_generator, self.data_range)
        dlo, dhi = self.data_range
        return x if (lo, hi) == (dlo, dhi) else (x - dlo) * ((hi - lo) / (dhi - dlo)) + lo

    def from_net(self, y: torch.Tensor, net: str | None = None) -> torch.Tensor:
        """Images in the value range of generator ``net`` -> ``data_range``."""
        lo, hi = self.value_ranges.get(net or self.main_generator, self.data_range)
        dlo, dhi = self.data_range
        return y if (lo, hi) == (dlo, dhi) else (y - lo) * ((dhi - dlo) / (hi - lo)) + dlo

    def generate(self, net: str, image: torch.Tensor, *extras: torch.Tensor, **kwargs: Any) -> Any:
        """``self.nets[net](image, *extras, **kwargs)`` with ``image`` mapped into the generator's value
        range and the output (each output, for a tuple) mapped back to ``data_range``."""
        out = self.nets[net](self.to_net(image, net), *extras, **kwargs)
        if isinstance(out, tuple):
            return tuple(self.from_net(o, net) for o in out)
        return self.from_net(out, net)

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


class DomainPairMethod(Method):
    """A method on images of two domains, A and B, of the config's ``in_channels`` and ``out_channels``
    (pix2pix, CycleGAN): the conformance suite's config and example batch, the same for both.

    Subclasses name the generator and image side of their own tiny conformance config.
    """

    conformance_generator: ClassVar[str] = ""
    conformance_size: ClassVar[int] = 32

    @classmethod
    def conformance_config(cls, generator: GeneratorSpec | None = None,
                           discriminator: DiscriminatorSpec | None = None) -> dict[str, Any]:
        from .contract import tiny_kwargs

        size = generator.test_size if generator else cls.conformance_size
        out: dict[str, Any] = {"generator": cls.conformance_generator, "generator_kwargs": {"ngf": 8},
                               "crop_size": size, "load_size": size, "discriminator_kwargs": {"ndf": 8}}
        if generator:
            out.update(generator=generator.name, generator_kwargs=tiny_kwargs(generator))
        if discriminator:
            out.update(discriminator=discriminator.name, discriminator_kwargs=tiny_kwargs(discriminator))
        return out

    def example_batch(self, batch_size: int = 2) -> Batch:
        cfg, s = self.cfg, self.cfg.crop_size
        return {"A": torch.rand(batch_size, cfg.in_channels, s, s) * 2 - 1,  # type: ignore[attr-defined]
                "B": torch.rand(batch_size, cfg.out_channels, s, s) * 2 - 1}  # type: ignore[attr-defined]


class Adversarial:
    """A method's GAN objective, built from a registered ``kind="gan"`` loss and used the same way by
    every built-in method, so that each loss means what it names in each of them:

    - a relativistic loss (``needs_reference``, e.g. ``ragan``) scores each set against the other
      set's mean logit, in the discriminator step and in the generator step (which then also needs
      the discriminator's logits for the real images);
    - ``gp_weight`` > 0 adds the WGAN-GP gradient penalty to the discriminator loss (fp32); a loss
      that needs one (``needs_penalty``: ``wgan-gp``) is refused without it;
    - ``loss_kwargs`` (label smoothing: ``real_label``) are refused by a loss that has no such setting.

    Everything is checked when it is built, so with the networks: before any data is read.
    """

    def __init__(self, name: str, *, method: str = "this method", gp_weight: float = 0.0, source: str = "gan_loss",
                 **loss_kwargs: Any) -> None:
        from .contract import _parameters

        reg = losses()
        spec = reg.get(name)
        gan = [s.name for s in reg.list() if s.kind == "gan"]
        if spec.kind != "gan":
            raise I2IError(f"{source}={name} is a {spec.kind} loss, not a GAN loss; GAN losses: {', '.join(gan)}")
        if spec.needs_penalty and not gp_weight > 0:
            raise I2IError(f"{source}={name} needs a gradient penalty, which is off (gp_weight=0) in {method}: "
                           f"--set gp_weight=10 (the WGAN-GP paper's)")
        if gp_weight < 0:
            raise I2IError(f"gp_weight must be >= 0, got {gp_weight}")
        def refuse(key: str) -> I2IError:
            takers = [s.name for s in reg.list() if s.kind == "gan" and key in _parameters(s.factory)[0]]
            return I2IError(f"{key}={loss_kwargs[key]!r} does nothing with {source}={name} ({name} has no {key}); "
                            f"losses that have it: {', '.join(takers) or 'none'}")

        names, var_kw = _parameters(spec.factory)
        for key in loss_kwargs:
            if key not in names and not var_kw:
                raise refuse(key)
        try:
            self.loss: nn.Module = spec.factory(**loss_kwargs)
        except TypeError as exc:  # a factory whose signature says **kwargs (nn.Module's own __init__)
            unknown = [k for k in loss_kwargs if f"'{k}'" in str(exc)]
            if "unexpected keyword argument" not in str(exc) or not unknown:
                raise
            raise refuse(unknown[0]) from None
        self.name = name
        self.spec = spec
        self.relativistic = bool(spec.needs_reference)
        self.gp_weight = float(gp_weight)

    def discriminator_terms(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"real": ..., "fake": ...}`` (and ``"gp"``, already weighted, when gp_weight > 0): the
        discriminator's loss on real and on fake inputs. Detach the fakes before calling."""
        real_logits, fake_logits = D(real), D(fake)
        if self.relativistic:
            terms = {"real": self.loss(real_logits, True, reference=fake_logits),
                     "fake": self.loss(fake_logits, False, reference=real_logits)}
        else:
            terms = {"real": self.loss(real_logits, True), "fake": self.loss(fake_logits, False)}
        if self.gp_weight > 0:
            from .engine.penalties import gradient_penalty

            terms["gp"] = self.gp_weight * gradient_penalty(D, real, fake)
        return terms

    def generator_term(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's adversarial loss on ``fake``; a relativistic loss also needs ``real``
        (scored without gradient: the discriminator is frozen in the generator step)."""
        fake_logits = D(fake)
        if not self.relativistic:
            return self.loss(fake_logits, True, for_discriminator=False)
        if real is None:
            raise I2IError(f"the relativistic loss {self.name} needs the real images in the generator step")
        with torch.no_grad():
            real_logits = D(real)
        return 0.5 * (self.loss(real_logits, False, False, reference=fake_logits)
                      + self.loss(fake_logits, True, False, reference=real_logits))
