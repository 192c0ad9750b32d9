"""Run an exported generator with onnxruntime. Torch-free: needs onnxruntime, numpy (and Pillow to read images).

Pre- and post-processing come from the file's metadata (``metadata_props["i2i"]``) and the lead's
shared helpers in :mod:`i2i.imageproc`, so the PyTorch and onnxruntime paths give the same pixels.

Execution providers: ``device="auto"`` asks for TensorRT (when the installed onnxruntime offers it
and ``I2I_TENSORRT`` is not ``0``), then CUDA, then CPU. ``ort.get_available_providers()`` only
says what the wheel was built with - onnxruntime-gpu lists CUDA even where libcudart or the driver
is missing - so what counts is ``session.get_providers()`` after the session is made; when an
accelerator was asked for and is not in use we warn once, clearly, and run on CPU.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from i2i.artifact import META_KEY, GeneratorMeta
from i2i.download import cache_dir
from i2i.errors import I2IError
from i2i.loader import parse_device

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
ACCELERATORS = (TENSORRT, CUDA)


class ProviderWarning(UserWarning):
    """An execution provider that was asked for is not in use; the model runs on a slower one."""


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, always ending in CPU.

    ``device``: auto, cpu, cuda, cuda:N or tensorrt (:func:`i2i.loader.parse_device`). ``auto`` asks
    only for what the wheel offers; an explicit ``cuda``/``tensorrt`` is asked for even when it is
    not listed, so that :func:`create_session` can say in one line that it is not there.
    """
    kind, _ = parse_device(device)
    if kind == "cpu":
        return [CPU]
    if kind == "cuda":
        return [CUDA, CPU]
    if kind == "tensorrt":
        return [TENSORRT, CUDA, CPU]
    wanted = []
    if TENSORRT in available and os.environ.get("I2I_TENSORRT", "1") != "0":
        wanted.append(TENSORRT)
    if CUDA in available:
        wanted.append(CUDA)
    return wanted + [CPU]


def _provider_options(name: str, index: int | None = None) -> dict[str, Any]:
    if name == CUDA and index is not None:
        return {"device_id": index}
    if name == TENSORRT:
        # building a TensorRT engine takes minutes: cache it next to the user's other caches
        try:
            return {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir("tensorrt"))}
        except I2IError:  # no home directory (a bare container): build the engine each time
            return {}
    return {}


def create_session(
    path: str | Path,
    device: str = "auto",
    *,
    threads: int = 0,
    ort_module: Any = None,
) -> Any:
    """An ``InferenceSession`` on the best provider that actually loads, warning on fallback.

    The file runs as it is: a graph rewritten for onnxruntime's CPU is made at export time
    (``i2i export --optimize cpu``), so opening a model never imports ``onnx`` or rewrites anything.
    ``ort_module`` replaces the ``onnxruntime`` module (tests use a fake one to exercise the CUDA
    and TensorRT paths on a CPU-only machine).
    """
    if ort_module is None:
        import onnxruntime as ort_module  # noqa: N813
    available = list(ort_module.get_available_providers())
    wanted = choose_providers(device, available)
    kind = parse_device(device)[0]
    explicit = kind in ("cuda", "tensorrt")  # asked for by name: not there is an error, not a fallback
    missing = [p for p in wanted if p in ACCELERATORS and p not in available]
    if explicit and missing:  # say it in one line before onnxruntime logs its own warnings about it
        raise I2IError(f"--device {device}: this onnxruntime has no {', '.join(missing)} (pip install 'i2i[gpu]', or "
                       f"'i2i[serve-gpu]' for a serving install); use --device cpu, or auto")
    opts = ort_module.SessionOptions()
    # fatal only: onnxruntime's C++ warnings are not for users, and its errors reach them as our one line
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort_module.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: as fast or faster here (bench/onnx_latency.py)
    # and they leave the cores to image decoding/encoding and the other requests of a server.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
    index = parse_device(device)[1]
    providers = [(p, options) if (options := _provider_options(p, index)) else p for p in wanted]
    fell_back = False
    try:
        sess = _session(ort_module, path, opts, providers)
    except I2IError:
        raise
    except Exception as exc:  # noqa: BLE001 - a GPU provider that fails to initialise
        if wanted == [CPU]:
            raise
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if explicit:
            raise I2IError(f"--device {device}: onnxruntime could not start {', '.join(p for p in wanted if p != CPU)} "
                           f"({reason}); use --device cpu, or auto to take the GPU only when it works") from None
        warnings.warn(f"i2i: onnxruntime could not start {', '.join(p for p in wanted if p != CPU)} ({reason}); "
                      f"running on CPU", ProviderWarning, stacklevel=2)
        sess = _session(ort_module, path, opts, [CPU])
        fell_back = True  # warned above
    active = list(sess.get_providers())
    asked = [p for p in wanted if p in ACCELERATORS]
    if asked and not fell_back and not any(p in active for p in asked):
        why = ("onnxruntime-gpu is installed but found no usable GPU, CUDA or cuDNN"
               if any(p in available for p in asked) else "this onnxruntime has no GPU support (pip install 'i2i[gpu]', or 'i2i[serve-gpu]' for a serving install)")
        if explicit:
            raise I2IError(f"--device {device}: {why}; use --device cpu, or auto to take the GPU only when it works")
        warnings.warn(f"i2i: {why}; running on CPU", ProviderWarning, stacklevel=2)
    elif kind == "tensorrt" and TENSORRT not in active:
        raise I2IError(f"--device tensorrt: TensorRT did not load (running on {active[0]}); use --device cuda or auto")
    return sess


