"""The ``i2i`` command line: a click group whose commands plugins can extend."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from . import __version__
from .errors import I2IError, close_matches, did_you_mean, os_error_line

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import otherwise

#: `i2i list KIND`: plural names accepted on the command line -> registry kinds
LIST_KINDS = {
    "generators": "generator",
    "discriminators": "discriminator",
    "losses": "loss",
    "methods": "method",
    "datasets": "dataset",
    "models": "model",
    "masks": "mask",
    "metrics": "metric",
}


class I2IGroup(click.Group):
    """Loads plugin commands on first use and turns I2IError into a one-line error."""

    _host_id: int | None = None
    _base: dict[str, dict[str, click.Command]] | None = None

    def _add_plugin_commands(self) -> None:
        """Add the current plugin host's commands; after ``plugins.reset()`` replace the old host's."""
        from .plugins import manager

        host = manager()
        if self._host_id == id(host):
            return
        if self._base is None:  # the host's own commands, and those of its groups (``eval``)
            self._base = {"": dict(self.commands)}
            self._base.update({n: dict(c.commands) for n, c in self.commands.items() if isinstance(c, click.Group)})
        else:
            self.commands = dict(self._base[""])
            for name, commands in self._base.items():
                if name:
                    self.commands[name].commands = dict(commands)  # type: ignore[attr-defined]
        self._host_id = id(host)
        host.add_commands(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._add_plugin_commands()
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        cmd = self.get_command(ctx, name)
        if cmd is None and name and not name.startswith("-"):
            ctx.fail(f"no command {name!r}{did_you_mean(name, self.list_commands(ctx))}; see `i2i --help`")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except I2IError as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:  # a path the system refuses (a file where a folder goes, too long, no space)
            raise click.ClickException(os_error_line(exc)) from None


@click.group(cls=I2IGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="i2i")
def cli() -> None:
    """i2i: image-to-image translation (pix2pix, CycleGAN, SRGAN, inpainting).

    Train with one engine, translate with PyTorch or ONNX, serve over HTTP.
    """
    warnings.filterwarnings("default", category=UserWarning, module="i2i")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List the loaded plugins, their versions and the hooks they implement (and those that failed to load)."""
    from .plugins import manager

    host = manager()
    infos = sorted(host.info.values(), key=lambda p: (not p.builtin, p.name))
    if as_json:
        skipped = [{"name": n, "skipped": why} for n, why in sorted(host.skipped.items())]
        click.echo(json.dumps([vars(p) for p in infos] + skipped, indent=2))
        return
    rows = [(p.name, p.version, "built-in" if p.builtin else "installed", ", ".join(h.removeprefix("register_") for h in p.hooks)) for p in infos]
    rows += [(name, "-", "skipped", why) for name, why in sorted(host.skipped.items())]
    _table(("plugin", "version", "source", "hooks"), rows)


@cli.command(name="list")
@click.argument("kind", type=click.Choice(sorted(LIST_KINDS)))
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(kind: str, pattern: str, as_json: bool) -> None:
    """List registered KIND (generators, losses, models, ...) matching PATTERN (wildcards: 'unet*')."""
    from .registry import registry

    reg = registry(LIST_KINDS[kind])
    entries = [*reg.list(pattern), *_variant_rows(reg, pattern)]
    rows = [_describe(kind, e) for e in entries]
    for name, claims in reg.clashing(pattern).items():  # switched off: say so, and the names that work
        rows += _clash_rows(kind, name, claims)
    rows.sort(key=_bare_first)
    if not rows:
        names = reg.names()
        if not names:
            raise I2IError(f"no {kind} are registered; `i2i plugins` shows which plugins are loaded")
        close = close_matches(pattern.strip("*?"), names)
        hint = f"did you mean: {', '.join(close)}?" if close else \
            f"registered: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}"
        raise I2IError(f"no {kind} match {pattern!r} ({hint}); `i2i list {kind}` shows them all")
    if as_json:
        click.echo(json.dumps([dict(zip(rows[0][0], r[1])) for r in rows], indent=2, default=str))
        return
    _table(rows[0][0], [r[1] for r in rows])


