"""Export a generator to a self-describing ONNX file and check it against PyTorch.

The file follows the ONNX convention of ``shared/DESIGN.md``: inputs ``image`` then the extra
inputs (``mask``), output ``output``, dynamic ``batch``/``height``/``width`` axes, and
``metadata_props["i2i"] = GeneratorMeta.to_json()`` so the runtime needs no architecture flags.

Two exporters: the TorchScript one (``torch.onnx.export(..., dynamo=False)``) and the dynamo one.
``exporter="auto"`` tries TorchScript first because, for these convolutional generators, it is
10-20x faster here (a U-Net with dynamic height/width: ~1.5 s against ~35 s, the dynamo exporter
spends its time solving symbolic-shape guards) and it honours every opset; it falls back to dynamo
when TorchScript is gone from the installed torch or cannot trace the module.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from i2i.artifact import META_KEY, GeneratorMeta
from i2i.errors import I2IError

#: a model past this many bytes of weights is written with one external data file (protobuf limit 2 GiB)
EXTERNAL_DATA_BYTES = 1_900_000_000
EXPORTERS = ("auto", "torchscript", "dynamo")
#: ``optimize=`` targets: graph rewrites for one runtime, made once at export (``i2i_export.cpu_graph``)
OPTIMIZE_TARGETS = ("cpu",)


class ExportError(I2IError):
    """The export itself failed (tracing, checker)."""


class VerificationError(I2IError):
    """onnxruntime and PyTorch disagree past the tolerance."""


class _ExportWrapper(nn.Module):
    """Fixes the I/O contract: float32 ``image`` (+ extras) in, float32 ``output`` out.

    With ``half`` the wrapped network runs in float16 while the file's inputs and outputs stay
    float32 (casts at the boundary), so callers never handle half-precision arrays.
    """

    def __init__(self, module: nn.Module, half: bool) -> None:
        super().__init__()
        self.net = module
        self.half = half

    def forward(self, image: torch.Tensor, *extras: torch.Tensor) -> torch.Tensor:
        if self.half:
            out = self.net(image.half(), *(e.half() for e in extras))
            return out.float()
        return self.net(image, *extras)


def input_names(meta: GeneratorMeta) -> list[str]:
    return ["image"] + [str(e["name"]) for e in meta.extra_inputs]


def default_tolerance(meta: GeneratorMeta, fp16: bool = False) -> float:
    """Max |onnxruntime - PyTorch| accepted, relative to the width of the value range."""
    width = float(meta.value_range[1]) - float(meta.value_range[0])
    return (5e-2 if fp16 else 1e-3) * width


def sample_side(meta: GeneratorMeta, minimum: int = 32) -> int:
    """Smallest multiple of the size multiple that is at least ``minimum``."""
    m = max(int(meta.size_multiple), 1)
    return m * math.ceil(minimum / m)


def sample_inputs(
    meta: GeneratorMeta, batch: int, hw: tuple[int, int], seed: int = 0, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """Random inputs in the generator's value range (image) and {0, 1} (extra inputs such as a mask)."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = float(meta.value_range[0]), float(meta.value_range[1])
    image = torch.rand(batch, meta.in_channels, *hw, generator=g) * (hi - lo) + lo
    extras = [(torch.rand(batch, int(e.get("channels", 1)), *hw, generator=g) > 0.5).float() for e in meta.extra_inputs]
    return [t.to(device) for t in [image, *extras]]


def _param_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def publish(staged: Path, path: Path) -> None:
    """Move an exported file (and its ``.data`` weights, if any) from ``staged`` to ``path``, which is
    replaced only now; an earlier large export's ``.data`` goes with it. Both get the mode a new file
    of this process would (onnx writes the weights 0600: unreadable to a service's other user)."""
    umask = os.umask(0)
    os.umask(umask)
    data = staged.parent / (path.name + ".data")
    if data.exists():
        os.chmod(data, 0o666 & ~umask)
        os.replace(data, path.parent / data.name)
    else:
        (path.parent / data.name).unlink(missing_ok=True)
    os.chmod(staged, 0o666 & ~umask)
    os.replace(staged, path)


def _tensor_bytes(model: Any) -> int:
    """Bytes of an in-memory ONNX model's initializers (what decides the 2 GB protobuf limit)."""
    from onnx import helper

    return sum(len(t.raw_data) if t.HasField("raw_data")
               else int(np.prod(t.dims, dtype=np.int64)) * np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
               for t in model.graph.initializer)


def _device_of(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")


def _export_torchscript(wrapper: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: list[str], opset: int, dyn_axes: dict[int, str]) -> None:
    axes = {n: dict(dyn_axes) for n in names + ["output"]} if dyn_axes else None
    with warnings.catch_warnings():
        # the TorchScript exporter is deprecated in favour of dynamo; we choose it knowingly (see module doc)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), dynamo=False, input_names=names, output_names=["output"],
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
        )


