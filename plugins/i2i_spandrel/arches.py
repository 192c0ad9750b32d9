"""spandrel's architectures as i2i generators: the catalogue, the network wrapper, the factory.

spandrel (MIT, https://github.com/chaiNNer-org/spandrel) detects ~40 restoration, super-resolution
and inpainting architectures from a state_dict alone and builds them from its own classes. Here
each of its models becomes an ordinary i2i generator:

- ``spandrel`` (image -> image) and ``spandrel_inpaint`` (image + mask -> image), both built by
  :func:`build` from ``arch`` (spandrel's architecture id, e.g. ``ESRGAN``), ``net`` (the class in
  that architecture's module, e.g. ``RRDBNet``) and ``hyperparameters`` (what spandrel's
  ``@store_hyperparameters`` recorded, JSON-encoded by :func:`encode`), so a checkpoint's
  metadata rebuilds the network with no architecture flags;
- :class:`SpandrelNet` wraps the module: it calls it as spandrel's model descriptor does (its
  ``call_fn``), takes and gives images in [0, 1], clamps in eval mode (as spandrel's ``__call__``
  does) and not in training, so gradients reach every output;
- scale, channels, size multiple, minimum size and tiling come from spandrel's own descriptor of
  the built network (:meth:`SpandrelNet.describe`), read once when it is built.

Non-commercial architectures (the ``spandrel-extra-arches`` package) appear only when that package is
installed; their licence is in :data:`EXTRA_LICENSES` and in every generator's metadata.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from i2i.contract import ContractError
from i2i.errors import I2IError

__all__ = ["ArchInfo", "catalogue", "arch_info", "SpandrelNet", "build", "encode", "decode", "from_descriptor",
           "EXTRA_LICENSES", "MAIN_LICENSE"]

#: licences of the spandrel-extra-arches architectures (each one's __arch/LICENSE in the spandrel
#: repository); all are for non-commercial / academic use only
EXTRA_LICENSES = {
    "AdaCode": "CC BY-NC-SA 4.0", "CodeFormer": "S-Lab License 1.0",
    "DDColor": "Alibaba, academic and non-commercial use only", "FeMaSR": "CC BY-NC-SA 4.0",
    "M3SNet": "Academic Public License", "MAT": "CC BY-NC 4.0", "MIRNet2": "Academic Public License",
    "MPRNet": "Academic Public License", "Restormer": "Academic Public License", "SRFormer": "CC BY-NC 4.0",
}
#: spandrel keeps non-commercial architectures out of its main registry
MAIN_LICENSE = "permissive (spandrel main registry; MIT wrapper)"

#: architectures spandrel says tile, whose tiles differ from the whole image all the same (measured by
#: tools/spandrel_table.py with i2i's default 32-pixel overlap: Uformer 43 levels, IPT 120): i2i refuses
#: to tile them, as it refuses networks with whole-image statistics
WHOLE_IMAGE = frozenset({"Uformer", "IPT"})

#: modules whose classes and functions may appear in hyperparameters (norm layers, activations)
_TRUSTED_MODULES = ("torch.", "spandrel.", "spandrel_extra_arches.")


@dataclass(frozen=True)
class ArchInfo:
    """One spandrel architecture: its id, the package it comes from, its licence and its classes."""

    id: str
    package: str
    license: str
    architecture: Any
    #: the nn.Module classes the architecture's module exports, by name (the first one is the default)
    classes: dict[str, type]


def _classes(arch: Any) -> dict[str, type]:
    module = sys.modules[type(arch).__module__]
    out = {}
    for name in getattr(module, "__all__", []):
        obj = getattr(module, name, None)
        if inspect.isclass(obj) and issubclass(obj, nn.Module):
            out[obj.__name__] = obj  # the class's own name: what type(model).__name__ says
    return out


@functools.lru_cache(maxsize=1)
def spandrel() -> Any:
    """The spandrel module, imported once with its import-time warnings kept quiet (some of its
    architectures call the deprecated ``torch.jit.script`` as they are defined: a FutureWarning on
    every ``i2i`` command otherwise)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import spandrel as module

        try:
            import spandrel_extra_arches  # noqa: F401 - the same warnings, once
        except ImportError:
            pass
    return module


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, ArchInfo]:
    """Every architecture spandrel can build here, by id (extra arches only when installed)."""
    spandrel()
    from spandrel import MAIN_REGISTRY

    found: dict[str, ArchInfo] = {}
    for support in MAIN_REGISTRY.architectures("insertion"):
        arch = support.architecture
        found[str(arch.id)] = ArchInfo(str(arch.id), "spandrel", MAIN_LICENSE, arch, _classes(arch))
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return found
    for support in EXTRA_REGISTRY.architectures("insertion"):
        arch = support.architecture
        lic = EXTRA_LICENSES.get(str(arch.id), "non-commercial (spandrel-extra-arches)")
        found[str(arch.id)] = ArchInfo(str(arch.id), "spandrel-extra-arches", lic, arch, _classes(arch))
    return found


