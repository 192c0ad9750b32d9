"""The conformance suite: what every registered generator, discriminator and loss must do.

Plugin authors run it on their own entries (see docs/plugins.md)::

    import pytest
    from i2i.testing import check_generator, check_generator_onnx, generator_names

    @pytest.mark.parametrize("name", generator_names(plugin="example"))
    def test_generator(name):
        check_generator(name)

    @pytest.mark.parametrize("name", generator_names(plugin="example"))
    def test_generator_onnx(name, tmp_path):
        check_generator_onnx(name, tmp_path)

Every check builds a tiny instance from the spec's ``test_kwargs`` (seeded, so failures reproduce)
and raises :class:`ConformanceError`, an ``AssertionError`` that pytest reports as a failure, with a
message naming the entry and what is wrong. The checks take a spec or a registered name.

Tolerances: eval-mode generator outputs may leave ``value_range`` by ``RANGE_TOLERANCE`` times the
range's width; onnxruntime must match PyTorch within ``ONNX_ATOL`` (max absolute difference, in the
generator's value range) at a batch size and image size other than the ones the model was
exported with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import __version__
from .artifact import META_KEY, GeneratorMeta
from .registry import DiscriminatorSpec, GeneratorSpec, LossSpec, registry

__all__ = [
    "ConformanceError",
    "ONNX_ATOL",
    "RANGE_TOLERANCE",
    "ONNX_OPSET",
    "generator_names",
    "discriminator_names",
    "loss_names",
    "build",
    "generator_inputs",
    "generator_meta",
    "check_generator",
    "check_generator_onnx",
    "check_discriminator",
    "check_loss",
    "export_generator_onnx",
    "plugin_paths",
]

#: onnxruntime vs PyTorch: largest absolute difference allowed (outputs in the spec's value range).
ONNX_ATOL = 1e-4
#: eval-mode outputs may leave value_range by this fraction of the range's width (float rounding).
RANGE_TOLERANCE = 1e-3
#: the ONNX opset of exported generators (the default of `i2i export`).
ONNX_OPSET = 18
#: loss kinds called as loss(prediction, target_is_real, for_discriminator=...)
GAN_LOSS_KINDS = ("gan",)
#: loss kinds called as loss(output, target) on image-shaped tensors
PAIR_LOSS_KINDS = ("pixel", "perceptual")


class ConformanceError(AssertionError):
    """A registered entry breaks the contract every entry of its kind must keep."""


# --------------------------------------------------------------------------- names for parametrize


def _names(kind: str, pattern: str, plugin: str | None) -> list[str]:
    return [s.name for s in registry(kind).list(pattern) if plugin is None or s.plugin == plugin]


def generator_names(pattern: str = "*", plugin: str | None = None) -> list[str]:
    """Registered generator names matching a wildcard (and provided by ``plugin``, if given)."""
    return _names("generator", pattern, plugin)


def discriminator_names(pattern: str = "*", plugin: str | None = None) -> list[str]:
    """Registered discriminator names matching a wildcard (and provided by ``plugin``, if given)."""
    return _names("discriminator", pattern, plugin)


def loss_names(pattern: str = "*", plugin: str | None = None) -> list[str]:
    """Registered loss names matching a wildcard (and provided by ``plugin``, if given)."""
    return _names("loss", pattern, plugin)


# --------------------------------------------------------------------------- building blocks


def _spec(kind: str, spec: Any) -> Any:
    return registry(kind).get(spec) if isinstance(spec, str) else spec


def _fail(spec: Any, kind: str, message: str) -> ConformanceError:
    return ConformanceError(f"{kind} {spec.name!r} (plugin {spec.plugin!r}): {message}")


def build(spec: GeneratorSpec | DiscriminatorSpec | LossSpec, device: str | torch.device = "cpu") -> nn.Module:
    """The tiny test instance: ``spec.factory(**spec.test_kwargs)``, built under a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = spec.factory(**spec.test_kwargs)
    if not isinstance(module, nn.Module):
        raise ConformanceError(
            f"{spec.name!r} (plugin {spec.plugin!r}): factory returned {type(module).__name__}, not an nn.Module"
        )
    return module.to(device)


