"""The model card: a Markdown file in every checkpoint folder that says what the model is.

``runs/<name>/checkpoints/<tag>/MODEL_CARD.md`` holds the method, the generator and its kwargs,
the data (name, size, source URL and licence where the dataset catalogue knows them), steps and
epochs, the validation metrics at that step with their protocol, the precision, the i2i and
plugin versions and the command that reproduces the run. The layout follows the Hugging Face
model cards' sections (Mitchell et al. 2019, "Model Cards for Model Reporting").

Its second line is a one-line summary in a Markdown quote (``> ...``), which ``i2i translate``
prints and ``GET /v1/model`` returns. Torch-free: the server reads a card as text.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

#: the card's file name in a checkpoint folder
CARD = "MODEL_CARD.md"


@dataclass
class DataInfo:
    """What the card says about the training data."""

    #: ``--data`` as given: a catalogue name or a folder
    name: str
    #: training images (dataset items) seen per epoch
    size: int | None = None
    #: per-domain image counts where the data is two unpaired sets (CycleGAN's A and B): the card
    #: says "69 + 300 images", never one set's count for both
    parts: list[int] | None = None
    url: str = ""
    license: str = ""
    description: str = ""


@dataclass
class ValidationInfo:
    """The validation at (or before) the checkpoint's step, and the best so far."""

    step: int
    #: metric name -> value
    values: dict[str, float]
    #: metric name -> (description, higher_is_better, kind)
    specs: dict[str, tuple[str, bool, str]] = field(default_factory=dict)
    #: where the images came from and how they were prepared (one line)
    protocol: str = ""
    images: int = 0
    seconds: float = 0.0
    select_by: str = ""
    best_value: float | None = None
    best_step: int | None = None


def size_text(size: int | None, parts: Sequence[int] | None = None) -> str:
    """``"69 + 300"`` for two image sets, else ``"69"``; "" when unknown."""
    if parts:
        return " + ".join(str(int(n)) for n in parts)
    return str(size) if size else ""


def data_info(data: str, size: int | None, parts: Sequence[int] | None = None) -> DataInfo:
    """The card's data section for ``--data``: a catalogue name gets its URL, licence and description."""
    info = DataInfo(name=data, size=size, parts=list(parts) if parts else None)
    try:
        from .registry import datasets

        reg = datasets()
        if data in reg:
            spec = reg.get(data)
            info.url, info.license, info.description = spec.url, spec.license, spec.description
    except Exception:  # noqa: BLE001 - a card is written with what is known; the plugin host reports its own errors
        pass
    return info


def weights_line(key: str, value: str) -> str:
    """One card line for a run that started from other weights (``init``, ``init_from``): a zoo name
    gets its source and licence from the catalogue; anything else is named as given."""
    try:
        from .registry import models

        reg = models()
        if value in reg:
            spec = reg.get(value)
            source = spec.source or spec.url
            return (f"- `{key}`: zoo model `{value}`" + (f", from {source}" if source else "")
                    + (f"; licence / terms: {spec.license}" if spec.license else "; licence unknown to i2i's zoo"))
    except Exception:  # noqa: BLE001 - a card is written with what is known
        pass
    return f"- `{key}`: `{value}` (not in i2i's zoo: check its licence yourself)"