@functools.lru_cache(maxsize=1)
def loader() -> Any:
    """A spandrel ModelLoader over the main registry plus the extra arches when installed (a copy:
    spandrel's global registry is left as it is)."""
    spandrel()
    from spandrel import MAIN_REGISTRY, ModelLoader

    registry = MAIN_REGISTRY.copy()
    try:
        from spandrel_extra_arches import EXTRA_REGISTRY

        registry.add(*EXTRA_REGISTRY.architectures("insertion"))
    except ImportError:
        pass
    return ModelLoader(registry=registry)


def arch_info(arch: str) -> ArchInfo:
    """The catalogue entry of ``arch``; an unknown id is an I2IError listing close ids."""
    from i2i.errors import did_you_mean

    cat = catalogue()
    if arch not in cat:
        extra = "" if any(a.package != "spandrel" for a in cat.values()) else (
            "; non-commercial architectures need `pip install spandrel-extra-arches`")
        raise I2IError(f"unknown spandrel architecture {arch!r}{did_you_mean(arch, list(cat))}{extra}")
    return cat[arch]


# -- hyperparameters <-> JSON -------------------------------------------------------------------


def encode(value: Any) -> Any:
    """Hyperparameters -> JSON: tuples as ``{"__tuple__": [...]}``, classes and functions (a norm
    layer, an activation) as ``{"__ref__": "module:qualname"}``."""
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
        return {"__ref__": f"{value.__module__}:{value.__qualname__}"}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise I2IError(f"cannot record the hyperparameter value {value!r} ({type(value).__name__})")


