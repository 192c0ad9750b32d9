"""An i2i plugin: every hook is an ``@i2i.hookimpl`` function in this module.

The entry point ``[project.entry-points.i2i] example = "i2i_example"`` in pyproject.toml points
i2i at this module; i2i calls the hooks and records "example" as the provider of each name.
"""

from __future__ import annotations

import click

import i2i

__version__ = "0.2.0"


@i2i.hookimpl
def register_generators(register) -> None:
    # Import torch code lazily: `i2i --help` and `i2i plugins` load every plugin module.
    from .network import ResidualGenerator

    register(
        "example_resnet",
        ResidualGenerator,
        in_channels=3,
        out_channels=3,
        size_multiple=1,  # no down-sampling: any height and width work
        test_kwargs={"ngf": 8, "n_blocks": 1},  # the tiny instance the conformance suite builds
        description="example plugin: small residual generator (any size)",
    )


@i2i.hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(count_params)


@click.command("count-params")
@click.argument("name")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Constructor argument (repeatable), e.g. ngf=32.")
@click.option("--kind", type=click.Choice(["generator", "discriminator"]), default="generator", show_default=True,
              help="Which registry NAME is in.")
def count_params(name: str, overrides: tuple[str, ...], kind: str) -> None:
    """Count the trainable parameters of a registered network (from the example plugin)."""
    from i2i.errors import I2IError
    from i2i.registry import registry

    kwargs = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise I2IError(f"--set takes KEY=VALUE, got {item!r}")
        kwargs[key] = _parse(value)
    spec = registry(kind).get(name)  # unknown names: an I2IError listing close matches
    try:
        net = spec.factory(**kwargs)
    except TypeError as exc:
        raise I2IError(f"{kind} {name!r} does not take these arguments: {exc}") from None
    count = sum(p.numel() for p in net.parameters() if p.requires_grad)
    click.echo(f"{name}: {count:,} trainable parameters")


def _parse(value: str) -> object:
    """'32' -> 32, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