def _clash_rows(kind: str, name: str, claims: list[Any]) -> list[tuple[tuple[str, ...], tuple[Any, ...]]]:
    """`i2i list` rows for a name two plugins claim: the bare name, marked off, naming both plugins and
    the qualified names to use; then one row per claim as ``plugin:name`` (usable as it stands)."""
    plugins = list(dict.fromkeys(c.plugin for c in claims))
    qualified = list(dict.fromkeys(f"{c.plugin}:{name}" for c in claims))
    by = "by plugin " + " and ".join(repr(p) for p in plugins) if len(plugins) > 1 else f"twice by plugin {plugins[0]!r}"
    headers = _describe(kind, claims[0])[0]
    note = f"OFF: registered {by}; use {' or '.join(qualified)}"
    off = tuple(name if h == "name" else ", ".join(plugins) if h == "plugin" else note if h == "description" else "-"
                for h in headers)
    first_claims = {c.plugin: c for c in reversed(claims)}  # plugin:name opens that plugin's first claim
    return [(headers, off), *((headers, (f"{p}:{name}", *_describe(kind, first_claims[p])[1][1:])) for p in plugins)]


def _bare_first(row: tuple[tuple[str, ...], tuple[Any, ...]]) -> tuple[str, str]:
    """Sort key of `i2i list` rows: by name, a ``plugin:name`` row right after the bare name's row."""
    plugin, colon, bare = str(row[1][0]).partition(":")
    return (bare, plugin) if colon else (plugin, "")


def _variant_rows(reg: Any, pattern: str) -> list[Any]:
    """``<entry>.<variant>`` rows for entries that build many architectures (GeneratorSpec.variants),
    matched by PATTERN against the whole name or the variant alone (``i2i list generators SwinIR``)."""
    import dataclasses
    import fnmatch

    rows = []
    for spec in reg.list("*"):
        for variant, description in (spec.variants() if getattr(spec, "variants", None) else ()):
            name = f"{spec.name}.{variant}"
            if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(variant, pattern):
                # scale and size multiple come with each file (or hyperparameters), not with the family
                rows.append(dataclasses.replace(spec, name=name, description=description, variants=None,
                                                scale="any", size_multiple="any"))
    return rows


def _describe(kind: str, spec: Any) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """(headers, row) for `i2i list`: kind-specific columns, then the plugin and description."""
    if kind == "generators":
        io = f"{spec.in_channels}->{spec.out_channels}" + (f" +{','.join(i.name for i in spec.extra_inputs)}" if spec.extra_inputs else "")
        return ("name", "channels", "multiple", "scale", "plugin", "description"), (spec.name, io, spec.size_multiple, spec.scale, spec.plugin, spec.description)
    if kind == "losses":
        return ("name", "kind", "plugin", "description"), (spec.name, spec.kind, spec.plugin, spec.description)
    if kind == "datasets":
        from .data import catalogue_status  # type: ignore[attr-defined]

        return ("name", "layout", "present", "plugin", "description"), (spec.name, spec.layout, catalogue_status(spec), spec.plugin, spec.description)
    if kind == "models":
        from .zoo import cache_status  # type: ignore[attr-defined]

        return ("name", "generator", "cached", "license", "description"), (spec.name, spec.generator, ("yes" if cache_status(spec) else "no") if spec.url else "--weights", spec.license, spec.description)
    if kind == "metrics":
        better = "higher" if spec.higher_is_better else "lower"
        return ("name", "kind", "better", "plugin", "description"), (spec.name, spec.kind, better, spec.plugin, spec.description)
    return ("name", "plugin", "description"), (spec.name, spec.plugin, spec.description)


