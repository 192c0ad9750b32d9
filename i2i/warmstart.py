"""``--set init=SOURCE``: train from any model i2i opens, its architecture included.

``init`` takes whatever :func:`i2i.load` takes (a published ``.pth`` of an i2i or spandrel
architecture, a zoo name, a run or checkpoint folder): the architecture it holds becomes the run's
generator (registry name and kwargs from its metadata, in place of the config's ``generator`` /
``generator_kwargs``, which a recipe usually sets) and its weights the starting point. The run's checkpoints record that architecture like
any other, so they load with no flags. (SR's older ``init_from`` loads weights into the generator
the config names; ``init`` brings the architecture too.)
"""

from __future__ import annotations

from typing import Any, Mapping

from .errors import I2IError

__all__ = ["warm_start"]


def warm_start(source: str, *, generator: str, generator_kwargs: Mapping[str, Any], default_generator: str,
               method: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(generator name, kwargs, state_dict)`` of the model at ``source``, for ``method`` to build
    (through the contract, which checks channels, scale and inputs) and load strictly.

    ``generator`` / ``generator_kwargs``: the config's (a recipe's, often). The model's architecture
    replaces them; when they name something else, one line on stderr says they are not used, so a
    recipe's srresnet never silently meets a loaded RRDBNet. ``default_generator`` is the method's
    default (no note when the config left it). Raises I2IError for anything :func:`i2i.load`
    cannot open, and for an .onnx file (no weights to train).
    """
    import sys

    from .loader import load

    if str(source).lower().endswith(".onnx"):
        raise I2IError(f"init={source}: an .onnx file cannot seed training; give the .pth, zoo name or run it came from")
    g = load(source, device="cpu")
    name, kwargs = g.meta.name, dict(g.meta.kwargs)
    unused = []
    if generator not in (default_generator, name):
        unused.append(f"generator={generator}")
    clash = {k: v for k, v in generator_kwargs.items() if kwargs.get(k, v) != v or (generator != name and k not in kwargs)}
    if clash:
        unused.append("generator_kwargs " + ", ".join(f"{k}={v!r}" for k, v in clash.items()))
    what = f"{name} ({kwargs['arch']})" if name.startswith("spandrel") and "arch" in kwargs else name
    if unused:
        print(f"i2i: init={source} brings its own architecture, {what}: the config's {' and '.join(unused)} "
              f"are not used", file=sys.stderr)
    state = {k: v.detach().clone() for k, v in g.module.state_dict().items()}
    return name, kwargs, state
