"""The ``i2i`` command line: a click group whose commands plugins can extend."""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import click

from . import __version__
from .errors import I2IError, did_you_mean

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations phones home on import otherwise

#: `i2i list KIND`: plural names accepted on the command line -> registry kinds
LIST_KINDS = {
    "generators": "generator",
    "discriminators": "discriminator",
    "losses": "loss",
    "methods": "method",
    "datasets": "dataset",
    "models": "model",
}


class I2IGroup(click.Group):
    """Loads plugin commands on first use and turns I2IError into a one-line error."""

    _plugins_added = False

    def _add_plugin_commands(self) -> None:
        if not self._plugins_added:
            self._plugins_added = True
            from .plugins import manager

            manager().add_commands(self)

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
    """List the loaded plugins, their versions and the hooks they implement."""
    from .plugins import manager

    infos = sorted(manager().info.values(), key=lambda p: (not p.builtin, p.name))
    if as_json:
        click.echo(json.dumps([vars(p) for p in infos], indent=2))
        return
    rows = [(p.name, p.version, "built-in" if p.builtin else "installed", ", ".join(h.removeprefix("register_") for h in p.hooks)) for p in infos]
    _table(("plugin", "version", "source", "hooks"), rows)


@cli.command(name="list")
@click.argument("kind", type=click.Choice(sorted(LIST_KINDS)))
@click.argument("pattern", default="*")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_(kind: str, pattern: str, as_json: bool) -> None:
    """List registered KIND (generators, losses, models, ...) matching PATTERN (wildcards: 'unet*')."""
    from .registry import registry

    reg = registry(LIST_KINDS[kind])
    entries = reg.list(pattern if any(c in pattern for c in "*?[") else pattern) or []
    if not entries:
        hint = did_you_mean(pattern.strip("*?"), reg.names())
        raise click.ClickException(f"no {kind} match {pattern!r}{hint}; `i2i list {kind}` shows them all")
    rows = [_describe(kind, e) for e in entries]
    if as_json:
        click.echo(json.dumps([dict(zip(rows[0][0], r[1])) for r in rows], indent=2, default=str))
        return
    _table(rows[0][0], [r[1] for r in rows])


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

        return ("name", "generator", "cached", "license", "description"), (spec.name, spec.generator, cache_status(spec), spec.license, spec.description)
    return ("name", "plugin", "description"), (spec.name, spec.plugin, spec.description)


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [tuple(str(c) for c in headers)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if n == 0:
            click.echo("  ".join("-" * w for w in widths))


@cli.group(name="eval")
def eval_group() -> None:
    """Evaluate a model on a dataset (subcommands per task, added by plugins)."""


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="i2i")
    except I2IError as exc:  # raised outside a command (e.g. while loading plugins)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
