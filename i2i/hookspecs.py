"""The plugin author's contract: every hook i2i calls, typed, one docstring each.

Registration hooks receive a ``register`` callback rather than returning objects, so that the
host owns naming: it records which plugin provided each name, switches a name two plugins claim
off (a warning and, where it is used, an error naming both, with their qualified ``plugin:name``),
and suggests close matches for unknown names (see :mod:`i2i.registry`).
"""

from __future__ import annotations

from typing import Callable

import click
import pluggy

hookspec = pluggy.HookspecMarker("i2i")

#: ``register(name, factory, **cfg)``; the accepted ``cfg`` fields are those of the kind's spec
#: dataclass in :mod:`i2i.registry` (for example :class:`i2i.registry.GeneratorSpec`).
Register = Callable[..., None]


@hookspec
def register_generators(register: Register) -> None:
    """Register generator networks: ``register("unet_256", UnetGenerator, size_multiple=256, ...)``.

    ``factory(**kwargs)`` returns an ``nn.Module`` mapping images in the spec's ``value_range``
    (default [-1, 1]) to images in the same range; any ``extra_inputs`` the spec declares (an
    inpainting mask: ``extra_inputs=[InputSpec("mask", 1)]``) follow the image: ``forward(image, mask)``.
    ``test_kwargs`` build the tiny instance that :mod:`i2i.testing` checks.
    """


@hookspec
def register_discriminators(register: Register) -> None:
    """Register discriminator networks: ``register("patch_70", NLayerDiscriminator, ...)``.

    ``factory(**kwargs)`` returns an ``nn.Module`` mapping images to raw logits (no sigmoid).
    """


@hookspec
def register_losses(register: Register) -> None:
    """Register losses: ``register("lsgan", LSGANLoss, kind="gan")``.

    ``factory(**kwargs)`` returns an ``nn.Module`` that returns a scalar. ``kind="gan"`` losses
    are called as ``loss(logits, target_is_real: bool, for_discriminator: bool = True)``;
    ``kind="pixel"`` and ``"perceptual"`` losses as ``loss(output, target)``.
    """


@hookspec
def register_methods(register: Register) -> None:
    """Register training methods: ``register("pix2pix", Pix2Pix)``.

    The class subclasses :class:`i2i.method.Method`; the engine in :mod:`i2i.engine` trains it.
    """


@hookspec
def register_datasets(register: Register) -> None:
    """Register named datasets for ``--data NAME``: ``register("facades", url=..., layout=...)``."""


@hookspec
def register_models(register: Register) -> None:
    """Register pretrained translators for ``--model NAME``: ``register("cyclegan_h2z", url=..., ...)``."""


@hookspec
def register_masks(register: Register) -> None:
    """Register hole-mask generators for inpainting: ``register("free_form", FreeForm, description=...)``.

    ``factory(**kwargs)`` returns a callable ``(rng: numpy.random.Generator, (h, w)) -> mask``
    (float32 HxW, 1 = hole) that draws only from ``rng``, so a seed fixes the masks. Training recipes and
    ``i2i eval inpaint`` name them (``--set mask=free_form:0.7,rect:0.3``).
    """


@hookspec
def register_metrics(register: Register) -> None:
    """Register image-quality metrics: ``register("fid", FID, kind="distribution", higher_is_better=False)``.

    ``factory(device=torch.device, **kwargs)`` returns an object with ``update(output, target=None,
    mask=None)``, ``compute() -> float`` and ``reset()`` (:class:`i2i.metrics.Metric`): images are
    float32 NxCxHxW RGB in [0, 1], masks Nx1xHxW with 1 = hole. ``kind`` is "paired" (needs the
    target), "distribution" (needs a reference set) or "masked" (target and mask); ``higher_is_better``
    gives the direction. :func:`i2i.metrics.create` is the one way to build one.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``i2i`` command group (they appear in ``i2i --help``)."""




@hookspec(firstresult=True)
def identify_weights(state: dict) -> tuple[str, dict, dict] | None:
    """Recognise a published weights file (``i2i.load("x.pth")``) from its keys and shapes.

    ``state`` is what the file holds (a state_dict, or a wrapper such as ``{"params_ema": sd}``).
    Return ``(generator name, generator kwargs, state_dict in that generator's layout)`` when the
    layout is yours, else ``None`` so the next plugin is asked. The first answer wins.
    """


@hookspec
def accelerate(module: "torch.nn.Module", device: "torch.device", precision: str) -> int:
    """Make a built network faster where it runs, in place; return how many layers you changed.

    Opt-in: called only when the user asks (``--set cpu_kernels=true``, ``i2i translate --cpu-kernels``,
    ``i2i.load(..., cpu_kernels=True)``), today only for fp32 on the CPU (``device`` and ``precision``
    say where: return 0 for anything you do not handle). Every accelerator is called, in plugin
    order, after the module is on ``device`` and before optimizers, EMA or wrappers see it. Generators
    are handed over, and discriminators unless a gradient penalty (``gp_weight``, ``r1_gamma``,
    ``r2_gamma``) takes second derivatives through them: layers whose backward is not itself
    differentiable are safe.

    A changed layer keeps its parameters, buffers and state_dict keys (checkpoints, EMA and export read
    them), computes the same function within float tolerance with correct first derivatives, and takes
    the standard path under autocast, tracing and ONNX export. Take only layers of the exact torch
    classes (``type(m) is nn.Conv2d``), so that two accelerators never claim one layer.
    """


@hookspec(firstresult=True)
def export_module(module: "torch.nn.Module", meta: "i2i.artifact.GeneratorMeta") -> "torch.nn.Module | None":
    """The module to trace for ONNX export in place of ``module`` (``i2i export``, the conformance suite).

    Return a copy whose layers the ONNX exporter or onnxruntime cannot take (complex FFTs, say) are
    replaced by equivalent standard operators, computing the same function within float tolerance
    (the export is then checked against ``module`` itself); or ``None`` to leave it to the next plugin,
    and unchanged when none answers. Never change ``module``. Raise :class:`i2i.errors.I2IError` with
    one line saying why when the network cannot be exported at all. The first answer wins.
    """