def _test_multiple(spec: GeneratorSpec) -> int:
    return spec.test_size_multiple or spec.size_multiple


def _check_generator_spec(spec: GeneratorSpec) -> None:
    multiple = _test_multiple(spec)
    if spec.test_size % multiple:
        raise _fail(spec, "generator", f"test_size {spec.test_size} is not a multiple of {multiple}; "
                    "set test_size (or test_size_multiple for the tiny instance) in register()")
    lo, hi = spec.value_range
    if not lo < hi:
        raise _fail(spec, "generator", f"value_range {spec.value_range} is empty")


def generator_inputs(
    spec: GeneratorSpec, batch: int = 2, height: int | None = None, width: int | None = None,
    device: str | torch.device = "cpu", seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """Positional inputs for ``spec``: an image uniform in value_range, then each extra input.

    Extra inputs (such as an inpainting mask) share the image's height and width and are filled
    with random 0/1 values, the shape of a binary mask.
    """
    height = height or spec.test_size
    width = width or height
    g = torch.Generator().manual_seed(seed)
    lo, hi = spec.value_range
    image = lo + (hi - lo) * torch.rand(batch, spec.in_channels, height, width, generator=g)
    extras = [(torch.rand(batch, i.channels, height, width, generator=g) < 0.5).float() for i in spec.extra_inputs]
    return tuple(t.to(device) for t in (image, *extras))


def generator_meta(spec: GeneratorSpec) -> GeneratorMeta:
    """The self-description an export of the tiny test instance carries."""
    from .loader import build_meta

    meta = build_meta(spec.name, dict(spec.test_kwargs), info={"source": "i2i.testing"}, module=build(spec), spec=spec)
    meta.size_multiple = _test_multiple(spec)  # the tiny instance may need a smaller multiple
    return meta


def _as_tensor(spec: Any, kind: str, out: Any) -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        raise _fail(spec, kind, f"forward returned {type(out).__name__}, expected one tensor")
    return out


def _check_finite(spec: Any, kind: str, t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise _fail(spec, kind, f"{what} has NaN or infinite values")


def _check_gradients(spec: Any, kind: str, module: nn.Module, out: torch.Tensor) -> None:
    """Backpropagate a random projection of ``out`` (a plain mean can cancel through a norm layer)."""
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    if not params:
        raise _fail(spec, kind, "has no trainable parameters")
    if not out.requires_grad:
        raise _fail(spec, kind, "output does not depend on any parameter (no grad_fn)")
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(out.shape, generator=g).to(out.device)
    module.zero_grad(set_to_none=True)
    (out.float() * weights).sum().backward()
    missing = [n for n, p in params if p.grad is None]
    if missing:
        raise _fail(spec, kind, f"{len(missing)} parameter(s) get no gradient (unused in forward?): "
                    f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]  # type: ignore[arg-type]
    if bad:
        raise _fail(spec, kind, f"non-finite gradients in {', '.join(bad[:5])}")
    if not any(p.grad.abs().sum() > 0 for _, p in params):  # type: ignore[union-attr]
        raise _fail(spec, kind, "every gradient is zero")


# --------------------------------------------------------------------------- generators


def check_generator(spec: GeneratorSpec | str, device: str | torch.device = "cpu") -> None:
    """Shape, range, finiteness, gradients to every parameter, deterministic eval output.

    Train mode, batch 2 at ``test_size``: output is (N, out_channels, H*scale, W*scale), finite,
    and every trainable parameter gets a gradient (at least one non-zero). Eval mode: the same
    shape, finite, within ``value_range`` (± RANGE_TOLERANCE of its width), and two calls agree.
    """
    spec = _spec("generator", spec)
    _check_generator_spec(spec)
    size = spec.test_size
    model = build(spec, device)
    inputs = generator_inputs(spec, batch=2, height=size, device=device)
    expected = (2, spec.out_channels, size * spec.scale, size * spec.scale)

    model.train()
    out = _as_tensor(spec, "generator", model(*inputs))
    if tuple(out.shape) != expected:
        raise _fail(spec, "generator", f"train-mode output shape {tuple(out.shape)}, expected {expected} "
                    f"(N, out_channels, H*scale, W*scale) for input {tuple(inputs[0].shape)}")
    _check_finite(spec, "generator", out, "train-mode output")
    _check_gradients(spec, "generator", model, out)

    model.eval()
    with torch.no_grad():
        first = _as_tensor(spec, "generator", model(*inputs))
        second = model(*inputs)
    if tuple(first.shape) != expected:
        raise _fail(spec, "generator", f"eval-mode output shape {tuple(first.shape)}, expected {expected}")
    _check_finite(spec, "generator", first, "eval-mode output")
    lo, hi = spec.value_range
    tol = RANGE_TOLERANCE * (hi - lo)
    if first.min() < lo - tol or first.max() > hi + tol:
        raise _fail(spec, "generator", f"eval-mode output spans [{first.min():.4g}, {first.max():.4g}], outside "
                    f"value_range {spec.value_range}; end with tanh/sigmoid, or clamp when not self.training")
    exact = torch.device(device).type == "cpu"
    if not (torch.equal(first, second) if exact else torch.allclose(first, second, atol=1e-5)):
        diff = (first - second).abs().max().item()
        raise _fail(spec, "generator", f"eval mode is not deterministic (two calls differ by {diff:.3g}); "
                    "randomness such as dropout must be off in eval mode")


def export_generator_onnx(model: nn.Module, meta: GeneratorMeta, path: str | Path, exporter: str = "auto") -> Path:
    """Export a generator exactly as ``i2i export`` does (:func:`i2i_export.exporter.export_onnx`).

    ``exporter`` is the torch.onnx exporter to use: "auto" (TorchScript, dynamo if tracing
    fails), "torchscript" or "dynamo".
    """
    from i2i_export.exporter import export_onnx

    return export_onnx(model, meta, path, opset=ONNX_OPSET, exporter=exporter)


#: an exporter for check_generator_onnx: ``exporter(model, meta, path) -> path`` following the
#: ONNX convention (inputs "image" + extra inputs, output "output", dynamic batch/height/width,
#: ``metadata_props["i2i"]``)
Exporter = Callable[[nn.Module, GeneratorMeta, Path], Path]


def check_generator_onnx(
    spec: GeneratorSpec | str, tmp_path: str | Path, exporter: Exporter | str = "auto",
) -> Path:
    """Export the tiny instance (dynamic batch/height/width) and compare onnxruntime with PyTorch.

    ``exporter`` is a torch.onnx exporter name for :func:`export_generator_onnx` ("auto",
    "torchscript", "dynamo") or a callable ``exporter(model, meta, path)``. The exporter picks its
    own example input; the file is then run at batch 1 with test_size x (test_size + m) and at
    batch 3 with (test_size + m) x test_size (m = the size multiple): the graph's input
    names must be "image" + extra inputs, its output "output", its batch/height/width symbolic,
    its metadata the generator's, and every output within ONNX_ATOL of PyTorch's in eval mode.
    Returns the path of the exported model.
    """
    import onnxruntime as ort

    spec = _spec("generator", spec)
    _check_generator_spec(spec)
    export = (lambda m, meta, p: export_generator_onnx(m, meta, p, exporter)) if isinstance(exporter, str) else exporter
    model = build(spec, "cpu").eval()
    meta = generator_meta(spec)
    small, large = spec.test_size, spec.test_size + _test_multiple(spec)
    path = Path(tmp_path) / f"{spec.name}.onnx"
    try:
        export(model, meta, path)
    except ConformanceError:
        raise
    except Exception as exc:  # the exporter's own message is long; keep its first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _fail(spec, "generator", f"ONNX export failed: {type(exc).__name__}: {first}") from exc

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a correctness check on a tiny model: no thread pool to spin
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    want = ["image", *(i.name for i in spec.extra_inputs)]
    if in_names != want:
        raise _fail(spec, "generator", f"ONNX inputs {in_names}, expected {want}")
    if [o.name for o in sess.get_outputs()] != ["output"]:
        raise _fail(spec, "generator", f"ONNX outputs {[o.name for o in sess.get_outputs()]}, expected ['output']")
    for i in sess.get_inputs():
        fixed = [axis for axis in (0, 2, 3) if isinstance(i.shape[axis], int)]
        if fixed:
            raise _fail(spec, "generator", f"ONNX input {i.name!r} has fixed axes {fixed} (shape {i.shape}); "
                        "batch, height and width must be dynamic")
    meta_json = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if meta_json is None or json.loads(meta_json).get("name") != spec.name:
        raise _fail(spec, "generator", f"ONNX metadata_props[{META_KEY!r}] is missing or names another generator")

    for seed, (batch, height, width) in enumerate([(1, small, large), (3, large, small)], start=3):
        inputs = generator_inputs(spec, batch=batch, height=height, width=width, seed=seed)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        try:
            got = sess.run(["output"], {n: t.numpy() for n, t in zip(want, inputs)})[0]
        except Exception as exc:  # e.g. a size the tracer baked in as a constant
            raise _fail(spec, "generator", f"onnxruntime fails at input {tuple(inputs[0].shape)} "
                        f"(exported sizes baked in?): {' '.join(str(exc).split())[:300]}") from exc
        if got.shape != expected.shape:
            raise _fail(spec, "generator", f"onnxruntime output shape {got.shape} at input "
                        f"{tuple(inputs[0].shape)}, PyTorch gives {expected.shape}")
        diff = float(abs(got - expected).max())
        if not diff <= ONNX_ATOL:
            raise _fail(spec, "generator", f"onnxruntime differs from PyTorch by {diff:.3g} (> {ONNX_ATOL}) "
                        f"at input {tuple(inputs[0].shape)}")
    return path


# --------------------------------------------------------------------------- discriminators


def check_discriminator(spec: DiscriminatorSpec | str, device: str | torch.device = "cpu") -> None:
    """Batch 2 of ``test_in_channels`` x test_size² images in [-1, 1] give finite 4-D logits, and
    every trainable parameter gets a gradient (train mode); eval mode output is finite too."""
    spec = _spec("discriminator", spec)
    model = build(spec, device)
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2, spec.test_in_channels, spec.test_size, spec.test_size, generator=g) * 2 - 1).to(device)
    model.train()
    out = _as_tensor(spec, "discriminator", model(x))
    if out.dim() != 4 or out.shape[0] != 2:
        raise _fail(spec, "discriminator", f"output shape {tuple(out.shape)} for input {tuple(x.shape)}; "
                    "expected 4-D logits (N, C, h, w)")
    _check_finite(spec, "discriminator", out, "train-mode output")
    _check_gradients(spec, "discriminator", model, out)
    model.eval()
    with torch.no_grad():
        _check_finite(spec, "discriminator", _as_tensor(spec, "discriminator", model(x)), "eval-mode output")


