"""Checkpoints that describe themselves.

Layout of one checkpoint (a folder, written to ``<tag>.tmp`` and renamed, so never half-written)::

    runs/<name>/checkpoints/<tag>/weights.safetensors   every network ("G.", "D." ...) and EMA copies ("ema.G.")
                                                        + metadata "i2i": generators' GeneratorMeta, config, step
    runs/<name>/checkpoints/<tag>/state.pt              optimizers, scaler, schedulers, RNG, step (weights_only-safe)
    runs/<name>/checkpoints/latest                      the tag of the newest checkpoint

``open_checkpoint`` (behind :func:`i2i.load`) accepts the run folder, its checkpoints folder, a
checkpoint folder or the ``weights.safetensors`` file, and rebuilds the generator from the metadata alone.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .artifact import META_KEY, GeneratorMeta
from .errors import I2IError

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
LATEST = "latest"


def resolve(path: str | Path, gone: str = "pass that folder instead: {path}") -> Path:
    """The weights file behind any of the accepted checkpoint paths. A ``latest`` pointer naming a folder
    that is gone is an I2IError saying what the run has, then ``gone`` (:func:`gone_latest`)."""
    p = Path(path)
    if not p.exists():
        raise I2IError(f"checkpoint {path} does not exist; pass a run folder, a checkpoint folder or a {WEIGHTS} file")
    if p.is_file():
        return p
    for candidate in (p, p / "checkpoints"):
        if (candidate / WEIGHTS).is_file():
            return candidate / WEIGHTS
        if (candidate / LATEST).is_file():
            tag = (candidate / LATEST).read_text().strip()
            # ".old": a save of the same tag was killed between its two renames (write_checkpoint)
            for name in (tag, tag + ".old"):
                if (candidate / name / WEIGHTS).is_file():
                    return candidate / name / WEIGHTS
            # never a silent pick of another checkpoint: say what is there and let the user choose
            raise I2IError(gone_latest(candidate, tag, gone))
    raise I2IError(f"no checkpoint found in {path}: expected {WEIGHTS}, or a 'latest' pointer in it or in its checkpoints/ folder")


def checkpoints_present(checkpoints: Path) -> list[str]:
    """The checkpoint folders (holding weights) in a checkpoints/ folder: named tags first (final, last,
    interrupted, best ...), then step_N newest first."""
    found = [d.name for d in Path(checkpoints).iterdir() if d.is_dir() and (d / WEIGHTS).is_file()
             and not d.name.endswith((".tmp", ".old"))] if Path(checkpoints).is_dir() else []
    steps = sorted((n for n in found if n.startswith("step_") and n[5:].isdigit()), key=lambda n: -int(n[5:]))
    return sorted(n for n in found if n not in steps) + steps


def gone_latest(checkpoints: Path, tag: str, todo: str) -> str:
    """One line for a ``latest`` pointer naming a folder that is gone: what the run still has, and
    ``todo`` (``{path}``: the checkpoint to suggest, ``last`` when there is one)."""
    have = checkpoints_present(checkpoints)
    if not have:
        return (f"{checkpoints}/{LATEST} names {tag!r}, which is gone, and no checkpoint is left in {checkpoints}: "
                f"the run cannot be resumed or loaded; start it again")
    pick = next((n for n in ("last", "final", "interrupted") if n in have), None) or \
        next((n for n in have if n.startswith("step_")), have[0])
    shown = ", ".join(have[:6]) + (f" (+{len(have) - 6} more)" if len(have) > 6 else "")
    return (f"{checkpoints}/{LATEST} names {tag!r}, which is gone; the run has: {shown}; "
            + todo.format(path=Path(checkpoints) / pick))


def _state_problem(path: Path, exc: BaseException) -> str:
    """Why ``state.pt`` does not load, in a few words (:func:`i2i.zoo.load_failure`): empty, a pickle
    that needs code (the only "unsafe" one), or damaged."""
    from .zoo import load_failure

    try:
        kind, detail = load_failure(path, exc)
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if kind == "empty":
        return "is empty (0 bytes)"
    if kind == "code":
        return f"is a pickle that runs code ({detail}), which i2i never writes; it is not loaded (unsafe)"
    if kind == "truncated":
        return "is damaged or truncated (an incomplete zip archive)"
    return "is damaged or truncated (not readable as a PyTorch state file)"


def read_state(state_file: str | Path, todo: str = "use another checkpoint of the run (checkpoints/last, step_*)") -> Any:
    """``torch.load(state.pt, weights_only=True)``; a file that does not load is one I2IError saying
    what it is (damaged or truncated, empty, or unsafe) and ``todo``."""
    state_file = Path(state_file)
    try:
        return torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise I2IError(f"{state_file} {_state_problem(state_file, exc)}; {todo}") from None


def read_meta(weights_file: str | Path) -> dict[str, Any]:
    """The i2i metadata of a weights file (generators, config, step ...)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_file), framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
    except (SafetensorError, OSError) as exc:
        raise I2IError(f"{weights_file} is not a readable safetensors file ({exc}); is it an i2i checkpoint?") from None
    if raw is None:
        raise I2IError(f"{weights_file} has no i2i metadata; for third-party weights use `--weights` with `--model`")
    try:
        meta = json.loads(raw)
        if not isinstance(meta, dict):
            raise ValueError(f"{str(meta)[:60]} is no mapping")
    except ValueError as exc:
        raise I2IError(f"{weights_file}: its i2i metadata is damaged ({' '.join(str(exc).split())[:120]}); "
                       "use another checkpoint of the run") from None
    return meta


