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
    #: whether a fake and the real image in the same batch position show the same scene (pix2pix,
    #: SR, inpainting: True; CycleGAN's unpaired domains: False); feature matching reads it
    paired: ClassVar[bool] = True

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
        #: registry name + full kwargs of every discriminator (make_discriminator)
        self.discriminator_specs: dict[str, tuple[str, dict[str, Any]]] = {}

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

    # -- optional, for validation during training (i2i/engine/validation.py) --------------------
    #: the metric kinds (i2i.metrics MetricSpec.kind) validation_batch can feed: "paired" needs a
    #: target that belongs to the output, "distribution" a reference set, "masked" a hole mask
    validation_kinds: ClassVar[tuple[str, ...]] = ("paired", "distribution")
    #: the metrics a validation computes when the config names none (val_metrics, select_by)
    default_val_metrics: ClassVar[tuple[str, ...]] = ()
    #: images per validation batch (None: the training batch size; 1 for whole images of many sizes)
    validation_batch_size: ClassVar[int | None] = None

    def validation_dataset(self, root: str, explicit: bool) -> Dataset:
        """The held-aside images validation reads, prepared deterministically (no random crops or flips).

        ``root`` is the resolved training data folder (``explicit`` False: find its held-aside split)
        or the resolved ``val_data`` (``explicit`` True: the images to validate on). None found is a
        one-line I2IError naming ``val_data``.
        """
        raise I2IError(f"{self.method_name} has no validation split of its own: give the images with "
                       f"--set val_data=FOLDER")

    def validation_metric_kwargs(self, name: str) -> dict[str, Any]:
        """Options for validation metric ``name`` (``i2i.metrics.create(name, **options)``): e.g. SR's
        ``crop_border`` = its scale, the SR papers' convention."""
        return {}

    def validation_batch(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(output, target, mask)`` for the metrics, from a validation batch (run under no_grad, eval mode).

        output and target: float32 N x 3 x H x W RGB in [0, 1] (grey repeated); target None when there
        is none, mask N x 1 x H x W with 1 = hole, or None. The default takes the second (output) and
        last (target) columns of :meth:`visuals`, which hold the generator's value range.
        """
        columns = self.visuals(batch, self.forward(batch))
        lo, hi = self.value_ranges.get(self.main_generator, self.data_range)
        return unit_rgb(columns[1], (lo, hi)), unit_rgb(columns[-1], (lo, hi)), None

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Images of this method's batches (``data_range``) -> float32 RGB in [0, 1], as metrics take them."""
        return unit_rgb(x, self.data_range)

    def to_device(self, batch: Batch) -> Batch:
        """Move the batch's tensors to the training device and finish its images there: pending
        ``*_geometry`` (resize, crop, flip; read on the host, so no device sync) is applied and every
        uint8 image (0..255) becomes float32 in ``data_range`` (:func:`i2i.data.batch.finish_batch`).
        Float tensors (already finished images, masks) only move."""
        from .data.batch import GEOMETRY, finish_batch

        moved = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) and not k.endswith(GEOMETRY)
                 else v for k, v in batch.items()}
        return finish_batch(moved, self.data_range)

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
                           in_channels: int | None = None, norm: str | None = None, input_size: int | None = None,
                           size_key: str = "crop_size", source: str = "discriminator_kwargs", **more: Any) -> nn.Module:
        """Build registered discriminator ``name`` as ``self.nets[net]``: ``in_channels`` asked
        through the contract, ``norm`` a preference used where the network offers it.

        ``input_size``: the side of the images it will see in training (set by config key
        ``size_key``); below the discriminator's declared minimum (:attr:`DiscriminatorSpec.min_size`)
        it is a one-line I2IError naming the key and a size that fits, raised before any data is read.
        With ``d_spectral_norm`` in the config every conv and linear layer gets spectral normalisation.
        """
        from .contract import build, discriminator_kwargs

        spec = discriminators().get(name)
        full = discriminator_kwargs(spec, {**(kwargs or {}), **more}, method=self.method_name,
                                    in_channels=in_channels, norm=norm, source=source)
        if input_size is not None:
            self.check_discriminator_fits(spec, full, input_size, size_key)
        module = build("discriminator", spec, full, source)
        if getattr(self.cfg, "d_spectral_norm", False):
            from .engine.stabilisers import spectral_normalise

            if spectral_normalise(module) == 0:  # docs/stabilisers.md: a setting that does nothing is refused
                raise I2IError(f"d_spectral_norm=true would do nothing: discriminator {spec.name} already has "
                               f"spectral normalisation on every layer; remove d_spectral_norm")
        self.nets[net] = module
        self.discriminator_nets.append(net)
        self.discriminator_specs[net] = (name, dict(full))
        return module

    #: the config key a user sets for the discriminator's layer count (a method with a shorthand key,
    #: e.g. inpaint's d_layers, names it: the min-size advice must name the key that method reads)
    layers_key: ClassVar[str] = "discriminator_kwargs.n_layers"

    def crop_multiple(self) -> int:
        """What training crops must be a multiple of: the generators' size multiples (their lcm)."""
        import math

        out = 1
        for name, _ in self.generator_specs.values():
            out = math.lcm(out, generators().get(name).size_multiple)
        return out

    def _generators_min_size(self) -> int:
        return max([self._generator_min_size(net) for net in self.generator_specs] or [1])

    def _generator_min_size(self, net: str) -> int:
        """Generator ``net``'s smallest side: its spec's ``min_size``, or what ``describe`` reads off the
        built instance (spandrel's architectures)."""
        spec = generators().get(self.generator_specs[net][0])
        own = spec.describe(self.nets[net]) if spec.describe is not None and net in self.nets else {}
        return max(1, int(own.get("min_size", spec.min_size)))

    def generator_min_crop(self) -> int:
        """The smallest training crop (``crop_size``) the generators take; a method whose crop is not
        what the generator sees (super-resolution: crop_size is the HR side) overrides it."""
        return self._generators_min_size()

    def check_generators_fit(self, size_key: str = "crop_size") -> None:
        """A one-line I2IError, before any data is read, when the config's ``size_key`` is below the
        generators' declared minimum (:attr:`GeneratorSpec.min_size`; e.g. a ResNet generator's
        InstanceNorm needs more than one pixel at its 1/4-size bottleneck). Called by the engine after
        ``build_networks`` for every method."""
        size = getattr(self.cfg, size_key, None)
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or not self.generator_specs:
            return
        least = self.generator_min_crop()
        if size >= least:
            return
        from .registry import discriminator_min_size

        m = self.crop_multiple()
        d_least = max([discriminator_min_size(discriminators().get(n), kw) for n, kw in self.discriminator_specs.values()]
                      or [1])
        fit = -(-max(least, d_least) // m) * m
        names = ", ".join(sorted({n for n, _ in self.generator_specs.values()}))
        raise I2IError(f"{size_key} {size} is too small for generator {names}, which takes {size_key} of at least "
                       f"{least}; use --set {size_key}={fit} or another generator")

    def check_discriminator_fits(self, spec: DiscriminatorSpec, kwargs: Mapping[str, Any], input_size: int,
                                 size_key: str = "crop_size") -> None:
        """A one-line I2IError when ``input_size`` is below what discriminator ``spec`` built with
        ``kwargs`` takes; it names ``size_key``, the smallest size that fits the generators too, and
        (for a network with ``n_layers``) the other way out."""
        from .contract import _parameters
        from .registry import discriminator_min_size

        least = discriminator_min_size(spec, dict(kwargs))
        if input_size >= least:
            return
        m = self.crop_multiple()
        fit = -(-max(least, self.generator_min_crop()) // m) * m
        other = (f"fewer layers (--set {self.layers_key}=N)" if "n_layers" in _parameters(spec.factory)[0]
                 else "another discriminator")
        raise I2IError(f"{size_key} {input_size} is too small for discriminator {spec.name}, which takes sides of at "
                       f"least {least}; use --set {size_key}={fit} or {other}")

    def make_adversarial(self, name: str, *, gp_weight: float = 0.0, source: str = "gan_loss",
                         layout: Sequence[int] | None = None, value_range: tuple[float, float] | None = None,
                         **loss_kwargs: Any) -> "Adversarial":
        """The GAN objective from registered loss ``name`` (see :class:`Adversarial`), with the config's
        stabilisers (``real_label``, ``feat_match_weight``, ``r1_gamma``, ``r2_gamma``, ``diffaugment``;
        docs/stabilisers.md). ``layout``: the discriminators' input channels, for DiffAugment (a
        positive n per image of n channels, -n for n mask channels; None: one image); ``value_range``:
        that of the images the discriminators see (default: the method's ``data_range``). Call it after
        make_discriminator: feature matching needs discriminators that return their features."""
        from .engine.stabilisers import check_stabiliser_config

        cfg = self.cfg
        check_stabiliser_config(cfg)
        penalties = [f"{k}={v}" for k, v in (("gp_weight", gp_weight), ("r1_gamma", cfg.r1_gamma),
                                              ("r2_gamma", cfg.r2_gamma)) if v > 0]
        if cfg.compile and penalties:
            # measured (torch 2.14): "torch.compile with aot_autograd does not currently support double
            # backward", raised at the first D step; refuse it here, before any data is read
            raise I2IError(f"{', '.join(penalties)} needs a double backward through the discriminator, which "
                           f"torch.compile does not support: set compile=false, or turn the penalty off")
        if cfg.real_label != 1.0:
            loss_kwargs.setdefault("real_label", cfg.real_label)
        if cfg.feat_match_weight > 0:
            lacking = sorted({n for n, _ in self.discriminator_specs.values() if not discriminators().get(n).features})
            if lacking or not self.discriminator_specs:
                able = [s.name for s in discriminators().list() if s.features]
                raise I2IError(f"feat_match_weight={cfg.feat_match_weight} needs a discriminator that returns its "
                               f"features; {', '.join(lacking) or 'none here'} does not; ones that do: {', '.join(able)}")
        return Adversarial(name, method=self.method_name, gp_weight=gp_weight, source=source, r1_gamma=cfg.r1_gamma,
                           r2_gamma=cfg.r2_gamma, feat_match_weight=cfg.feat_match_weight,
                           diffaugment=cfg.diffaugment, layout=layout, paired=self.paired,
                           value_range=value_range or self.data_range, **loss_kwargs)

    def refuse_stabilisers(self, why: str) -> None:
        """Refuse the GAN stabiliser keys (one line) in a method or setting without a discriminator."""
        from .engine.stabilisers import STABILISER_KEYS

        self.refuse_unused(list(STABILISER_KEYS), why)

    def refuse_unused(self, keys: Sequence[str], why: str) -> None:
        """A one-line error when the user set any of ``keys`` (it differs from the default, or from the
        shipped recipe / resumed checkpoint the config was built on: :func:`i2i.config.baseline`): the
        method would not read it."""
        from .config import baseline

        defaults = baseline(self.cfg)
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
            # never suggest a crop the discriminators built so far cannot take
            from .registry import discriminator_min_size

            least = max([discriminator_min_size(discriminators().get(n), kw) for n, kw in self.discriminator_specs.values()]
                        + [generators().get(generator).min_size])
            if fit < least:
                fit = -(-least // multiple) * multiple
            raise I2IError(f"crop_size {crop_size} does not fit {generator}, which needs sides divisible by "
                           f"{multiple}; use --set crop_size={fit} or another generator")

    def generator_meta(self, net: str | None = None) -> GeneratorMeta:
        """The self-description saved with the weights of one generator."""
        from .loader import build_meta

        net = net or self.main_generator
        name, kwargs = self.generator_specs[net]
        return build_meta(name, kwargs, method=self.name, net=net, module=self.nets[net])


def unit_rgb(x: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """``x`` (N x C x H x W in ``value_range``) as float32 RGB in [0, 1]: 1 channel repeated, clamped."""
    lo, hi = value_range
    x = ((x.detach().float() - lo) / (hi - lo)).clamp(0, 1)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x[:, :3]


def held_aside_phase(root: str, phases: tuple[str, ...] = ("val", "test")) -> str | None:
    """The first of ``phases`` the data folder holds (``val/``, ``valA``+``valB``, ``val/A``...), or None."""
    from pathlib import Path

    base = Path(root)
    for phase in phases:
        if (base / phase).is_dir() or ((base / f"{phase}A").is_dir() and (base / f"{phase}B").is_dir()):
            return phase
    return None


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

    def validation_phase(self, root: str, explicit: bool) -> str:
        """The split validation reads: ``val``, else ``test`` (the reference's folders); for ``val_data``
        given explicitly, its own val/test split or else the folder itself ("")."""
        phase = held_aside_phase(root)
        if phase is None and not explicit:
            raise I2IError(f"no held-aside images to validate on in {root} (no val/ or test/ split): give them "
                           f"with --set val_data=FOLDER")
        return phase or ""

    def example_batch(self, batch_size: int = 2) -> Batch:
        cfg, s = self.cfg, self.cfg.crop_size
        return {"A": torch.rand(batch_size, cfg.in_channels, s, s) * 2 - 1,  # type: ignore[attr-defined]
                "B": torch.rand(batch_size, cfg.out_channels, s, s) * 2 - 1}  # type: ignore[attr-defined]


class Adversarial:
    """A method's GAN objective, built from a registered ``kind="gan"`` loss and used the same way by
    every built-in method, so that each loss, and each stabiliser, means what it names in each of them:

    - a relativistic loss (``needs_reference``, e.g. ``ragan``) scores each set against the other
      set's mean logit, in the discriminator step and in the generator step (which then also needs
      the discriminator's logits for the real images);
    - ``gp_weight`` > 0 adds the WGAN-GP gradient penalty to the discriminator loss (fp32); a loss
      that needs one (``needs_penalty``: ``wgan-gp``) is refused without it;
    - ``loss_kwargs`` (label smoothing: ``real_label``) are refused by a loss that has no such setting;
    - ``r1_gamma`` / ``r2_gamma`` > 0 add ``gamma / 2 * E||grad D||^2`` on reals / fakes (Mescheder et
      al. 2018), fp32, to the discriminator loss (terms ``"r1"``, ``"r2"``);
    - ``feat_match_weight`` > 0 adds pix2pixHD's feature matching to the generator loss (term
      ``"feat"``; :func:`i2i.engine.stabilisers.feature_matching`, statistics when not ``paired``);
    - ``diffaugment`` (a policy, :mod:`i2i.engine.augment`) augments every discriminator input, reals
      and fakes, in both steps and inside the penalties (their gradients go through it, as in
      StyleGAN2-ADA); ``layout`` says which input channels are images, ``value_range`` their range.

    Everything is checked when it is built, so with the networks: before any data is read. Source
    of the whole set: docs/stabilisers.md.
    """

    def __init__(self, name: str, *, method: str = "this method", gp_weight: float = 0.0, source: str = "gan_loss",
                 r1_gamma: float = 0.0, r2_gamma: float = 0.0, feat_match_weight: float = 0.0, diffaugment: str = "",
                 layout: Sequence[int] | None = None, paired: bool = True,
                 value_range: tuple[float, float] = (-1.0, 1.0), **loss_kwargs: Any) -> None:
        from .contract import _parameters

        reg = losses()
        spec = reg.get(name)
        gan = [s.name for s in reg.list() if s.kind == "gan"]
        if spec.kind != "gan":
            raise I2IError(f"{source}={name} is a {spec.kind} loss, not a GAN loss; GAN losses: {', '.join(gan)}")
        if spec.needs_penalty and not gp_weight > 0:
            raise I2IError(f"{source}={name} needs a gradient penalty, which is off (gp_weight=0) in {method}: "
                           f"--set gp_weight=10 (the WGAN-GP paper's)")
        for key, value in (("gp_weight", gp_weight), ("r1_gamma", r1_gamma), ("r2_gamma", r2_gamma),
                           ("feat_match_weight", feat_match_weight)):
            if value < 0:
                raise I2IError(f"{key} must be >= 0, got {value}")
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
        self.r1_gamma, self.r2_gamma = float(r1_gamma), float(r2_gamma)
        self.feat_match_weight = float(feat_match_weight)
        self.paired = paired
        self.layout = tuple(layout) if layout else None
        self.augment: nn.Module | None = None
        if diffaugment:
            from .engine.augment import DiffAugment

            self.augment = DiffAugment(diffaugment, value_range=value_range)

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.augment is None else self.augment(x, self.layout)

    @property
    def penalised(self) -> bool:
        """Whether a gradient penalty is on (gp_weight, r1_gamma or r2_gamma): the discriminator is then
        differentiated twice, which the CPU kernels' Winograd layers do not support."""
        return self.gp_weight > 0 or self.r1_gamma > 0 or self.r2_gamma > 0

    def critic(self, D: nn.Module) -> Any:
        """What the discriminator loss sees as the critic: ``D`` behind DiffAugment when it is on."""
        return D if self.augment is None else (lambda x: D(self._aug(x)))

    def discriminator_terms(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"real": ..., "fake": ...}``, the discriminator's loss on real and on fake inputs, and the
        penalties that are on, already weighted: ``"gp"`` (gp_weight), ``"r1"``, ``"r2"`` (gamma / 2).
        Detach the fakes before calling; :meth:`penalty_terms` names the penalties for the log."""
        real_logits, fake_logits = D(self._aug(real)), D(self._aug(fake))
        if self.relativistic:
            terms = {"real": self.loss(real_logits, True, reference=fake_logits),
                     "fake": self.loss(fake_logits, False, reference=real_logits)}
        else:
            terms = {"real": self.loss(real_logits, True), "fake": self.loss(fake_logits, False)}
        if self.penalised:
            from .engine.penalties import gradient_penalty, r1_penalty, r2_penalty

            critic = self.critic(D)
            if self.gp_weight > 0:
                terms["gp"] = self.gp_weight * gradient_penalty(critic, real, fake)
            if self.r1_gamma > 0:
                terms["r1"] = 0.5 * self.r1_gamma * r1_penalty(critic, real)
            if self.r2_gamma > 0:
                terms["r2"] = 0.5 * self.r2_gamma * r2_penalty(critic, fake)
        return terms

    @staticmethod
    def penalty_terms(terms: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
        """The penalties of :meth:`discriminator_terms` as log names: ``{f"{prefix}_gp": ...}``."""
        return {f"{prefix}_{k}": v for k, v in terms.items() if k not in ("real", "fake")}

    def generator_terms(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"gan": the generator's adversarial loss on fake}`` and, with feature matching on, ``"feat"``
        (already weighted by feat_match_weight). A relativistic loss and feature matching also need
        ``real`` (scored without gradient: the discriminator is frozen in the generator step); for
        paired feature matching with DiffAugment, fake and real go through one draw (``pair``) so
        their features still correspond position by position."""
        feats = self.feat_match_weight > 0
        if (self.relativistic or feats) and real is None:
            raise I2IError(f"{'the relativistic loss ' + self.name if self.relativistic else 'feature matching'} "
                           f"needs the real images in the generator step")
        real_in = None
        if feats and self.paired and self.augment is not None:
            fake_in, real_in = self.augment.pair(fake, real.detach(), self.layout)  # type: ignore[union-attr]
        else:
            fake_in = self._aug(fake)
            if real is not None and (self.relativistic or feats):
                real_in = self._aug(real)
        fake_logits, fake_feats = D(fake_in, features=True) if feats else (D(fake_in), None)
        real_logits, real_feats = None, None
        if real_in is not None:
            with torch.no_grad():
                real_logits, real_feats = D(real_in, features=True) if feats else (D(real_in), None)
        if not self.relativistic:
            gan = self.loss(fake_logits, True, for_discriminator=False)
        else:
            gan = 0.5 * (self.loss(real_logits, False, False, reference=fake_logits)
                         + self.loss(fake_logits, True, False, reference=real_logits))
        terms = {"gan": gan}
        if feats:
            from .engine.stabilisers import feature_matching

            terms["feat"] = self.feat_match_weight * feature_matching(fake_feats, real_feats, self.paired)  # type: ignore[arg-type]
        return terms

    def generator_term(self, D: nn.Module, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """The sum of :meth:`generator_terms` (the adversarial loss, plus feature matching when on)."""
        return sum(self.generator_terms(D, fake, real).values())  # type: ignore[return-value]