def reproduce_command(method: str, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """``i2i train METHOD --data D --set k=v ...``: every key that differs from the method's defaults,
    so the command gives the same config whatever recipe the run started from."""
    parts = ["i2i", "train", method]
    flags = {"data": "--data", "name": "--name", "out_dir": "--out-dir", "max_steps": "--max-steps",
             "batch_size": "--batch-size"}
    changed = {k: v for k, v in config.items() if not (k in defaults and v == defaults[k])}
    for key, flag in flags.items():
        if key in changed:
            parts += [flag, str(changed.pop(key))]
    for key, value in changed.items():
        parts += ["--set", f"{key}={_cli_value(value)}"]
    return " ".join(shlex.quote(p) for p in parts)


def _cli_value(value: Any) -> str:
    """A value as ``--set`` reads it back (lists and mappings as YAML flow, i.e. JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def summary(method: str, generator: str, data: DataInfo, step: int, epoch: int,
            validation: ValidationInfo | None) -> str:
    """One line: what was trained on what, how long, and how good it measured."""
    size = f" ({size_text(data.size, data.parts)} images)" if data.size or data.parts else ""
    text = f"{method} {generator} trained {step} steps ({epoch} epochs) on {Path(data.name).name}{size}"
    if validation and validation.values:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in validation.values.items())
        text += f"; validation at step {validation.step}: {shown}"
        if validation.select_by and validation.best_step is not None:
            text += f"; best {validation.select_by} {_fmt(validation.best_value)} at step {validation.best_step}"
    return text


def render(*, method: str, tag: str, generator: str, generator_kwargs: Mapping[str, Any], main_net: str,
           data: DataInfo, step: int, epoch: int, total_steps: int, precision: str, device: str,
           i2i_version: str, plugins: Mapping[str, str], command: str,
           validation: ValidationInfo | None = None, ema: bool = False,
           initial_weights: list[str] | None = None) -> str:
    """The card's Markdown text (title, quoted summary line, then the sections)."""
    lines = [f"# {method} model card: {tag}", "",
             f"> {summary(method, generator, data, step, epoch, validation)}", ""]
    lines += ["## Model", "",
              f"- method: `{method}`",
              f"- generator (`{main_net}`): `{generator}` with kwargs `{json.dumps(dict(generator_kwargs), sort_keys=True)}`",
              ("- weights: the exponential moving average (EMA) of the trained weights, which `i2i translate` "
               "uses (`--no-ema`: the raw ones)") if ema else "- weights: the trained weights"]
    if initial_weights:
        lines += ["- started from other weights:", *(f"  {line}" for line in initial_weights)]
    lines.append("")
    lines += ["## Training data", "",
              f"- data: `{data.name}`" + (f" ({data.description})" if data.description else ""),
              f"- size: {size_text(data.size, data.parts)} training images" if data.size or data.parts
              else "- size: unknown",
              f"- source: {data.url}" if data.url else "- source: a local folder (not in the dataset catalogue)",
              f"- licence / terms: {data.license}" if data.license else
              "- licence / terms: unknown to i2i's catalogue; check the data's own terms", ""]
    lines += ["## Training", "",
              f"- steps: {step} of {total_steps}; epochs completed: {epoch}",
              f"- precision: {precision} on {device}",
              f"- reproduce: `{command}`", ""]
    lines += ["## Evaluation", ""]
    if validation is None or not validation.values:
        lines += ["No validation was run (`--set val_every=N` turns it on; `i2i eval translate` measures a checkpoint).", ""]
    else:
        lines += [f"Validation at step {validation.step}: {validation.protocol}; {validation.images} images, "
                  f"{validation.seconds:.2f} s.", "",
                  "| metric | value | better | kind | what |", "|---|---|---|---|---|"]
        for name, value in validation.values.items():
            desc, higher, kind = validation.specs.get(name, ("", True, ""))
            lines.append(f"| {name} | {_fmt(value)} | {'higher' if higher else 'lower'} | {kind} | {desc} |")
        lines.append("")
        if validation.select_by:
            lines += [f"Best checkpoint (`checkpoints/best`) kept by `{validation.select_by}`: "
                      f"{_fmt(validation.best_value)} at step {validation.best_step}.", ""]
    lines += ["## Software", "", f"- i2i {i2i_version}"]
    lines += [f"- plugin {name} {version}" for name, version in sorted(plugins.items())]
    lines.append("")
    return "\n".join(lines)


def card_path(checkpoint: str | Path) -> Path | None:
    """The card of a checkpoint (its folder or weights file); None when it has none."""
    p = Path(checkpoint)
    folder = p if p.is_dir() else p.parent
    card = folder / CARD
    return card if card.is_file() else None


def read_card(checkpoint: str | Path) -> str | None:
    """The card's text, or None when the checkpoint has none (older runs, published weights). A card
    damaged into bytes that are not UTF-8 reads with U+FFFD in their place: it is documentation, and
    the model it describes still runs."""
    path = card_path(checkpoint)
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path else None
    except OSError:
        return None


def card_summary(text: str) -> str:
    """The card's one-line summary (its first ``> `` line), or "" when it has none."""
    for line in text.splitlines():
        if line.startswith("> "):
            return line[2:].strip()
    return ""


__all__ = ["CARD", "DataInfo", "ValidationInfo", "data_info", "weights_line", "reproduce_command", "render", "summary",
           "card_path", "read_card", "card_summary"]