def _export_dynamo(wrapper: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: list[str], opset: int, dyn_axes: dict[int, str], large: bool) -> None:
    import contextlib
    import io

    shapes = tuple(dict(dyn_axes) for _ in args) if dyn_axes else None
    # the dynamo exporter prints progress lines; keep the CLI output to our own summary
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, args, str(path), dynamo=True, input_names=names, output_names=["output"],
            dynamic_shapes=({"image": shapes[0], "extras": shapes[1:]} if shapes and len(args) > 1 else
                            ({"image": shapes[0]} if shapes else None)),
            opset_version=opset, external_data=large,
        )


def export_onnx(
    module: nn.Module,
    meta: GeneratorMeta,
    path: str | Path,
    *,
    opset: int = 18,
    dynamic: bool = True,
    static_hw: tuple[int, int] | None = None,
    fp16: bool = False,
    exporter: str = "auto",
    check: bool = True,
    optimize: str | None = None,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` with ``meta`` embedded; returns the path.

    ``dynamic``: batch, height and width are dynamic axes; ``static_hw=(H, W)`` fixes height and
    width (batch stays dynamic); ``dynamic=False`` fixes everything to batch 1 at ``static_hw`` (or
    the smallest valid side >= 32). ``fp16`` stores and runs the network in float16 with float32
    inputs and outputs. The file is a single protobuf unless the weights pass ~1.9 GB, then the
    weights go to one ``<name>.data`` file beside it. ``check`` runs ``onnx.checker``.
    ``optimize="cpu"`` rewrites the graph for onnxruntime's CPU provider (:mod:`i2i_export.cpu_graph`;
    it pays off only there: keep the plain file for GPUs); the metadata says so (``info["onnx"]["optimize"]``).
    """
    import onnx

    if exporter not in EXPORTERS:
        raise I2IError(f"unknown exporter {exporter!r}; choose one of {', '.join(EXPORTERS)}")
    if optimize is not None and optimize not in OPTIMIZE_TARGETS:
        raise I2IError(f"unknown optimize target {optimize!r}; choose one of {', '.join(OPTIMIZE_TARGETS)}")
    if optimize == "cpu":  # before minutes of exporting
        from .cpu_graph import require_opset

        require_opset(opset)
        if fp16:
            raise I2IError("--optimize cpu rewrites float32 graphs for CPUs and --fp16 makes a float16 one for GPUs: "
                           "choose one")
    path = Path(path)
    if path.suffix != ".onnx":
        raise I2IError(f"export path {path} should end in .onnx")
    if path.is_dir():
        raise I2IError(f"export path {path} is a folder; name a file in it (-o {path / 'model.onnx'})")
    if static_hw is not None:
        h, w = int(static_hw[0]), int(static_hw[1])
        m = max(int(meta.size_multiple), 1)
        if h <= 0 or w <= 0 or h % m or w % m:
            raise I2IError(f"static size {h}x{w} must be positive multiples of {m} (the network's size multiple)")
    device = _device_of(module)
    net = _export_module(module, meta)  # plugins swap layers ONNX cannot take (LaMa's FFTs)
    net = (copy.deepcopy(net) if net is module else net).half() if fp16 else net
    was_training = module.training
    net.eval()
    large = _param_bytes(net) > EXTERNAL_DATA_BYTES
    names = input_names(meta)
    side = sample_side(meta)
    hw = (int(static_hw[0]), int(static_hw[1])) if static_hw else (side, side)
    dyn_axes: dict[int, str] = {}
    if dynamic:
        dyn_axes[0] = "batch"
        if static_hw is None:
            dyn_axes.update({2: "height", 3: "width"})
    wrapper = _ExportWrapper(net, fp16).eval()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".i2i-export-", dir=path.parent))
    except OSError as exc:
        raise I2IError(f"cannot write {path} ({exc.strerror or type(exc).__name__}: {exc.filename or path.parent}); "
                       "choose another output path (-o)") from None
    used = exporter
    try:
        raw = tmp / "model.onnx"
        with torch.no_grad():
            if exporter in ("auto", "torchscript"):
                try:
                    # batch 1 is fine for tracing; dynamo specialises size-1 dims, so it gets batch 2
                    _export_torchscript(wrapper, tuple(sample_inputs(meta, 1, hw, device=device)), raw, names, opset, dyn_axes)
                    used = "torchscript"
                except Exception as exc:  # noqa: BLE001 - any tracing failure: try the other exporter
                    if exporter == "torchscript":
                        raise ExportError(f"TorchScript ONNX export failed: {type(exc).__name__}: {exc}") from exc
                    for f in tmp.iterdir():
                        f.unlink()
                    used = "dynamo"
            if used in ("auto", "dynamo"):
                used = "dynamo"
                sample_hw = hw if static_hw else (2 * side, 2 * side)  # avoid 1x1 bottlenecks being specialised
                try:
                    _export_dynamo(wrapper, tuple(sample_inputs(meta, 2 if dynamic else 1, sample_hw, device=device)), raw, names, opset, dyn_axes, large)
                except Exception as exc:  # noqa: BLE001
                    raise ExportError(f"ONNX export of {meta.name} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
        model = onnx.load(str(raw), load_external_data=True)
        optimized = None
        if optimize == "cpu":
            from .cpu_graph import optimize_for_cpu

            model, rewritten = optimize_for_cpu(model)
            optimized = {"target": "cpu", "convs_rewritten": rewritten}
        info = dict(meta.info)
        info["onnx"] = {"opset": opset, "fp16": fp16, "dynamic": dynamic, "static_hw": list(hw) if (static_hw or not dynamic) else None,
                        "exporter": used, "optimize": optimized}
        full = replace(meta, info=info, i2i_version=meta.i2i_version or _version())
        del model.metadata_props[:]
        onnx.helper.set_model_props(model, {META_KEY: full.to_json()})
        model.producer_name = "i2i"
        model.producer_version = full.i2i_version
        model.doc_string = f"i2i generator {meta.name} ({meta.method or 'imported'}); metadata_props['{META_KEY}'] describes it"
        # Written beside the target, then moved into place: a failed export leaves an earlier file as it
        # was. The size is taken again here: --optimize cpu stores ~4x the weights of 3x3 convolutions.
        data_name = path.name + ".data"
        large = large or _tensor_bytes(model) > EXTERNAL_DATA_BYTES
        if large:
            onnx.save_model(model, str(tmp / path.name), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data_name)
        else:
            onnx.save_model(model, str(tmp / path.name))
        publish(tmp / path.name, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        module.train(was_training)
    if check:
        try:
            onnx.checker.check_model(str(path), full_check=True)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"onnx.checker rejected {path}: {str(exc).splitlines()[0]}") from exc
    return path


def _export_module(module: nn.Module, meta: GeneratorMeta) -> nn.Module:
    """What the plugins' ``export_module`` hook gives to trace in place of ``module`` (itself when none answers)."""
    from i2i.plugins import manager

    swapped = manager().pm.hook.export_module(module=module, meta=meta)
    return module if swapped is None else swapped


def _version() -> str:
    from i2i import __version__

    return __version__


def check_shape(file_meta: GeneratorMeta) -> tuple[int, tuple[int, int]]:
    """(batch, (H, W)) verify_onnx uses by default for a file with this metadata.

    Batch 2 and a non-square size unlike the export's sample (``sample + m`` by ``sample`` for the
    size multiple ``m``) catch axes that were silently fixed; a static file is checked at its size.
    """
    onnx_info = (file_meta.info or {}).get("onnx", {})
    batch = 2 if onnx_info.get("dynamic", True) else 1
    if onnx_info.get("static_hw"):
        h, w = onnx_info["static_hw"]
        return batch, (int(h), int(w))
    m = max(int(file_meta.size_multiple), 1)
    base = sample_side(file_meta)
    return batch, (base + m * math.ceil(32 / m), base)


def verify_onnx(
    path: str | Path,
    module: nn.Module,
    meta: GeneratorMeta | None = None,
    *,
    batch: int = 2,
    hw: tuple[int, int] | None = None,
    tolerance: float | None = None,
    seed: int = 1,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> float:
    """Run the .onnx in onnxruntime and ``module`` in PyTorch on the same random inputs; max |diff|.

    By default it checks at the batch and size of :func:`check_shape`. With ``tolerance``, a larger
    difference raises :class:`VerificationError`. The module runs in eval mode on its own device.
    """
    import onnxruntime as ort

    path = Path(path)
    from .runtime import meta_from_session

    sess = ort.InferenceSession(str(path), providers=list(providers))
    file_meta = meta_from_session(sess, path)
    meta = meta or file_meta
    default_batch, default_hw = check_shape(file_meta)
    hw = hw or default_hw
    batch = batch if (file_meta.info.get("onnx") or {}).get("dynamic", True) else default_batch
    device = _device_of(module)
    inputs = sample_inputs(meta, batch, hw, seed=seed, device=device)  # type: ignore[arg-type]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            ref = module(*inputs).float().cpu().numpy()
    finally:
        module.train(was_training)
    feed = {i.name: t.cpu().numpy().astype(np.float32) for i, t in zip(sess.get_inputs(), inputs)}
    try:
        got = sess.run(["output"], feed)[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types; one line naming the size
        raise VerificationError(f"onnxruntime cannot run {path.name} at batch {batch}, {hw[0]}x{hw[1]} (sizes baked "
                                f"in at export?): {' '.join(str(exc).split())[:200]}") from None
    if got.shape != ref.shape:
        raise VerificationError(f"onnxruntime output shape {tuple(got.shape)} != PyTorch {tuple(ref.shape)} at input {batch}x{hw[0]}x{hw[1]}")
    if not np.isfinite(got).all():
        raise VerificationError("onnxruntime produced non-finite values")
    diff = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
    if tolerance is not None and diff > tolerance:
        raise VerificationError(
            f"onnxruntime differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g}) at batch {batch}, {hw[0]}x{hw[1]}"
        )
    return diff


def read_onnx_meta(path: str | Path) -> GeneratorMeta:
    """The GeneratorMeta embedded in an exported file (torch-free twin: i2i_export.runtime.read_meta)."""
    from .runtime import read_meta

    return read_meta(path)
