"""What a method may ask of a network, and how the host asks for it.

Methods never pass their own keyword vocabulary (``input_nc``, ``norm`` ...) to whatever is
registered. They say what they need in the contract's words, and the host turns that into the
factory's keywords, from the spec (``kwarg_names``) or, for names it leaves out, from the
factory's signature, read when it is needed:

- a generator is asked for ``in_channels``, ``out_channels`` and ``scale``, and for the inputs it
  takes besides the image (``extra_inputs``: an inpainting mask);
- a discriminator is asked for ``in_channels``, and offered a ``norm`` (a method's preference,
  CycleGAN's InstanceNorm: used where the network has that norm choice, else its own default);
- a GAN loss says what it needs (:class:`i2i.registry.LossSpec`): the other set's logits
  (``needs_reference``) or a gradient penalty (``needs_penalty``); :class:`i2i.method.Adversarial`
  gives every method the same objective built from it.

A keyword the factory does not have means the value is fixed at the spec's field: asking for
another is a :class:`ContractError` naming the method and the network, raised while the networks
are built, so before any data is read. The same for a kwarg (``generator_kwargs.x``) the factory
does not take, a norm it does not have, and a kwarg that contradicts what the method asks.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Sequence

from .errors import I2IError, did_you_mean

__all__ = ["ContractError", "GENERATOR_ASKS", "DISCRIMINATOR_ASKS", "keyword", "generator_kwargs", "generator_io",
           "discriminator_kwargs", "build", "check_kwargs", "tiny_kwargs"]

#: what a method may ask of a generator (besides its extra inputs)
GENERATOR_ASKS = ("in_channels", "out_channels", "scale")
#: what a method may ask of a discriminator
DISCRIMINATOR_ASKS = ("in_channels", "norm")

_WORDS = {"in_channels": "input channels", "out_channels": "output channels"}


class ContractError(I2IError):
    """A method cannot use a network as registered (channels, scale or inputs it cannot take)."""


def entry(kind: str, spec: Any) -> str:
    """``generator 'unet_256' (plugin 'i2i_pix2pix')``: how messages name a registered entry."""
    return f"{kind} {spec.name!r} (plugin {spec.plugin!r})"


def _parameters(factory: Any) -> tuple[set[str], bool]:
    """(keyword parameter names, whether it also takes **kwargs) of a factory."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return set(), True
    names = {p.name for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return names, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def keyword(spec: Any, what: str) -> str | None:
    """The factory keyword that sets ``what`` ("in_channels", "scale", "norm" ...), or None (fixed)."""
    declared = getattr(spec, "kwarg_names", None) or {}
    if what in declared:
        return declared[what]
    names, _ = _parameters(spec.factory)
    return what if what in names else None


def _show(what: str, value: Any) -> str:
    return f"x{value} scale" if what == "scale" else f"{value} {_WORDS.get(what, what)}"


def _ask(kind: str, spec: Any, what: str, want: int, kwargs: dict[str, Any], method: str, source: str) -> None:
    key = keyword(spec, what)
    if key is None:
        fixed = int(getattr(spec, what))
        if want != fixed:
            raise ContractError(f"{method} needs a {kind} with {_show(what, want)}, but {entry(kind, spec)} has a fixed "
                                f"{_show(what, fixed)} (it takes no keyword for {what})")
        return
    choices = tuple(getattr(spec, "scales", ()) or ()) if what == "scale" else ()
    if choices and want not in choices:
        raise ContractError(f"{method} needs a {kind} with {_show(what, want)}, but {entry(kind, spec)} builds "
                            f"{', '.join(f'x{s}' for s in choices)} only")
    if key in kwargs and kwargs[key] != want:
        raise I2IError(f"{source}.{key}={kwargs[key]!r} contradicts the {what}={want} that {method} asks of "
                       f"{entry(kind, spec)}; set {what} in the config instead")
    kwargs[key] = want


def check_kwargs(kind: str, spec: Any, kwargs: Mapping[str, Any], source: str) -> None:
    """Every key must be a keyword of the factory (one that takes **kwargs is checked when built)."""
    names, var_kw = _parameters(spec.factory)
    if var_kw:
        return
    for key in kwargs:
        if key not in names:
            raise I2IError(f"{entry(kind, spec)} does not take {key!r} ({source}.{key}){did_you_mean(key, names)}; "
                           f"it takes: {', '.join(sorted(names)) or 'nothing'}")


def generator_kwargs(spec: Any, kwargs: Mapping[str, Any] | None = None, *, method: str = "this method",
                     in_channels: int | None = None, out_channels: int | None = None, scale: int | None = None,
                     extra_inputs: Sequence[str] | None = None, source: str = "generator_kwargs") -> dict[str, Any]:
    """The factory kwargs that build generator ``spec`` as ``method`` asks (None: not asked).

    ``kwargs`` are the user's (``generator_kwargs``); the asked values are added under the factory's
    own keywords. Raises ContractError where the generator cannot give what is asked, I2IError for a
    user kwarg it does not take or that contradicts an ask.
    """
    takes = tuple(i.name for i in spec.extra_inputs)
    if extra_inputs is not None and tuple(extra_inputs) != takes:
        if takes and not extra_inputs:
            raise ContractError(f"{method} cannot train {entry('generator', spec)}: it takes a {' and a '.join(takes)} "
                                f"input besides the image, which {method} does not give")
        if not takes:
            raise ContractError(f"{method} needs a generator that takes a {' and a '.join(extra_inputs)} input "
                                f"(forward(image, {', '.join(extra_inputs)}), registered with extra_inputs); "
                                f"{entry('generator', spec)} takes only the image")
        raise ContractError(f"{method} gives forward(image, {', '.join(extra_inputs)}) but {entry('generator', spec)} "
                            f"takes forward(image, {', '.join(takes)})")
    out = dict(kwargs or {})
    for what, want in (("in_channels", in_channels), ("out_channels", out_channels), ("scale", scale)):
        if want is not None:
            _ask("generator", spec, what, int(want), out, method, source)
    check_kwargs("generator", spec, {k: v for k, v in out.items() if k in (kwargs or {})}, source)
    return out


def generator_io(spec: Any, kwargs: Mapping[str, Any]) -> dict[str, int]:
    """``in_channels``, ``out_channels`` and ``scale`` of generator ``spec`` built with ``kwargs``:
    the value under the factory's keyword where there is one and it is given, else the spec's."""
    out = {}
    for what in GENERATOR_ASKS:
        key = keyword(spec, what)
        out[what] = int(kwargs[key]) if key is not None and key in kwargs else int(getattr(spec, what))
    return out


def discriminator_kwargs(spec: Any, kwargs: Mapping[str, Any] | None = None, *, method: str = "this method",
                         in_channels: int | None = None, norm: str | None = None,
                         source: str = "discriminator_kwargs") -> dict[str, Any]:
    """The factory kwargs that build discriminator ``spec`` as ``method`` asks.

    ``in_channels`` must be given to the network (or be its fixed count). ``norm`` is a preference:
    set where the network has a norm keyword that offers it (and the user set none), otherwise the
    network keeps its own; a norm the user sets must be one the network has.
    """
    out = dict(kwargs or {})
    if in_channels is not None:
        _ask("discriminator", spec, "in_channels", int(in_channels), out, method, source)
    key = keyword(spec, "norm")
    norms = tuple(getattr(spec, "norms", ()) or ())
    if key is not None and key in out:
        if norms and out[key] not in norms:
            raise I2IError(f"{source}.{key}={out[key]!r}: {entry('discriminator', spec)} has the norms "
                           f"{', '.join(norms)}")
    elif norm is not None and key is not None and (not norms or norm in norms):
        out[key] = norm
    check_kwargs("discriminator", spec, {k: v for k, v in out.items() if k in (kwargs or {})}, source)
    return out


def tiny_kwargs(spec: Any) -> dict[str, Any]:
    """A spec's ``test_kwargs`` without the keywords a method asks for (channels; a generator's
    scale): what a method's conformance config passes, the method asking for the rest itself."""
    asks = GENERATOR_ASKS if hasattr(spec, "extra_inputs") else ("in_channels",)
    contract = {keyword(spec, w) for w in asks}
    return {k: v for k, v in spec.test_kwargs.items() if k not in contract}


def build(kind: str, spec: Any, kwargs: Mapping[str, Any], source: str) -> Any:
    """``spec.factory(**kwargs)``; what the factory refuses is one line naming ``source``: an unexpected
    keyword, values its constructor raises on (``ngf=-3``), or a network with an empty layer (``ngf=0``
    builds, then fails in its first forward)."""
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        module = spec.factory(**kwargs)
    except I2IError:
        raise
    except TypeError as exc:
        text = str(exc)
        if "unexpected keyword argument" not in text:
            raise I2IError(f"{entry(kind, spec)} cannot be built with {shown} (TypeError: {text.splitlines()[0][:160]}); "
                           f"check the values in {source}") from None
        key = text.rsplit("'", 2)[-2] if text.count("'") >= 2 else text
        raise I2IError(f"{entry(kind, spec)} does not take {key!r} ({source}.{key})") from None
    except Exception as exc:  # noqa: BLE001 - any factory's own checks (built-in or third-party)
        said = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
        raise I2IError(f"{entry(kind, spec)} cannot be built with {shown} ({said}); check the values in {source}") from None
    empty = next((n for n, p in getattr(module, "named_parameters", lambda: ())() if p.numel() == 0), None)
    if empty is not None:
        raise I2IError(f"{entry(kind, spec)} built with {shown} has an empty layer ({empty} has no weights: a width "
                       f"of 0?); check the values in {source}")
    return module