# --------------------------------------------------------------------------- losses


def _check_scalar(spec: LossSpec, value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise _fail(spec, "loss", f"{what} returned {shape}, expected a scalar tensor")
    _check_finite(spec, "loss", value, what)
    return value


def _check_differentiable(spec: LossSpec, value: torch.Tensor, wrt: torch.Tensor, what: str) -> None:
    wrt.grad = None
    if not value.requires_grad:
        raise _fail(spec, "loss", f"{what} is not differentiable (no grad_fn)")
    value.backward()
    if wrt.grad is None or not torch.isfinite(wrt.grad).all() or not wrt.grad.abs().sum() > 0:
        raise _fail(spec, "loss", f"{what} gives no finite, non-zero gradient to its input")


def check_loss(spec: LossSpec | str, device: str | torch.device = "cpu") -> None:
    """Finite, differentiable scalars.

    ``gan`` kind: ``loss(logits, target_is_real, for_discriminator=...)`` for all four
    combinations, and the discriminator's real and fake targets give different values.
    ``pixel``/``perceptual`` kinds: ``loss(output, target)`` on image batches. Other kinds are
    skipped (``pytest.skip``) because the suite does not know how to call them.
    """
    spec = _spec("loss", spec)
    g = torch.Generator().manual_seed(0)
    if spec.kind in GAN_LOSS_KINDS:
        loss = build(spec, device)
        logits = torch.randn(2, 1, 8, 8, generator=g).to(device).requires_grad_()
        values = {}
        for real in (True, False):
            for for_d in (True, False):
                what = f"loss(logits, {real}, for_discriminator={for_d})"
                value = _check_scalar(spec, loss(logits, real, for_discriminator=for_d), what)
                _check_differentiable(spec, value, logits, what)
                values[real, for_d] = value.item()
        if values[True, True] == values[False, True]:
            raise _fail(spec, "loss", "the discriminator's loss is the same for real and fake targets")
    elif spec.kind in PAIR_LOSS_KINDS:
        loss = build(spec, device)
        output = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).to(device).requires_grad_()
        target = (torch.rand(2, 3, 32, 32, generator=g) * 2 - 1).to(device)
        value = _check_scalar(spec, loss(output, target), "loss(output, target)")
        _check_differentiable(spec, value, output, "loss(output, target)")
    else:
        import pytest

        known = ", ".join(GAN_LOSS_KINDS + PAIR_LOSS_KINDS)
        pytest.skip(f"loss {spec.name!r} has kind {spec.kind!r}, which i2i.testing cannot call (it knows {known})")