def write_checkpoint(
    directory: Path,
    weights: dict[str, torch.Tensor],
    meta: dict[str, Any],
    state: dict[str, Any] | None = None,
    files: dict[str, str] | None = None,
    point_latest: bool = True,
) -> Path:
    """Write a checkpoint folder atomically and point ``latest`` at it.

    Killed at any point (kill -9), the folder ``latest`` names stays loadable: the new checkpoint is
    complete in ``<tag>.tmp`` before it is renamed into place; an older one of the same tag is
    renamed to ``<tag>.old`` first, which :func:`resolve` falls back on in the moment between.

    ``files``: text files written into the folder with it (file name -> text: the model card).
    ``point_latest=False`` leaves ``latest`` alone: ``best`` is not where a resumed run goes on from.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
    try:
        save_file(tensors, str(tmp / WEIGHTS), metadata={META_KEY: json.dumps(meta, default=str)})
        if state is not None:
            torch.save(state, tmp / STATE)
        for name, text in (files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    except BaseException:  # e.g. a second Ctrl-C: leave no half-written folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    tmp.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    if not point_latest:
        return directory
    pointer = directory.parent / (LATEST + ".tmp")
    pointer.write_text(directory.name + "\n")
    os.replace(pointer, directory.parent / LATEST)
    return directory


def prune(checkpoints: Path, keep_last: int) -> list[Path]:
    """Remove all but the newest ``keep_last`` ``step_N`` checkpoints (never the one ``latest``
    names; other tags such as last, final, interrupted and best are kept). Returns what was removed.

    A folder is renamed to ``<name>.old`` before it is deleted, so a kill leaves no half-deleted
    checkpoint under a loadable name.
    """
    if keep_last < 1 or not checkpoints.is_dir():
        return []
    pointer = checkpoints / LATEST
    latest = pointer.read_text().strip() if pointer.is_file() else ""
    steps = sorted((d for d in checkpoints.iterdir() if d.is_dir() and d.name.startswith("step_")
                    and d.name[5:].isdigit()), key=lambda d: int(d.name[5:]))
    removed = []
    # What an earlier kill left: a ``.tmp`` of an unfinished save (prune runs after every save, so none
    # is in progress) and a ``.old`` of a prune or same-tag save caught between its rename and delete.
    # A ``.old`` is kept only while it is what ``latest`` falls back on (its tag has no folder).
    for leftover in checkpoints.glob("step_*.*"):
        tag, _, kind = leftover.name.rpartition(".")
        if leftover.is_dir() and (kind == "tmp" or (kind == "old" and (tag != latest or (checkpoints / tag).is_dir()))):
            shutil.rmtree(leftover, ignore_errors=True)
    for folder in steps[:-keep_last]:
        if folder.name == latest:
            continue
        doomed = folder.with_name(folder.name + ".old")
        shutil.rmtree(doomed, ignore_errors=True)
        folder.rename(doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        removed.append(folder)
    return removed


def generator_state(weights: dict[str, torch.Tensor], net: str, ema: bool = True) -> dict[str, torch.Tensor]:
    """One generator's state_dict from a checkpoint's flat tensors (EMA copy when present)."""
    for prefix in ((f"ema.{net}.",) if ema else ()) + (f"{net}.",):
        sd = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        if sd:
            return sd
    raise I2IError(f"the checkpoint holds no weights for network {net!r}")


def has_i2i_meta(weights_file: str | Path) -> bool:
    """Whether a .safetensors file carries i2i's metadata (an i2i checkpoint, not a published file)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights_file), framework="pt") as f:
            return META_KEY in (f.metadata() or {})
    except (SafetensorError, OSError):
        return False


def open_checkpoint(path: str | Path, net: str | None = None, ema: bool = True) -> tuple[nn.Module, GeneratorMeta]:
    """Rebuild a trained generator (eval mode, CPU) from a checkpoint and nothing else.

    For :func:`i2i.load` (the one door that opens generators); weights that do not fit the recorded
    architecture (renamed keys, wrong shapes) are a one-line I2IError.
    """
    from .registry import generators
    from .zoo import build_strict

    weights_file = resolve(path)
    meta = read_meta(weights_file)
    gens = meta.get("generators", {})
    net = net or meta.get("main", "G")
    if not isinstance(gens, dict) or not all(isinstance(g, dict) for g in gens.values()):
        raise I2IError(f"{weights_file}: its i2i metadata is damaged (generators {str(gens)[:60]!r} is no mapping "
                       "of generator records); use another checkpoint of the run")
    if net not in gens:
        raise I2IError(f"checkpoint has no generator {net!r}; it has: {', '.join(gens) or 'none'}")
    gmeta = GeneratorMeta.from_json(json.dumps(gens[net]), str(weights_file), "use another checkpoint of the run")
    try:
        tensors = load_file(str(weights_file))
    except (SafetensorError, OSError) as exc:
        raise I2IError(f"{weights_file} is damaged ({exc}); use another checkpoint of the run") from None
    name = generators().recorded(gmeta.name, gmeta.info.get("plugin"))  # plugin:name while another plugin claims it
    module = build_strict(name, gmeta.kwargs, generator_state(tensors, net, ema=ema), source=str(weights_file),
                          todo=f"the file is not from the architecture/settings its metadata records (edited or "
                               f"damaged?): use another checkpoint of the run (checkpoints/last, step_*)")
    gmeta.min_size = max(gmeta.min_size, generators().get(name).min_size)  # older checkpoints lack it
    gmeta.info.setdefault("checkpoint", str(weights_file))
    gmeta.info.setdefault("step", meta.get("step"))
    return module, gmeta


def save_generator(path: str | Path, module: nn.Module, meta: GeneratorMeta) -> Path:
    """Write one generator as a self-describing weights file (for imported or zoo weights)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"{meta.net}.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    doc = {"format": 1, "main": meta.net, "generators": {meta.net: json.loads(meta.to_json())}}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(doc)})
    os.replace(tmp, path)
    return path