def _session(ort_module: Any, path: str | Path, opts: Any, providers: list[Any]) -> Any:
    """A session on the file at ``path``. A file onnxruntime cannot read (damaged, empty, an operator it
    lacks) is a one-line I2IError; with GPU providers in the list, an error that may be theirs is
    raised as it is, for the caller to fall back to the CPU."""
    try:
        return ort_module.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split())
        file_error = any(code in msg for code in ("INVALID_PROTOBUF", "NO_SUCHFILE", "INVALID_GRAPH", "INVALID_ARGUMENT"))
        if file_error or providers == [CPU]:
            reason = _ort_reason(msg)
            raise I2IError(f"{path} is not an ONNX model this onnxruntime can run ({reason}); "
                           f"export it again with `i2i export`, or update onnxruntime") from None
        raise


def _ort_reason(message: str) -> str:
    """onnxruntime's error message without its status prefixes, C++ source locations and signatures
    (which fill the first 200 characters and hide the reason: "Unsupported model IR version: 99")."""
    message = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", message)
    message = re.sub(r"(?:/onnxruntime_src/)?[\w/.-]+\.(?:cc|h|cpp):\d+ ", "", message)
    message = re.sub(r"(?:\w+ )?onnxruntime::[\w:~]+\([^)]*\)(?: const)? ?", "", message)
    message = " ".join(message.split())
    return message if len(message) <= 300 else message[:150] + " ... " + message[-145:]  # the end says why


def meta_from_session(sess: Any, path: str | Path = "") -> GeneratorMeta:
    """The GeneratorMeta an i2i export carries in its metadata."""
    try:
        raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    except UnicodeDecodeError as exc:  # a flipped byte in the metadata text
        raise I2IError(f"{path or 'this ONNX file'}: its i2i metadata is damaged (not UTF-8 text: {exc.reason} at "
                       f"byte {exc.start}); export it again with `i2i export`") from None
    if raw is None:
        raise I2IError(f"{path or 'this ONNX file'} has no i2i metadata; export it with `i2i export`")
    return GeneratorMeta.from_json(raw, str(path))


def read_meta(path: str | Path) -> GeneratorMeta:
    """The metadata of an .onnx file, read with the ``onnx`` package when present (no session)."""
    path = Path(path)
    if not path.is_file():
        raise I2IError(f"ONNX model {path} does not exist")
    try:
        import onnx
    except ImportError:  # a serving install: onnxruntime only
        import onnxruntime as ort

        return meta_from_session(_session(ort, path, ort.SessionOptions(), [CPU]), path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise I2IError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise I2IError(f"{path} has no i2i metadata; export it with `i2i export`")
    return GeneratorMeta.from_json(props[META_KEY], str(path))


class OnnxGenerator:
    """An exported generator's onnxruntime session: ``.run`` on float batches.

    The backend of :func:`i2i.load` for ``.onnx`` files; images go through
    :class:`i2i.loader.Generator`, like every other generator's.
    """

    def __init__(self, path: str | Path, device: str = "auto", *, threads: int = 0, ort_module: Any = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise I2IError(f"ONNX model {self.path} does not exist")
        self.session = create_session(self.path, device, threads=threads, ort_module=ort_module)
        self.meta: GeneratorMeta = meta_from_session(self.session, self.path)
        #: providers actually in use, best first (``session.get_providers()``)
        self.providers: list[str] = list(self.session.get_providers())
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self._half = [i.type == "tensor(float16)" for i in inputs]
        shape = list(inputs[0].shape)
        self.fixed_batch: int | None = shape[0] if isinstance(shape[0], int) else None
        static = (self.meta.info or {}).get("onnx", {}).get("static_hw")
        if static is None and isinstance(shape[2], int) and isinstance(shape[3], int):
            static = shape[2:]
        #: (H, W) the file was exported at, when its height and width are not dynamic
        self.static_hw: tuple[int, int] | None = (int(static[0]), int(static[1])) if static else None
        n_extra = len(self.meta.extra_inputs)
        if len(self.input_names) != 1 + n_extra:
            raise I2IError(f"{self.path}: the metadata declares {n_extra} extra inputs but the graph has {len(self.input_names) - 1}")

    @property
    def device(self) -> str:
        """"cuda", "tensorrt" or "cpu": what the session really runs on."""
        return {TENSORRT: "tensorrt", CUDA: "cuda"}.get(self.providers[0], "cpu")

    def run(self, batch: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        """float32 NCHW in the value range (+ extra inputs, NCHW) -> float32 NCHW output."""
        arrays = [np.asarray(batch), *(np.asarray(e) for e in extras)]
        if len(arrays) != len(self.input_names):
            raise I2IError(f"the model takes {len(self.input_names)} inputs ({', '.join(self.input_names)}), got {len(arrays)}")
        if arrays[0].ndim != 4 or arrays[0].shape[1] != self.meta.in_channels:
            raise I2IError(f"expected an N x {self.meta.in_channels} x H x W batch, got shape {arrays[0].shape}")
        if self.fixed_batch is not None and arrays[0].shape[0] != self.fixed_batch:
            # a file exported with a fixed batch: run item by item
            parts = [self.run(*(a[i : i + 1] for a in arrays)) for i in range(arrays[0].shape[0])]
            return np.concatenate(parts, axis=0)
        feed = {
            name: np.ascontiguousarray(a, dtype=np.float16 if half else np.float32)
            for name, a, half in zip(self.input_names, arrays, self._half)
        }
        try:
            out = self.session.run(["output"], feed)[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types: a shape the graph cannot take
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise I2IError(f"{self.path.name} cannot take a {arrays[0].shape[-1]}x{arrays[0].shape[-2]} input ({first})") from None
        return out.astype(np.float32, copy=False)