def table_text(headers: Sequence[Any], rows: Sequence[Sequence[Any]], right: Iterable[int] = ()) -> str:
    """The one table printer of the CLI (`i2i list`, `plugins`, `cache`, `eval sr`, `eval translate`):
    columns padded to their widest cell, a dashed rule under the headers, the ``right`` columns
    (numbers) right-aligned."""
    right = set(right)
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    click.echo(table_text(headers, rows))


def _recipe_path(method: str, config: str | None, data: str | None) -> Path | None:
    """--config NAME|PATH, else configs/<method>_<data>.yaml, else configs/<method>.yaml, else none."""
    from importlib.resources import files

    shipped = Path(str(files("i2i_configs")))
    if config:
        p = Path(config)
        if p.is_file():
            return p
        if (shipped / f"{config}.yaml").is_file():
            return shipped / f"{config}.yaml"
        names = sorted(f.stem for f in shipped.glob("*.yaml"))
        raise I2IError(f"no config file or recipe {config!r}{did_you_mean(config, names)}; recipes: {', '.join(names)}")
    for stem in ([f"{method}_{Path(data).name}"] if data else []) + [method]:
        if (shipped / f"{stem}.yaml").is_file():
            return shipped / f"{stem}.yaml"
    return None


def _is_shipped(recipe_file: Path | None) -> bool:
    """Whether ``recipe_file`` is one of i2i's shipped recipes (not the user's own YAML)."""
    from importlib.resources import files

    if recipe_file is None:
        return False
    return Path(recipe_file).resolve().parent == Path(str(files("i2i_configs"))).resolve()


