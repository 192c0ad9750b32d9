"""Names -> factories, one registry per kind, filled by the plugins' ``register_*`` hooks.

Each kind has a flat spec dataclass (timm's pretrained cfg is the model): what the host needs to
know about an entry without building it. A plugin registers with ``register(name, factory, **cfg)``
and the host fills in ``plugin`` with the name of the plugin that called it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

from .errors import I2IError, UnknownNameError, did_you_mean


@dataclass(frozen=True)
class InputSpec:
    """An input a generator takes besides the image, e.g. an inpainting mask (1 channel)."""

    name: str
    channels: int = 1
    description: str = ""


@dataclass(frozen=True)
class GeneratorSpec:
    name: str
    factory: Callable[..., Any]
    plugin: str = ""
    in_channels: int = 3
    out_channels: int = 3
    #: Height and width must be multiples of this (unet_256: 256; resnet generators: 4).
    size_multiple: int = 1
    #: Output size / input size (super-resolution generators: 2 or 4).
    scale: int = 1
    #: Value range of input and output images (most GANs: tanh range [-1, 1]).
    value_range: tuple[float, float] = (-1.0, 1.0)
    #: Inputs after the image, in forward() order (see InputSpec).
    extra_inputs: tuple[InputSpec, ...] = ()
    #: "auto" (read from the built module: InstanceNorm, GroupNorm or LayerNorm -> "whole_image",
    #: else "local"), "local" or "whole_image"; see :attr:`i2i.artifact.GeneratorMeta.tiling`.
    tiling: str = "auto"
    #: why a "whole_image" generator's tiles would differ, said when tiling is refused ("auto": read
    #: from the module's normalisation layers; a spec or ``describe`` may say its own)
    tiling_reason: str = ""
    #: Smallest height and width the network takes (ResNet generators: reflection padding on the
    #: 1/4-size maps needs at least 2x2 there); smaller images are padded up to it.
    min_size: int = 1
    #: kwargs for a tiny instance, used by the conformance suite.
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    #: image side for the conformance suite (a multiple of the tiny instance's size_multiple).
    test_size: int = 32
    #: size multiple of the tiny instance, when it differs from size_multiple.
    test_size_multiple: int | None = None
    description: str = ""
    #: How a method asks the factory for "in_channels", "out_channels" and "scale": the factory's
    #: keyword for each (``{"in_channels": "input_nc"}``), or None where the value is fixed at the
    #: field above. Names left out are read from the factory's signature: a parameter of exactly
    #: that name is the keyword, else the value is fixed (see :mod:`i2i.contract`).
    kwarg_names: dict[str, str | None] = field(default_factory=dict)
    #: The scales the factory builds when scale is a keyword (empty: any).
    scales: tuple[int, ...] = ()
    #: ``describe(module) -> dict``: metadata fields that differ per built instance (in_channels,
    #: out_channels, scale, size_multiple, min_size, tiling, info), for one factory that builds many
    #: architectures (spandrel's); :func:`i2i.loader.build_meta` applies them. None: the fields above.
    describe: Callable[[Any], dict[str, Any]] | None = None
    #: ``variants() -> [(name, description)]``: the architectures one generic factory builds (spandrel's
    #: SwinIR, HAT, ...), listed by ``i2i list generators`` as ``<name>.<variant>`` rows and matched by
    #: its patterns; they are built through this entry's kwargs, not registered one by one.
    variants: Callable[[], Sequence[tuple[str, str]]] | None = None


@dataclass(frozen=True)
class DiscriminatorSpec:
    name: str
    factory: Callable[..., Any]
    plugin: str = ""
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    test_size: int = 32
    #: channels of the tiny test instance's input (pix2pix conditions on A+B: 6).
    test_in_channels: int = 3
    description: str = ""
    #: Input channels when the factory is not asked for others (or cannot be: no keyword).
    in_channels: int = 3
    #: How a method asks the factory for "in_channels" and "norm": the factory's keyword for each,
    #: or None (fixed / no norm choice). Names left out are read from the factory's signature.
    kwarg_names: dict[str, str | None] = field(default_factory=dict)
    #: The norm choices when norm is a keyword (empty: whatever the factory itself accepts).
    norms: tuple[str, ...] = ()
    #: Smallest input height and width it takes in training at batch 1: an int, or a function of
    #: the kwargs it is built with (the factory's keywords; defaults left out), e.g. PatchGAN's
    #: ``3 * 2 ** n_layers``. Methods check their crop against it before any data is read
    #: (:func:`discriminator_min_size`).
    min_size: int | Callable[[dict[str, Any]], int] = 1
    #: Whether ``forward(x, features=True)`` returns ``(logits, [intermediate feature maps])``: what
    #: feature matching (``feat_match_weight``) needs. The maps are the activations after each block
    #: (pix2pixHD's), each ``(N, C_k, H_k, W_k)``.
    features: bool = False


def discriminator_min_size(spec: DiscriminatorSpec, kwargs: dict[str, Any] | None = None) -> int:
    """The smallest side ``spec`` takes when built with ``kwargs`` (see :attr:`DiscriminatorSpec.min_size`)."""
    size = spec.min_size(dict(kwargs or {})) if callable(spec.min_size) else spec.min_size
    return max(1, int(size))


@dataclass(frozen=True)
class LossSpec:
    name: str
    factory: Callable[..., Any]
    plugin: str = ""
    #: "gan" losses are called loss(prediction, target_is_real); others loss(output, target).
    kind: str = "gan"
    test_kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    #: GAN losses that score logits against the other set's (relativistic): called with
    #: ``reference=`` the other set's logits, in the discriminator and the generator step.
    needs_reference: bool = False
    #: GAN losses that are only sound with a gradient penalty (WGAN-GP): methods refuse gp_weight 0.
    needs_penalty: bool = False


@dataclass(frozen=True)
class MethodSpec:
    name: str
    #: a subclass of i2i.method.Method
    factory: Callable[..., Any]
    plugin: str = ""
    description: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset for ``--data NAME`` (the catalogue)."""

    name: str
    url: str
    plugin: str = ""
    #: "aligned" (AB side by side), "unaligned" (trainA/trainB), "folder" (plain images) ...
    layout: str = "aligned"
    #: sha256 of the archive, when the source publishes or we pinned one.
    sha256: str | None = None
    size_bytes: int | None = None
    #: folder inside the archive that holds the data (defaults to the name).
    subdir: str | None = None
    license: str = ""
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A pretrained translator for ``--model NAME`` (the zoo)."""

    name: str
    #: registry name of the generator and the kwargs that rebuild the published architecture
    generator: str
    url: str
    plugin: str = ""
    generator_kwargs: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    sha256: str | None = None
    #: the publisher's MD5, checked only where it publishes no sha256 (IOPaint's big-lama)
    md5: str | None = None
    size_bytes: int | None = None
    #: state_dict converter: published keys/wrappers -> our generator's keys.
    converter: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    license: str = ""
    source: str = ""
    description: str = ""


@dataclass(frozen=True)
class MaskSpec:
    """A hole-mask generator for inpainting (``register_masks``)."""

    name: str
    #: factory(**kwargs) -> (rng, (h, w)) -> float32 HxW mask, 1 = hole
    factory: Callable[..., Any]
    plugin: str = ""
    description: str = ""


@dataclass(frozen=True)
class MetricSpec:
    """An image-quality metric (``register_metrics``); :func:`i2i.metrics.create` builds one."""

    name: str
    #: factory(device=torch.device, **kwargs) -> an object with update(output, target=None, mask=None),
    #: compute() -> float and reset() (the :class:`i2i.metrics.Metric` protocol)
    factory: Callable[..., Any]
    plugin: str = ""
    #: "paired" (needs the target), "distribution" (needs a reference set) or "masked" (target + hole mask)
    kind: str = "paired"
    higher_is_better: bool = True
    #: the unit of compute()'s value ("dB", "" for none)
    unit: str = ""
    description: str = ""


S = TypeVar("S")


class Registry(Generic[S]):
    """One kind's names; unknown names suggest matches.

    Every entry is also reachable as ``plugin:name`` (``i2i_pix2pix:unet_256``). When two plugins (or
    one plugin twice) claim a name, :meth:`add` either raises, or (``clash="disable"``, what the plugin
    host does) disables only that name: using it is a one-line error naming both plugins and their
    qualified names, and everything else keeps working.
    """

    def __init__(self, kind: str, spec_cls: type[S]) -> None:
        self.kind = kind
        self.spec_cls = spec_cls
        self._entries: dict[str, S] = {}
        #: names claimed more than once -> every claim, in registration order
        self.clashes: dict[str, list[S]] = {}

    def make_spec(self, plugin: str, name: str, *args: Any, **cfg: Any) -> S:
        """Build the spec for one ``register(name, ...)`` call; bad fields are a clear error."""
        allowed = {f.name for f in fields(self.spec_cls)} - {"name", "plugin"}  # type: ignore[arg-type]
        for key in cfg:
            if key not in allowed:
                raise I2IError(
                    f"plugin {plugin!r} registered {self.kind} {name!r} with unknown field {key!r}"
                    f"{did_you_mean(key, allowed)}"
                )
        if "extra_inputs" in cfg:
            cfg["extra_inputs"] = tuple(
                i if isinstance(i, InputSpec) else InputSpec(**i) for i in cfg["extra_inputs"]
            )
        return self.spec_cls(name, *args, plugin=plugin, **cfg)  # type: ignore[call-arg]

    def add(self, spec: S, clash: str = "raise") -> None:
        """Add ``spec``; a name taken already raises (``clash="raise"``) or is disabled (``"disable"``)."""
        name = spec.name  # type: ignore[attr-defined]
        if name in self._entries or name in self.clashes:
            claims = self.clashes.get(name) or [self._entries[name]]
            if clash == "raise":
                raise I2IError(self.clash_message(name, [*claims, spec]))
            self.clashes[name] = [*claims, spec]
            self._entries.pop(name, None)
            return
        self._entries[name] = spec

    def clash_message(self, name: str, claims: list[S], off: bool = False) -> str:
        """One line naming every plugin that claims ``name`` and their qualified names (``off``: the
        name has been switched off, as the plugin host does)."""
        plugins = [c.plugin for c in claims]  # type: ignore[attr-defined]
        by = " and by plugin ".join(repr(p) for p in plugins)
        qualified = ", ".join(dict.fromkeys(f"{p}:{name}" for p in plugins))
        return (f"{self.kind} name {name!r} is registered twice{' and is off' if off else ''}: by plugin {by}; "
                f"name one as {qualified}, or block a plugin with I2I_BLOCK_PLUGINS")

    def get(self, name: str) -> S:
        if name in self._entries:
            return self._entries[name]
        if name in self.clashes:
            raise I2IError(self.clash_message(name, self.clashes[name]))
        plugin, colon, bare = name.partition(":")
        if colon:  # a qualified name: plugin:name
            for spec in self._all():
                if spec.name == bare and spec.plugin == plugin:  # type: ignore[attr-defined]
                    return spec
            raise UnknownNameError(self.missing_message(plugin, bare)) from None
        base, dot, variant = name.partition(".")
        spec = self._entries.get(base) if dot else None
        if spec is not None and getattr(spec, "variants", None):  # a `i2i list generators` row such as spandrel.SwinIR
            known = {v.lower(): v for v, _ in spec.variants()}  # type: ignore[attr-defined]
            if variant.lower() in known:
                raise UnknownNameError(
                    f"{name} is an architecture of the {base} {self.kind}, not a {self.kind} of its own: use "
                    f"--set {self.kind}={base} --set {self.kind}_kwargs.arch={known[variant.lower()]} "
                    f"(YAML: {self.kind}: {base}, {self.kind}_kwargs: {{arch: {known[variant.lower()]}}})") from None
        hint = did_you_mean(name, [*self._entries, *self.clashes])
        described = [n for n, s in sorted(self._entries.items())  # "relativistic" -> ragan
                     if len(name) > 3 and name.lower() in str(getattr(s, "description", "")).lower()]
        if not hint and described:
            hint = f" (did you mean: {', '.join(described[:3])}?)"
        raise UnknownNameError(f"unknown {self.kind} {name!r}{hint}; see `i2i list {plural(self.kind)}`") from None

    def _all(self) -> list[S]:
        """Every spec, the claims of switched-off names included."""
        return [*self._entries.values(), *(s for claims in self.clashes.values() for s in claims)]

    def plugins(self) -> list[str]:
        """The plugins that registered something of this kind, in registration order."""
        return list(dict.fromkeys(s.plugin for s in self._all()))  # type: ignore[attr-defined]

    def missing_message(self, plugin: str, name: str) -> str:
        """One line for ``plugin:name`` that no loaded plugin provides. Never suggests another plugin's
        entry of that name as if it were the same network: it is a different one."""
        others = [f"{s.plugin}:{name}" for s in self._all() if s.name == name]  # type: ignore[attr-defined]
        other = (f"; {', '.join(others)} {'is a' if len(others) == 1 else 'are'} different network"
                 f"{'' if len(others) == 1 else 's'} of that name, not a replacement" if others else "")
        if plugin in self.plugins():
            mine = sorted(s.name for s in self._all() if s.plugin == plugin)  # type: ignore[attr-defined]
            hint = did_you_mean(name, mine) or f" (its {plural(self.kind)}: {', '.join(mine[:8])}{', ...' if len(mine) > 8 else ''})"
            return (f"plugin {plugin!r} has no {self.kind} {name!r}{hint}; `i2i list {plural(self.kind)}` shows what is "
                    f"registered (or install the version of {plugin!r} that had it){other}")
        return (f"{self.kind} {name!r} of plugin {plugin!r}, which is not installed (or blocked, or registers no "
                f"{plural(self.kind)}); install it, or unblock it (I2I_BLOCK_PLUGINS, I2I_PLUGINS; `i2i plugins` "
                f"lists what is loaded){other}")

    def recorded(self, name: str, plugin: str | None = None) -> str:
        """The name to rebuild an entry a checkpoint or a zoo model recorded as ``name``: ``name`` itself,
        or, while another plugin claims it too, the qualified ``plugin:name`` of the claim it was made
        with: ``plugin`` (checkpoints record it: ``info["plugin"]``) or, not recorded, the built-in
        claim (zoo models and older checkpoints were made with i2i's own networks). Otherwise the
        clash error (an I2IError naming every claim). A name recorded with a ``plugin`` that provides it no
        more (uninstalled, blocked) is an error saying so (:meth:`missing_message`), even where another
        plugin has an entry of that name: that is a different network (only a network that moved
        between i2i's own plugins is followed)."""
        from .plugins import BUILTIN_PLUGINS

        if ":" in name:  # recorded qualified (generator=plugin:name): get() opens it or says what is missing
            return name
        claims = self.clashes.get(name) or []
        spec = self._entries.get(name)
        if plugin and not any(c.plugin == plugin for c in [*claims, *([spec] if spec else [])]):  # type: ignore[attr-defined]
            builtin_kept = plugin in BUILTIN_PLUGINS and spec is not None and spec.plugin in BUILTIN_PLUGINS  # type: ignore[attr-defined]
            if not builtin_kept:  # the plugin that made it is gone: never rebuild another plugin's network
                raise UnknownNameError(self.missing_message(plugin, name))
            return name  # a network that moved between i2i's own plugins
        if not claims:
            return name
        pick = [c for c in claims if (c.plugin == plugin if plugin else c.plugin in BUILTIN_PLUGINS)]  # type: ignore[attr-defined]
        if len(pick) != 1:
            raise I2IError(self.clash_message(name, claims, off=True))
        return f"{pick[0].plugin}:{name}"  # type: ignore[attr-defined]

    def create(self, name: str, **overrides: Any) -> Any:
        """Build an entry: ``factory(**overrides)``."""
        return self.get(name).factory(**overrides)  # type: ignore[attr-defined]

    def list(self, pattern: str = "*") -> list[S]:
        """Entries whose name matches a shell wildcard (``unet_*``), sorted by name (clashing names
        are left out: they are reachable only by their qualified names)."""
        return [s for n, s in sorted(self._entries.items()) if fnmatch.fnmatchcase(n, pattern)]

    def clashing(self, pattern: str = "*") -> dict[str, list[S]]:
        """Names switched off because two plugins (or one, twice) claim them -> every claim, for the
        names matching ``pattern`` bare or qualified (``unet*``, ``clashr16:*``), sorted by name."""
        return {n: claims for n, claims in sorted(self.clashes.items())
                if fnmatch.fnmatchcase(n, pattern)
                or any(fnmatch.fnmatchcase(f"{c.plugin}:{n}", pattern) for c in claims)}  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[S]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._entries)


#: kind -> (hook name, spec class); the plural kind names are what `i2i list KIND` takes.
KINDS: dict[str, tuple[str, type]] = {
    "generator": ("register_generators", GeneratorSpec),
    "discriminator": ("register_discriminators", DiscriminatorSpec),
    "loss": ("register_losses", LossSpec),
    "method": ("register_methods", MethodSpec),
    "dataset": ("register_datasets", DatasetSpec),
    "model": ("register_models", ModelSpec),
    "mask": ("register_masks", MaskSpec),
    "metric": ("register_metrics", MetricSpec),
}


def plural(kind: str) -> str:
    """The plural `i2i list` takes: "loss" -> "losses", "generator" -> "generators"."""
    return kind + ("es" if kind.endswith("s") else "s")


def registry(kind: str) -> Registry[Any]:
    """The registry of one kind ("generator", "loss", ...), filled from the loaded plugins."""
    from .plugins import manager

    return manager().registry(kind)


def generators() -> Registry[GeneratorSpec]:
    return registry("generator")


def discriminators() -> Registry[DiscriminatorSpec]:
    return registry("discriminator")


def losses() -> Registry[LossSpec]:
    return registry("loss")


def methods() -> Registry[MethodSpec]:
    return registry("method")


def datasets() -> Registry[DatasetSpec]:
    return registry("dataset")


def models() -> Registry[ModelSpec]:
    return registry("model")


def masks() -> Registry[MaskSpec]:
    return registry("mask")


def metrics() -> Registry[MetricSpec]:
    return registry("metric")


def create_generator(name: str, **kwargs: Any) -> Any:
    return generators().create(name, **kwargs)


def create_discriminator(name: str, **kwargs: Any) -> Any:
    return discriminators().create(name, **kwargs)


def create_loss(name: str, **kwargs: Any) -> Any:
    return losses().create(name, **kwargs)
