"""The pretrained model zoo: ``--model NAME`` -> a generator with published weights, ready to run.

Entries are :class:`~i2i.registry.ModelSpec` s registered by plugins (``register_models``).
:func:`open_zoo_model` (behind :func:`i2i.load`) finds the weights (``--weights FILE``, else the cache, else a verified
download), converts the published state_dict to our layout with the entry's ``converter``, builds
the generator and loads the weights strictly.

A converter takes whatever ``torch.load`` returned and returns either a state_dict, or
``(state_dict, generator_kwargs_overrides)`` when details of the architecture can only be read from
the file (e.g. a community CycleGAN trained with affine InstanceNorm).

Downloads are cached by URL under ``cache_dir("models")/<host>/<path>``, so aliases of one file
(``cyclegan_h2z`` and ``cyclegan_horse2zebra``) share one copy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .artifact import GeneratorMeta
from .errors import I2IError, did_you_mean

__all__ = ["open_zoo_model", "cache_path", "cache_status", "load_state", "build_strict", "load_strict",
           "unwrap_state_dict", "fill_batchnorm_counters", "WeightsMismatch"]

#: keys under which published checkpoints nest the generator's state_dict, most specific first
#: (basicsr saves both ``params_ema`` and ``params``: the EMA weights are the published ones)
WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model", "netG", "netG_A", "generator")


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """The tensors of a published generator checkpoint, without wrappers or DataParallel's ``module.``."""
    import torch

    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise I2IError(f"expected a state_dict (names -> tensors), got a {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        if key in obj and isinstance(obj[key], dict):
            return unwrap_state_dict(obj[key])
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise I2IError(f"no tensors in the file; its top-level keys: {', '.join(map(str, list(obj)[:8]))}")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def fill_batchnorm_counters(sd: dict[str, Any]) -> dict[str, Any]:
    """Add the ``num_batches_tracked`` that BatchNorm files saved by PyTorch < 0.4.1 lack.

    It only counts training steps (eval never reads it), so 0 is exact for inference.
    """
    import torch

    out = dict(sd)
    for key in [k for k in sd if k.endswith(".running_mean")]:
        out.setdefault(key[: -len("running_mean")] + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
    return out


def _spec(name: str):
    from .registry import models

    return models().get(name)  # unknown name: UnknownNameError (an I2IError) listing close names


def cache_path(spec_or_name: Any) -> Path | None:
    """Where the entry's download lives in the cache (None for entries without a URL)."""
    from .download import cache_dir

    spec = _spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if not spec.url:
        return None
    parts = urlsplit(spec.url)
    rel = [p for p in parts.path.split("/") if p not in ("", ".", "..")]
    if not rel:
        raise I2IError(f"model {spec.name!r} has a URL without a file name: {spec.url}")
    return cache_dir("models").joinpath(parts.netloc.replace(":", "_") or "local", *rel)


def cache_status(spec_or_name: Any) -> bool:
    """Whether the entry's weights are in the cache (and of the published size, when known).

    Takes a ModelSpec or a name; cheap (no hashing), for ``i2i list models``.
    """
    path = cache_path(spec_or_name)
    if path is None or not path.is_file():
        return False
    spec = _spec(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    return spec.size_bytes is None or path.stat().st_size == spec.size_bytes


def load_state(path: str | Path) -> Any:
    """What a weights file holds: safetensors tensors, or ``torch.load(weights_only=True)`` of a .pth.

    ``weights_only`` reads both the zip format and legacy (pre-1.6) pickles of tensors and plain
    containers; CUDA tensors land on the CPU. Anything needing arbitrary code is refused. A TorchScript
    archive gives its module's tensors by state_dict name (:mod:`i2i.torchscript`; its code never runs).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise I2IError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise I2IError(f"cannot read {path} as safetensors ({exc})") from None
    from .torchscript import is_torchscript, read_torchscript

    if is_torchscript(path):  # TorchScript-only releases (big-lama): tensors read without running its code
        return read_torchscript(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types; keep one line naming the file
        raise I2IError(_not_weights(path, exc)) from None


def load_failure(path: Path, exc: BaseException) -> tuple[str, str]:
    """Why ``torch.load(path, weights_only=True)`` raised ``exc``, as ``(kind, detail)``, read from the
    file's first bytes and the error, never passing on torch's own text (whose advice is to turn the
    safety check off): ``empty``; ``code`` (a pickle that needs code; detail: what it calls);
    ``html`` or ``text`` (a failed download); ``truncated`` (a cut-short zip archive); ``other``.
    The one classifier behind the weights reader's and the checkpoint state reader's messages."""
    import re

    text = str(exc)
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty", ""
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:
        return "code", code.group(1)
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head) / len(head)
    if head.lstrip()[:1] == b"<" or printable > 0.95:
        return ("html" if b"<html" in head.lower() or head.lstrip()[:1] == b"<" else "text"), ""
    if head[:2] == b"PK" or isinstance(exc, EOFError) or "central directory" in text or "zip" in text.lower():
        return "truncated", ""
    return "other", type(exc).__name__


def _not_weights(path: Path, exc: Exception) -> str:
    """What ``path`` is not, and what to do, in one line (:func:`load_failure`)."""
    kind, detail = load_failure(path, exc)
    if kind == "empty":
        return f"{path} is empty (0 bytes), not a PyTorch weights file: download it again"
    if kind == "code":
        return (f"{path} is a pickle that runs code ({detail}) and i2i refuses to run it: only tensor weights "
                f"load; get the weights as .safetensors, or as a plain state_dict .pth, from a source you trust")
    if kind in ("html", "text"):
        return (f"{path} is {'an HTML page' if kind == 'html' else 'text'}, not a PyTorch weights file (a failed "
                f"download or an error page?): download the weights again and check the address")
    if kind == "truncated":
        return f"{path} is cut short or damaged (an incomplete PyTorch weights file): download it again"
    return (f"{path} is not a PyTorch weights file ({detail}): give a .pth/.pt of tensors "
            f"or a .safetensors file")


def _first(items: list[str], n: int = 2) -> str:
    """The first ``n`` of a list and how many in all: a short key detail, whatever the mismatch."""
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


class WeightsMismatch(I2IError):
    """Weights that do not fit the network built for them (missing, unexpected or wrong-shaped tensors).

    ``source``, ``what``: as given to :func:`load_strict`; ``detail``: the short key/shape account and
    ``counts`` (missing, unexpected, wrong-shaped), so a caller that knows more (``i2i train --resume``
    with other settings) can say it its own way."""

    def __init__(self, message: str, source: str = "", what: str = "", detail: str = "",
                 counts: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__(message)
        self.source, self.what, self.detail = source, what, detail
        self.counts = counts  # missing, unexpected, wrong-shaped tensors


#: what load_strict says to do when its caller does not say
NOT_THIS_ARCHITECTURE = ("the file is not from this architecture/settings: use weights saved by this network "
                         "with these settings")


def build_strict(generator: str, kwargs: dict[str, Any], state: dict[str, Any], source: str = "",
                 todo: str | None = None) -> Any:
    """Build ``generator(**kwargs)`` and load ``state`` strictly; a mismatch, or recorded settings the
    generator does not take (``ngf: "wide"``), is one clear line."""
    from .registry import create_generator

    try:
        module = create_generator(generator, **kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:  # ngf "wide", ngf -4 (a negative tensor size)
        raise I2IError(f"{source or 'the weights'}: the recorded settings {kwargs} do not build {generator} "
                       f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                       f"{todo or 'use another checkpoint of the run'}") from None
    load_strict(module, state, f"weights {source}", f"{generator}({kwargs})", todo=todo)
    return module.eval()


def load_strict(module: Any, state: dict[str, Any], source: str, what: str, todo: str | None = None) -> None:
    """``module.load_state_dict(state, strict=True)``, with missing, unexpected and wrong-shaped
    tensors said in one short line (``"<source> do not fit <what>: ...; <todo>"``), as a
    :class:`WeightsMismatch` (an I2IError). ``todo``: what to do (default :data:`NOT_THIS_ARCHITECTURE`)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys: {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_first(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch: {_first(shapes, 1)}")
        detail = "; ".join(parts)
        raise WeightsMismatch(f"{source} do not fit {what}: {detail}; {todo or NOT_THIS_ARCHITECTURE}",
                              source=source, what=what, detail=detail,
                              counts=(len(missing), len(unexpected), len(shapes)))
    module.load_state_dict(state, strict=True)


def _fetch(spec) -> Path:
    """The entry's weights from the cache, else downloaded (progress bar, verified, atomic)."""
    from .download import download

    dest = cache_path(spec)
    if dest is None:
        raise I2IError(f"model {spec.name!r} has no download; pass the weights file with --weights FILE")
    hint = f"download it yourself and pass --weights FILE (or save it as {dest})"
    return download(spec.url, dest, sha256=spec.sha256, md5=getattr(spec, "md5", None), size=spec.size_bytes,
                    desc=f"{spec.name} weights", offline_hint=hint)


def open_zoo_model(name: str, weights: str | None = None) -> tuple[Any, GeneratorMeta]:
    """A zoo entry as (generator in eval mode on the CPU, its GeneratorMeta), for :func:`i2i.load`.

    ``name``: a zoo name, or an architecture with a pretrained tag (``resnet_9blocks.horse2zebra``).
    ``weights``: a local file to use instead of the download (the entry still names the
    architecture and the converter).
    """
    spec = _spec(_untag(name))
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise I2IError(f"--weights {weights}: no such file")
        origin = str(path)
    else:
        path = _fetch(spec)
        origin = spec.url
    try:
        raw = load_state(path)
    except I2IError as exc:
        if weights:
            raise
        raise I2IError(f"{exc}; delete the cached {path} to download it again") from None
    try:
        converted = spec.converter(raw) if spec.converter is not None else raw
    except I2IError as exc:  # the converter does not know the file: name it
        raise type(exc)(f"{path}: {exc}") from None
    kwargs = dict(spec.generator_kwargs)
    if isinstance(converted, tuple):
        converted, overrides = converted
        kwargs.update(overrides)
    if not isinstance(converted, dict):
        raise I2IError(f"{path} holds a {type(converted).__name__}, not a state_dict of tensors")
    hint = "" if weights else f" (cached at {path}: delete it to download again)"
    from .registry import generators

    try:
        generator = generators().recorded(spec.generator)  # i2i's own network while a plugin claims its name too
        module = build_strict(generator, kwargs, converted, source=f"{path}{hint}")
    except I2IError as exc:
        raise I2IError(f"model {name!r}: {exc}") from None
    info = {"zoo": spec.name, "weights": origin, "license": spec.license, "source": spec.source}
    from .loader import build_meta

    return module, build_meta(generator, kwargs, method=spec.method, info=info, module=module)


def _untag(name: str) -> str:
    """``arch.tag`` (timm's pretrained tags) -> the zoo entry of that architecture named ``tag`` or
    ``<method>_tag``; any other name is returned as it is (an unknown one fails in the registry)."""
    from .registry import models

    reg = models()
    arch, dot, tag = name.partition(".")
    if name in reg or not dot:
        return name
    found = [s.name for s in reg.list() if s.generator == arch and (s.name == tag or s.name.endswith("_" + tag))]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise I2IError(f"{name!r} matches several zoo entries ({', '.join(found)}); name one of them")
    tags = [s.name for s in reg.list() if s.generator == arch]
    hint = f"; pretrained {arch} models: {', '.join(tags)}" if tags else f"{did_you_mean(name, reg.names())}"
    raise I2IError(f"no pretrained model {name!r}{hint}")