@cli.command(context_settings={"show_default": True})
@click.argument("method")
@click.option("--data", help="Dataset name from `i2i list datasets`, or a folder.")
@click.option("--config", "config", help="Recipe name in configs/ or a YAML file (default: <method>_<data> if shipped).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key (repeatable).")
@click.option("--name", help="Run name: the run folder is OUT_DIR/NAME.")
@click.option("--out-dir", help="Where run folders go (default: runs).")
@click.option("--max-steps", type=int, help="Stop after this many iterations.")
@click.option("--batch-size", type=int, help="Images per step per process.")
@click.option("--device", help="auto, cpu, cuda, cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Mixed precision (CUDA).")
@click.option("--resume", is_flag=True, help="Continue the run NAME from its latest checkpoint.")
@click.option("--resume-from", type=click.Path(), help="Continue from this checkpoint folder.")
@click.option("--help-config", is_flag=True, help="List the method's config keys with types and defaults.")
def train(method: str, data: str | None, config: str | None, overrides: tuple[str, ...], name: str | None,
          out_dir: str | None, max_steps: int | None, batch_size: int | None, device: str | None,
          precision: str | None, resume: bool, resume_from: str | None, help_config: bool) -> None:
    """Train METHOD (pix2pix, cyclegan, srresnet, srgan, inpaint, ...) with the shared engine.

    Settings: defaults < recipe (--config) < flags and --set KEY=VALUE. Multi-GPU:
    `torchrun --nproc_per_node N -m i2i.cli train ...`.
    """
    from .config import build, describe, from_dict, load_recipe, parse_overrides
    from .registry import methods

    cls = methods().get(method).factory.Config
    if help_config:
        _table(("key", "type", "default"), describe(cls))
        return
    cli_values = parse_overrides(overrides)
    for key, value in (("data", data), ("name", name), ("out_dir", out_dir), ("max_steps", max_steps),
                       ("batch_size", batch_size), ("device", device), ("precision", precision)):
        if value is not None:
            cli_values[key] = value
    resume_dir = None
    if resume or resume_from:
        from .checkpoint import LATEST, read_meta, resolve

        if resume_from:
            weights = resolve(resume_from)
        else:
            run_name = cli_values.get("name") or (_default_name(method, data, config) if data else None)
            if not run_name:
                raise I2IError("--resume needs the run: give --name NAME (or --data as when you started it), or --resume-from PATH")
            ckpts = Path(cli_values.get("out_dir", "runs")) / str(run_name) / "checkpoints"
            if not (ckpts / LATEST).is_file():
                raise I2IError(f"nothing to resume: no checkpoint in {ckpts}")
            weights = resolve(ckpts, gone="pass --resume-from {path}")
        resume_dir = weights.parent
        saved = read_meta(weights)
        if saved.get("method") != method:
            raise I2IError(f"checkpoint {resume_dir} was trained with {saved.get('method')!r}, not {method!r}")
        # The saved config, so the continuation is exact; flags and --set still apply on top.
        cfg = build(cls, vars(from_dict(cls, saved["config"])), f"checkpoint {resume_dir}", cli_values,
                    recipe_is_baseline=True)
        _qualify_recorded_networks(cfg, saved, cli_values)
    else:
        recipe_file = _recipe_path(method, config, data)
        recipe = load_recipe(recipe_file) if recipe_file else {}
        # a shipped recipe's keys are not the user's: a method refuses only what the user set
        cfg = build(cls, recipe, str(recipe_file), cli_values, recipe_is_baseline=_is_shipped(recipe_file))
        if recipe_file and _is_main_process():
            click.echo(f"i2i: recipe {recipe_file}", err=True)
    if not cfg.data:
        raise I2IError("no training data: pass --data NAME (see `i2i list datasets`) or --data /path/to/folder")
    if not cfg.name:
        cfg.name = _default_name(method, cfg.data, config)
    run_dir = Path(cfg.out_dir) / cfg.name
    if resume_dir is None and (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise I2IError(f"{run_dir} holds a run already: --resume continues it, --name NAME starts another "
                       f"(or delete the folder to start this one again)")
    from .engine import train as run_training
    from .engine.trainer import TrainingInterrupted

    from .zoo import WeightsMismatch

    try:
        run_dir = run_training(method, cfg, resume_from=resume_dir)
    except TrainingInterrupted as exc:
        if _is_main_process():
            click.echo(f"i2i: {exc}", err=True)
        sys.exit(exc.exit_code)
    except WeightsMismatch as exc:
        if resume_dir is None or str(resume_dir) not in exc.source:
            raise
        raise I2IError(_resume_mismatch(exc, resume_dir, saved, cfg, cli_values)) from None
    if _is_main_process():
        click.echo(f"run folder: {run_dir}")


def _qualify_recorded_networks(cfg: Any, saved: dict[str, Any], cli_values: dict[str, Any]) -> None:
    """A resumed run builds the networks its checkpoint was made with: while another plugin claims a
    recorded name too, the qualified ``plugin:name`` of the claim the checkpoint records (the
    generator's plugin is in its metadata; a discriminator's is i2i's own) instead of the clash error."""
    from .registry import discriminators, generators

    gen = saved.get("generators", {}).get(saved.get("main", "G"), {})
    for key, registry, plugin in (("generator", generators(), gen.get("info", {}).get("plugin")),
                                  ("discriminator", discriminators(), None)):
        name = getattr(cfg, key, None)
        if isinstance(name, str) and name and key not in cli_values:
            setattr(cfg, key, registry.recorded(name, plugin))


#: the config keys that choose the networks (a change makes the checkpoint's weights not fit)
_NETWORK_KEYS = ("generator", "generator_kwargs", "discriminator", "discriminator_kwargs")


def _resume_mismatch(exc: Any, resume_dir: Path, saved: dict[str, Any], cfg: Any, cli_values: dict[str, Any]) -> str:
    """One line for a resumed checkpoint whose weights do not fit the networks this run builds: the
    settings that differ from the checkpoint's and what to do, then the short key detail."""
    from .config import to_dict
    from .engine.trainer import other_checkpoints

    then, now = saved.get("config", {}), to_dict(cfg)
    changed = [k for k in cli_values if k.split(".")[0] in then and k.split(".")[0] not in
               ("data", "name", "out_dir", "max_steps", "batch_size", "device", "precision")
               and then.get(k.split(".")[0]) != now.get(k.split(".")[0])]
    networks = [k for k in changed if k.split(".")[0] in _NETWORK_KEYS]
    drop = ", ".join(f"--set {k}={cli_values[k]}" for k in (networks or changed))
    counts = ", ".join(f"{n} {what}" for n, what in zip(exc.counts, ("missing keys", "unexpected keys",
                                                                    "shape mismatches")) if n)
    detail = f"({exc.source} do not fit: {counts})"
    if networks:
        kind = "discriminator" if all(k.startswith("discriminator") for k in networks) else "generator"
        main = saved.get("main", "G")
        gen = saved.get("generators", {}).get(main, {})
        if kind == "generator" and gen.get("name"):
            have = f"the checkpoint's {main} is {gen['name']}({_kwargs_text(gen.get('kwargs', {}))})"
        else:
            have = f"the checkpoint's {kind} is {then.get(kind)}({_kwargs_text(then.get(kind + '_kwargs') or {})})"
        ask = f"{now.get(kind)}({_kwargs_text(now.get(kind + '_kwargs') or {})})"
        return (f"{have}, this run asks for {ask}: resume with the run's own settings (drop {drop}) or start a "
                f"new run with --name NAME {detail}")
    if changed:
        return (f"the checkpoint {resume_dir} does not fit the networks of this run's settings ({drop}): resume "
                f"with the run's own settings (drop them) or start a new run with --name NAME {detail}")
    return (f"{exc.source} do not fit {exc.what}: {exc.detail}; the file is not from this architecture/settings "
            f"(edited or damaged?): resume from another checkpoint of the run ({other_checkpoints(resume_dir)})")


def _kwargs_text(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "its defaults"


def _default_name(method: str, data: str, config: str | None) -> str:
    """runs/<method>_<data>, or the recipe's own name when one is given (pix2pix_facades_quick), so a
    quick run and the paper's recipe never share a folder."""
    if config:
        return Path(config).stem
    return f"{method}_{Path(data).name}"


def _is_main_process() -> bool:
    """False in the torchrun workers other than rank 0, which train but do not talk."""
    return os.environ.get("RANK", "0") == "0"


from .video import video_options  # noqa: E402 - the video options of `i2i translate`


@cli.command(context_settings={"show_default": True})
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", help="What to run: a zoo name (`i2i list models`), an .onnx file, a .pth/.safetensors "
                               "weights file, or a run/checkpoint folder.")
@click.option("--checkpoint", type=click.Path(), help="A run folder, checkpoint folder or weights file (same as --model).")
@click.option("--weights", type=click.Path(), help="Local weights file for a zoo --model (skips the download); alone, a published weights file to run.")
@click.option("--out", "out_dir", default="translated", type=click.Path(), help="Output folder (PNG files; videos: --container).")
@click.option("--size", type=click.IntRange(min=1), help="Resize the shorter side to SIZE before translating.")
@click.option("--mask", type=click.Path(), help="Hole mask for inpainting models (non-zero or opaque = hole).")
@click.option("--tile", type=click.IntRange(min=0), default=0, help="Translate in tiles of this side (0: whole image, "
              "or tiles when the image is past --max-pixels or the free memory).")
@click.option("--overlap", type=click.IntRange(min=0), default=32, help="Context pixels around each tile.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=4096 * 4096,
              help="Images larger than this (width x height) are tiled, or refused when the model cannot tile.")
@click.option("--whole", is_flag=True, help="Translate A|B pair files whole (a pix2pix model trained on pairs "
              "translates their input half by default).")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N (tensorrt for .onnx).")
@click.option("--net", help="Which generator of a checkpoint (e.g. G_B for CycleGAN's B->A).")
@click.option("--no-ema", is_flag=True, help="Use the raw weights even when EMA weights are present.")
@click.option("--cpu-kernels", is_flag=True, help="PyTorch models on the CPU: use the i2i_cpu plugin's faster "
              "convolutions (.onnx files: `i2i export --optimize cpu`).")
@click.option("--card", is_flag=True, help="Print the checkpoint's model card (MODEL_CARD.md) first.")
@video_options
def translate(inputs: tuple[str, ...], model: str | None, checkpoint: str | None, weights: str | None, out_dir: str,
              size: int | None, mask: str | None, tile: int, overlap: int, max_pixels: int, whole: bool, device: str,
              net: str | None, no_ema: bool, cpu_kernels: bool, card: bool, **video: Any) -> None:
    """Translate images and videos (files, folders or globs) with a trained or pretrained generator.

    Every readable file is translated; unreadable ones are listed, and the exit status is 1 if any failed.
    Videos (.mp4 .mov .mkv .webm .avi) are streamed with their sound into OUT/NAME.mp4 (docs/video.md).
    """
    from tqdm import tqdm

    from .loader import load, weights_alone
    from .translate import expand_inputs, translate_files
    from .video import is_video_file, translate_videos

    if not checkpoint:  # a published weights file alone is the model (export and serve ask the same helper)
        model, weights = weights_alone(model, weights)
    if bool(checkpoint) == bool(model):
        raise I2IError("name exactly one generator: --model (zoo name, .onnx, weights file or run folder) or --checkpoint PATH")
    if checkpoint and not Path(checkpoint).exists():
        raise I2IError(f"checkpoint {checkpoint} does not exist; pass a run folder, a checkpoint folder or a weights file")
    paths = expand_inputs(inputs)
    videos = [p for p in paths if is_video_file(p)]  # streamed by i2i/video.py
    paths = [p for p in paths if not is_video_file(p)]
    if videos:  # a bad video option is one line before any image or clip is translated
        from .video import check_options

        check_options(**{k: video[k] for k in ("codec", "pix_fmt", "crf", "preset", "batch_size", "container")
                         if k in video})
    else:  # options only clips read, given for images alone: say they did nothing
        ctx = click.get_current_context()
        given = [f"--{k.replace('_', '-')}" for k in video
                 if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]
        if given:
            click.echo(f"i2i: {', '.join(given)} {'is' if len(given) == 1 else 'are'} for videos; no video among "
                       f"the inputs", err=True)
    generator = load(model or checkpoint, weights=weights, device=device, net=net, ema=not no_ema,  # type: ignore[arg-type]
                     cpu_kernels=cpu_kernels)
    if card:
        _say_model_card(generator, full=True)
    with tqdm(total=len(paths), unit="img", disable=len(paths) < 2 or not sys.stderr.isatty()) as bar:
        written, failed = translate_files(generator, paths, Path(out_dir), size=size, mask=mask, tile=tile,
                                          overlap=overlap, max_pixels=max_pixels, whole=whole,
                                          progress=lambda p: bar.update(1),
                                          note=lambda msg: tqdm.write(msg, file=sys.stderr),
                                          keep_going=len(paths) > 1)  # one file: its error is the one line
    runtime = " (onnxruntime)" if generator.providers else ""
    if not card and written:  # after the work, so a refused input's error stays the only line
        _say_model_card(generator, full=False)
    if paths or not videos:
        click.echo(f"translated {len(written)} image(s) with {generator.meta.name} on {generator.device}{runtime} -> {out_dir}")
    if videos:
        done, failed_videos = translate_videos(generator, videos, Path(out_dir), size=size, mask=mask, tile=tile,
                                               overlap=overlap, max_pixels=max_pixels, **video)
        click.echo(f"translated {len(done)} video(s) with {generator.meta.name} on {generator.device}{runtime} -> {out_dir}")
        failed += failed_videos
    if failed:
        what = "file(s)" if videos else "image(s)"
        raise I2IError(f"{len(failed)} of {len(paths) + len(videos)} {what} could not be translated (listed above)")


def _say_model_card(generator: Any, *, full: bool) -> None:
    """The checkpoint's model card: its one-line summary on stderr, or (``--card``) the whole card."""
    info = generator.describe()
    if full:
        click.echo(info["model_card"] or f"i2i: {generator.source} has no model card (i2i writes one into each "
                                              f"checkpoint folder of a training run; published weights, .onnx files and "
                                              f"runs from older i2i versions have none)", err=not info["model_card"])
    elif info["summary"]:
        click.echo(f"i2i: model: {info['summary']} (--card shows the model card)", err=True)


#: what lives under ``cache_dir()``: ``i2i cache`` shows and clears these
CACHE_KINDS = {
    "datasets": "downloaded datasets",
    "models": "downloaded pretrained weights",
    "tensorrt": "TensorRT engines (built again on the next run, slowly)",
    "metrics": "feature-network weights for FID/KID/IS (Inception) and LPIPS (AlexNet)",
    "kernels": "compiled CPU kernels (i2i_cpu's Winograd transforms; built again on the next run, in ~1 s)",
}


@cli.command()
@click.argument("action", type=click.Choice(["show", "clear"]), default="show")
@click.argument("kinds", nargs=-1)
@click.option("--yes", is_flag=True, help="Clear downloads without asking.")
def cache(action: str, kinds: tuple[str, ...], yes: bool) -> None:
    """Show what i2i keeps in its cache ($I2I_CACHE_DIR, else ~/.cache/i2i), or clear KINDS of it
    (datasets, models, tensorrt, metrics, kernels, or all)."""
    import shutil

    from .download import cache_dir

    if action == "show":
        rows = []
        for kind, what in CACHE_KINDS.items():
            files = [f for f in cache_dir(kind).rglob("*") if f.is_file()]  # none when it does not exist
            rows.append((kind, len(files), _size(sum(f.stat().st_size for f in files)), what))
        click.echo(f"cache: {cache_dir('').resolve()}")
        _table(("kind", "files", "size", "what"), rows)
        return
    if not kinds:
        raise I2IError(f"name what to clear: {', '.join(CACHE_KINDS)}, or all")
    for kind in kinds:
        if kind != "all" and kind not in CACHE_KINDS:
            raise I2IError(f"no cache kind {kind!r}{did_you_mean(kind, [*CACHE_KINDS, 'all'])}; "
                           f"choose from {', '.join(CACHE_KINDS)}, all")
    chosen = list(CACHE_KINDS) if "all" in kinds else list(dict.fromkeys(kinds))
    downloads = [k for k in chosen if k in ("datasets", "models", "metrics") and cache_dir(k).is_dir()]
    if downloads and not yes:
        click.confirm(f"clear {' and '.join(downloads)}? They will be downloaded again when needed", abort=True)
    for folder in (cache_dir(kind) for kind in chosen):
        if folder.is_dir():
            try:
                shutil.rmtree(folder)
            except OSError as exc:
                raise I2IError(f"could not clear {folder}: {exc.strerror or exc}") from None
            click.echo(f"cleared {folder}")


def _size(n: float) -> str:
    """A byte count as B, kB, MB or GB."""
    units = ["B", "kB", "MB", "GB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluate a model on a dataset (subcommands per task, added by plugins)."""


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: Any = None, line: str | None = None) -> None:
    """Warnings reach a CLI user as one line, without the source line Python shows by default."""
    text = str(message)
    click.echo(text if text.startswith("i2i") else f"i2i: warning: {text}", err=True)


def main() -> None:
    """Console-script entry point."""
    warnings.showwarning = _one_line_warning
    try:
        cli(prog_name="i2i")
    except I2IError as exc:  # raised outside a command (e.g. while loading plugins)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