def decode(value: Any) -> Any:
    """:func:`encode` reversed; references resolve only inside torch and spandrel, so a checkpoint's
    metadata cannot name arbitrary code."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"}:
            return tuple(decode(v) for v in value["__tuple__"])
        if set(value) == {"__ref__"}:
            module, _, qualname = str(value["__ref__"]).partition(":")
            if not (module + ".").startswith(_TRUSTED_MODULES):
                raise I2IError(f"hyperparameter reference {value['__ref__']!r} is outside torch and spandrel: refused")
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            # from torch only layer classes (norms, activations); spandrel's own helpers (RCAN's conv)
            if module.startswith("torch") and not (inspect.isclass(obj) and issubclass(obj, nn.Module)):
                raise I2IError(f"hyperparameter reference {value['__ref__']!r} is not a torch layer class: refused")
            return obj
        return {k: decode(v) for k, v in value.items()}
    return value


# -- the network ----------------------------------------------------------------------------------


class SpandrelNet(nn.Module):
    """A spandrel architecture's network behind i2i's generator contract.

    ``forward(image)`` (or ``forward(image, mask)`` for inpainting: N x 1 x H x W, 1 = hole) takes
    N x C x H x W in [0, 1] and returns N x C' x H*scale x W*scale in [0, 1]: clamped in eval mode
    as spandrel's ``ImageModelDescriptor.__call__`` does, unclamped in training. H and W must meet
    the network's size requirements (i2i pads to ``size_multiple`` / ``min_size`` before calling).
    The wrapped module is ``self.net`` (state_dict keys ``net.<spandrel's keys>``).
    """

    def __init__(self, net: nn.Module, info: ArchInfo, call_fn: Callable[..., torch.Tensor] | None,
                 io: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.arch = info.id
        self.masked = bool(io.get("masked"))
        self._call_fn = call_fn
        self._io = io

    def forward(self, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        image = image.clone()  # some spandrel networks scale their input in place (RCAN: x *= rgb_range)
        if self.masked:
            if mask is None:
                raise I2IError(f"spandrel {self.arch} is an inpainting model: it needs a mask")
            out = self._call_fn(self.net, image, mask) if self._call_fn else self.net(image, mask)
        else:
            out = self._call_fn(self.net, image) if self._call_fn else self.net(image)
        return out if self.training else out.clamp(0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        """The instance's metadata fields (scale, channels, size multiple, minimum size, tiling) and
        provenance for :func:`i2i.loader.build_meta`."""
        return dict(self._io["meta"])


def tiling_reason(arch: str, tiling: str, masked: bool) -> str:
    """Why a spandrel network's tiles would differ from its whole-image output, in its own terms:
    spandrel's ``tiling`` (ModelTiling) for the architecture, LaMa's FFT, or i2i's measurement."""
    if arch == "LaMa":
        return "(LaMa) fills holes with Fourier convolutions (FFT) over the whole image"
    if masked:
        return f"({arch}) fills a hole from the whole image"
    if tiling == "DISCOURAGED":
        return f"({arch}) is a network spandrel says not to tile (its ModelTiling is DISCOURAGED)"
    if tiling == "INTERNAL":
        return f"({arch}) tiles internally in its own way (spandrel: tiling INTERNAL), so outer tiles would not match"
    if arch in WHOLE_IMAGE:
        return f"({arch}) gives tiles that differ from the whole image even with overlap (measured: tools/spandrel_table.py)"
    return f"({arch}) is not one spandrel says tiles (tiling {tiling})"


def from_descriptor(descriptor: Any, info: ArchInfo | None = None, net: nn.Module | None = None) -> SpandrelNet:
    """Wrap what spandrel built: ``descriptor`` is a spandrel ModelDescriptor; ``net``, when given,
    is the network to use (built from recorded hyperparameters) in place of the descriptor's own."""
    info = info or arch_info(str(descriptor.architecture.id))
    req = descriptor.size_requirements
    masked = type(descriptor).__name__ == "MaskedImageModelDescriptor"
    tiling = descriptor.tiling.name
    # spandrel's "discouraged" / "internal" tiling, and inpainting (a hole is filled from the whole
    # image; LaMa's Fourier units see every pixel), are refused tiles, as whole-image statistics are
    local = tiling == "SUPPORTED" and not masked and info.id not in WHOLE_IMAGE
    reason = "" if local else tiling_reason(info.id, tiling, masked)
    meta = {
        "in_channels": int(descriptor.input_channels), "out_channels": int(descriptor.output_channels),
        "scale": int(descriptor.scale), "size_multiple": int(req.multiple_of),
        "min_size": max(1, int(req.minimum)), "tiling": "local" if local else "whole_image",
        "tiling_reason": reason,
        "info": {"architecture": info.id, "purpose": str(descriptor.purpose), "license": info.license,
                 "package": info.package, "tags": list(descriptor.tags),
                 **({"square_input": True} if req.square else {})},
    }
    call_fn = getattr(descriptor, "_call_fn", None)
    return SpandrelNet(net if net is not None else descriptor.model, info, call_fn, {"masked": masked, "meta": meta})


#: (arch, class, hyperparameters) -> (io, call_fn) of what spandrel said of such a network: a second
#: build of the same network (a checkpoint, a test) skips the detection and its extra construction
_DESCRIBED: dict[str, tuple[dict[str, Any], Any]] = {}


def _key(arch: str, net: str, hyperparameters: Any) -> str:
    import json

    return json.dumps([arch, net, hyperparameters], sort_keys=True, default=str)


def _remember(key: str, wrapped: SpandrelNet) -> None:
    _DESCRIBED[key] = ({"masked": wrapped.masked, "meta": wrapped.describe()}, wrapped._call_fn)


def build(arch: str = "Compact", net: str | None = None, hyperparameters: dict[str, Any] | None = None,
          in_channels: int | None = None, out_channels: int | None = None, scale: int | None = None) -> SpandrelNet:
    """Build spandrel architecture ``arch`` (class ``net``, default the architecture's first) with
    ``hyperparameters`` (encoded as :func:`encode`; default: the class's own defaults), random weights.

    ``in_channels`` / ``out_channels`` / ``scale``: what a method asks (i2i's contract); they are
    checked against what spandrel says the built network is, never passed to it. Raises I2IError
    for an unknown architecture or class, hyperparameters the class refuses, or a mismatch.
    """
    info = arch_info(arch)
    if not info.classes:
        raise I2IError(f"spandrel architecture {arch} exports no network class i2i can build")
    name = net or next(iter(info.classes))
    if name not in info.classes:
        raise I2IError(f"spandrel architecture {arch} has no class {name!r}; it has: {', '.join(info.classes)}")
    kwargs = decode(hyperparameters or {})
    try:
        module = info.classes[name](**kwargs)
    except TypeError as exc:
        raise I2IError(f"spandrel {arch}.{name} does not take these hyperparameters ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any architecture's own constructor (SwinIR's defaults do not fit together)
        said = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}" if str(exc) else type(exc).__name__
        given = f"hyperparameters {hyperparameters}" if hyperparameters else "its default hyperparameters"
        raise I2IError(f"spandrel {arch}.{name} cannot be built with {given} ({said}); give ones that fit together "
                       f"with --set 'generator_kwargs.hyperparameters={{NAME: VALUE, ...}}' (the class's own arguments), or "
                       f"start from a file of it with --set init=FILE") from None
    key = _key(arch, name, hyperparameters or {})
    if key not in _DESCRIBED:
        # spandrel's own detection, run on the built network's state_dict, describes it (scale, channels,
        # size requirements, how to call it) exactly as it would describe a published file of it
        try:
            descriptor = info.architecture.load(dict(module.state_dict()))
        except Exception as exc:  # noqa: BLE001 - detection code of any architecture; say which in one line
            raise I2IError(f"spandrel {arch}.{name} with these hyperparameters is not one spandrel can describe "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
        _remember(key, from_descriptor(descriptor, info))
    io, call_fn = _DESCRIBED[key]
    wrapped = SpandrelNet(module, info, call_fn, io)
    io = wrapped.describe()
    for what, want in (("in_channels", in_channels), ("out_channels", out_channels), ("scale", scale)):
        if want is not None and int(want) != io[what]:
            # what a method cannot get from this network: the contract's error, which says "does not fit"
            raise ContractError(f"spandrel {arch}.{name} with these hyperparameters has {what}={io[what]}, not {want}; "
                                f"give generator_kwargs.hyperparameters that build {what}={want}")
    return wrapped


#: a key every LaMa generator has, after the prefix of whatever holds it
_LAMA_MARK = "model.1.bn_l.running_mean"


def lama_generator_keys(tensors: dict[str, Any]) -> dict[str, Any]:
    """A LaMa generator's tensors under the ``model.model.*`` keys spandrel's LaMa loader expects.

    Published LaMa files hold the generator under other prefixes: advimman/lama's ``bin/to_jit.py``
    (big-lama.pt) wraps the training module, so its keys are ``model.generator.model.*``; the training
    ``best.ckpt`` has ``generator.model.*`` beside ``discriminator.*`` (and loss) tensors. Only the
    generator's keys are kept, re-prefixed; anything that is not LaMa is returned unchanged.
    """
    mark = next((k for k in tensors if k.endswith(_LAMA_MARK) and "ffc" not in k), None)
    if mark is None or mark == "model." + _LAMA_MARK and not any(not k.startswith("model.model.") for k in tensors):
        return tensors
    root = mark[: -len(_LAMA_MARK)] + "model."
    return {"model.model." + k[len(root):]: v for k, v in tensors.items() if k.startswith(root)}


def _keys_said(text: str, label: str) -> list[str]:
    """The quoted key names PyTorch lists after ``label`` in a load_state_dict error."""
    import re

    m = re.search(re.escape(label) + r"[^:]*:\s*(.*?)(?:\.\s*$|\.\s*\n|$)", text, re.S | re.M)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def _brief(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more, {len(keys)} in all)" if len(keys) > n else "")


def _build_failure(exc: Exception, tensors: dict[str, Any]) -> str:
    """One line for weights spandrel detects but cannot build: the architecture, and the keys that are
    missing / unexpected / wrongly shaped (a few + the count), from PyTorch's multi-line message."""
    text = str(exc)
    arch = "an architecture"
    try:
        for support in loader().registry.architectures("detection"):
            if support.detect(tensors):
                arch = f"{support.architecture.id}"
                break
    except Exception:  # noqa: BLE001 - naming the architecture is a courtesy; the line stands without it
        pass
    import re

    missing, unexpected = _keys_said(text, "Missing key(s)"), _keys_said(text, "Unexpected key(s)")
    shapes = re.findall(r"size mismatch for ([^:]+):", text)
    parts = [f"{what} {_brief(keys)}" for what, keys in
             (("missing keys:", missing), ("unexpected keys:", unexpected), ("wrong shapes:", shapes)) if keys]
    detail = "; ".join(parts) or f"{type(exc).__name__}: {(text.splitlines() or [''])[0][:160]}"
    return (f"these weights look like spandrel's {arch} but do not build as one ({detail}); "
            f"is the file complete and unmodified?")


def identify(state: Any) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]] | None:
    """``(generator name, kwargs, state_dict)`` for a published file spandrel recognises, else None.

    The kwargs rebuild the network (:func:`build`); the state_dict is in :class:`SpandrelNet`'s keys.
    """
    spandrel()
    from spandrel import UnsupportedModelError, canonicalize_state_dict

    if not isinstance(state, dict):
        return None
    tensors = canonicalize_state_dict(state)
    if not isinstance(tensors, dict) or not any(isinstance(v, torch.Tensor) for v in tensors.values()):
        return None
    tensors = lama_generator_keys(tensors)
    try:
        descriptor = loader().load_from_state_dict({k: v for k, v in tensors.items() if isinstance(v, torch.Tensor)})
    except UnsupportedModelError:
        return None
    except Exception as exc:  # noqa: BLE001 - an architecture matched the keys but could not be built
        raise I2IError(_build_failure(exc, tensors)) from None
    info = arch_info(str(descriptor.architecture.id))
    model = descriptor.model
    hyper = getattr(model, "hyperparameters", None)
    if hyper is None:
        raise I2IError(f"spandrel {info.id} does not record its hyperparameters, so i2i cannot rebuild it")
    wrapped = from_descriptor(descriptor, info)
    io = wrapped.describe()
    encoded = encode(dict(hyper))
    _remember(_key(info.id, type(model).__name__, encoded), wrapped)  # build_strict's rebuild skips detection
    kwargs = {"arch": info.id, "net": type(model).__name__, "hyperparameters": encoded,
              "in_channels": io["in_channels"], "out_channels": io["out_channels"], "scale": io["scale"]}
    sd = {f"net.{k}": v for k, v in model.state_dict().items()}
    return ("spandrel_inpaint" if wrapped.masked else "spandrel"), kwargs, sd