# --------------------------------------------------------------------------- plugin packages


def plugin_paths(project_dir: str | Path, site_dir: str | Path) -> list[Path]:
    """Make a plugin package's entry points visible without installing it (for tests).

    Reads ``project_dir/pyproject.toml`` and writes ``<name>-<version>.dist-info`` (METADATA and
    entry_points.txt) into ``site_dir``. Returns ``[site_dir, source root]``: put them on
    ``sys.path`` (in-process; then build a new :class:`i2i.plugins.PluginHost`) or on
    ``PYTHONPATH`` (subprocesses) and ``importlib.metadata`` finds the plugin as if pip had
    installed it. The source root is ``[tool.setuptools.packages.find] where``, else the project.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project_dir, site_dir = Path(project_dir).resolve(), Path(site_dir)
    data = tomllib.loads((project_dir / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    name, version = project["name"], project["version"]
    dist = site_dir / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = []
    for group, entries in project.get("entry-points", {}).items():
        lines.append(f"[{group}]")
        lines.extend(f"{key} = {value}" for key, value in entries.items())
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    packages = data.get("tool", {}).get("setuptools", {}).get("packages", {})
    # `packages = ["my_plugin"]` (a list: the packages sit in the project) or `[...packages.find] where`
    where = packages.get("find", {}).get("where", ["."]) if isinstance(packages, dict) else ["."]
    return [site_dir.resolve(), (project_dir / where[0]).resolve()]


# --------------------------------------------------------------------------- networks in methods


def method_names(pattern: str = "*", plugin: str | None = None) -> list[str]:
    """Registered method names matching a wildcard (and provided by ``plugin``, if given)."""
    return _names("method", pattern, plugin)


def method_network_pairs(kind: str, plugin: str | None = None) -> list[tuple[str, str]]:
    """``(method, name)`` for every registered method and every registered ``kind`` ("generator" or
    "discriminator") entry (of ``plugin``, if given): what :func:`check_method_trains` is run on."""
    names = _names(kind, "*", plugin)
    return [(m, n) for m in method_names() for n in names]


def check_method_trains(method: str, generator: GeneratorSpec | str | None = None,
                        discriminator: DiscriminatorSpec | str | None = None) -> None:
    """The method builds this generator (or discriminator) through the host and trains one step.

    The method's :meth:`~i2i.method.Method.conformance_config` gives the tiny config (the network's
    ``test_kwargs``, small images); the networks are built as ``i2i train`` builds them (channels,
    scale and extra inputs asked through :mod:`i2i.contract`), then one engine-order step runs on
    the method's :meth:`~i2i.method.Method.example_batch`: forward, discriminator loss, backward and
    step, generator loss, backward and step. Every loss must be a finite scalar, every trainable
    parameter of every network must get a finite gradient, and the main generator's
    self-description (channels, extra inputs, scale) must match what the network does.

    A pair that does not fit (the generator cannot give what the method needs: a mask input,
    channels, a scale; the one-line :class:`~i2i.contract.ContractError` a user gets) is skipped
    with that line, as is a method that takes no part (``conformance_config`` returns None).
    """
    import pytest

    from .config import build as build_config
    from .contract import ContractError
    from .engine.trainer import build_method

    cls = registry("method").get(method).factory
    gspec = _spec("generator", generator) if generator is not None else None
    dspec = _spec("discriminator", discriminator) if discriminator is not None else None
    overrides = cls.conformance_config(gspec, dspec)
    if overrides is None:
        pytest.skip(f"method {method!r} takes no part in the conformance suite with these networks")
    cfg = build_config(cls.Config, overrides={"device": "cpu", "precision": "fp32", "num_workers": 0, **overrides})
    what = f"method {method!r} with " + (f"generator {gspec.name!r} (plugin {gspec.plugin!r})" if gspec else
                                         f"discriminator {dspec.name!r} (plugin {dspec.plugin!r})" if dspec else "its defaults")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            m = build_method(method, cfg)
        except ContractError as exc:
            pytest.skip(f"does not fit: {exc}")
        for n, net in m.nets.items():
            net.train()
        batch = m.example_batch(2)
        out = m.forward(batch)
        if m.discriminator_nets:
            d_nets = [m.nets[n] for n in m.discriminator_nets]
            for net in d_nets:
                net.requires_grad_(True)
            _train_step(what, "discriminator", m.discriminator_loss(batch, out), d_nets, m.discriminator_nets)
            for net in d_nets:
                net.requires_grad_(False)
        g_nets = [m.nets[n] for n in m.generator_nets]
        _train_step(what, "generator", m.generator_loss(batch, out), g_nets, m.generator_nets)
        _check_self_description(what, m)


def _train_step(what: str, side: str, losses: dict[str, torch.Tensor], nets: list[nn.Module], names: list[str]) -> None:
    if not losses:
        raise ConformanceError(f"{what}: the {side} step has no loss terms")
    for key, value in losses.items():
        if not isinstance(value, torch.Tensor) or value.dim() != 0 or not torch.isfinite(value):
            raise ConformanceError(f"{what}: {side} loss {key!r} is {value!r}, expected a finite scalar tensor")
    params = [(f"{n}.{p_name}", p) for n, net in zip(names, nets) for p_name, p in net.named_parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([p for _, p in params], lr=1e-4)
    optimizer.zero_grad(set_to_none=True)
    total = sum(losses.values())
    if not total.requires_grad:  # type: ignore[union-attr]
        raise ConformanceError(f"{what}: the {side} losses do not depend on any parameter")
    total.backward()  # type: ignore[union-attr]
    missing = [n for n, p in params if p.grad is None]
    if missing:
        raise ConformanceError(f"{what}: {len(missing)} {side} parameter(s) get no gradient in the method: "
                               f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    bad = [n for n, p in params if not torch.isfinite(p.grad).all()]  # type: ignore[arg-type]
    if bad:
        raise ConformanceError(f"{what}: non-finite {side} gradients in {', '.join(bad[:5])}")
    optimizer.step()


def _check_self_description(what: str, m: Any) -> None:
    """The main generator's meta (what checkpoints carry) says how to call it, and it is right."""
    net = m.main_generator
    name = m.generator_specs[net][0]
    spec = registry("generator").get(name)
    meta = m.generator_meta(net)
    size = max(spec.test_size, spec.min_size)
    size += (-size) % (_test_multiple(spec) or 1)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, meta.in_channels, size, size, generator=g)
    extras = [(torch.rand(1, int(i["channels"]), size, size, generator=g) < 0.5).float() for i in meta.extra_inputs]
    module = m.nets[net].eval()
    try:
        with torch.no_grad():
            y = module(x, *extras)
    except Exception as exc:  # noqa: BLE001 - the description does not fit the network
        raise ConformanceError(f"{what}: the generator does not take the input its description says "
                               f"({meta.in_channels} channels + {[i['name'] for i in meta.extra_inputs]}): "
                               f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    want = (1, meta.out_channels, size * meta.scale, size * meta.scale)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != want:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ConformanceError(f"{what}: the generator's description promises output {want}, it gives {got}")


__all__ += ["method_names", "method_network_pairs", "check_method_trains"]
