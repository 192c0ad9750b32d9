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

import hashlib
import importlib.util
import os
import tempfile
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
    rewrite_for_cpu: bool = True,
) -> Any:
    """An ``InferenceSession`` on the best provider that actually loads, warning on fallback.

    On the CPU provider the graph is rewritten for speed (``i2i_export.cpu_graph``: wide 3x3
    convolutions as Winograd, few-output large kernels through space-to-depth, transposed convolutions
    by phase) unless ``rewrite_for_cpu=False``. The file is left as it is; the rewritten graph is
    cached under ``cache_dir("cpu-graphs")``, so only the first session on a file pays the ~1 s of
    rewriting a full-size generator.
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
    opts.log_severity_level = 3  # errors only: onnxruntime's C++ warnings are not for users (ours are above)
    opts.graph_optimization_level = ort_module.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: as fast or faster here (bench/onnx_latency.py)
    # and they leave the cores to image decoding/encoding and the other requests of a server.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
    index = parse_device(device)[1]
    providers = [(p, options) if (options := _provider_options(p, index)) else p for p in wanted]
    fell_back = False

    def cpu_session(cpu_providers: list[Any]) -> Any:
        model = _cpu_graph(path) if rewrite_for_cpu else str(path)
        try:
            return _session(ort_module, path, opts, cpu_providers, model)
        except Exception:
            if not isinstance(model, str) or model == str(path):
                raise
            Path(model).unlink(missing_ok=True)  # a damaged cache entry: drop it, run the file itself
            return _session(ort_module, path, opts, cpu_providers, str(path))

    try:
        sess = cpu_session(providers) if wanted == [CPU] else _session(ort_module, path, opts, providers, str(path))
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
        sess = cpu_session([CPU])  # rewritten like any CPU session
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


def _cpu_graph(path: str | Path) -> str | bytes:
    """What to hand the CPU provider: the graph rewritten by ``cpu_graph.optimize_for_cpu`` (1.5x
    faster for a ResNet generator, ~4% for a U-Net, bench/onnx_latency.py), from the cache when it is
    there; or the file as it is when there is nothing to rewrite, the ``onnx`` package is missing (a
    serving install), or the model is too large to reserialise."""
    if importlib.util.find_spec("onnx") is None:
        return str(path)
    from . import cpu_graph  # numpy only; ``import onnx`` (~70 ms) waits for a cache miss

    entry = _cache_entry(path, [cpu_graph.__file__, cpu_graph.transforms.__file__])
    if entry is not None and entry.exists():
        return str(entry)
    if entry is not None and entry.with_suffix(".plain").exists():
        return str(path)
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception:  # noqa: BLE001 - unreadable: onnxruntime reports it in its own words below
        return str(path)
    try:
        if cpu_graph.optimize_for_cpu(model) == 0 or model.ByteSize() > 1_900_000_000:
            _store(entry, None)
            return str(path)
        data = model.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - a graph the rewrite does not understand: run it as it is
        warnings.warn(f"i2i: could not rewrite {Path(path).name} for the CPU ({type(exc).__name__}: {exc}); "
                      "running the graph as it is", ProviderWarning, stacklevel=3)
        return str(path)
    _store(entry, data)
    return data


def _cache_entry(path: str | Path, rewrite_sources: list[str]) -> Path | None:
    """Where the CPU graph of this version of ``path`` is cached: named by the file's real path, and
    by its size, modification time and the rewrite's own source files, so a changed model or a
    changed rewrite misses. None when the file cannot be stat'ed or there is nowhere to cache."""
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
        code = b"".join(Path(source).read_bytes() for source in rewrite_sources)
        folder = cache_dir("cpu-graphs")
    except (OSError, I2IError):  # I2IError: no home directory to put the cache in (a bare container)
        return None
    which = hashlib.sha256(real.encode()).hexdigest()[:16]
    version = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:".encode() + code).hexdigest()[:16]
    return folder / f"{which}-{version}.onnx"


def _store(entry: Path | None, data: bytes | None) -> None:
    """Cache ``data`` (None: a marker that the file has nothing to rewrite) at ``entry``, replacing the
    entries of earlier versions of the same file. Best effort: an unwritable cache is skipped."""
    if entry is None:
        return
    target = entry if data is not None else entry.with_suffix(".plain")
    tmp = ""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        which = entry.name.split("-")[0] + "-"
        for old in entry.parent.glob(which + "*"):  # earlier versions, and parts an interrupted run left
            old.unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=which, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data or b"")
        os.replace(tmp, target)  # atomic: a concurrent reader sees the whole file or none
        tmp = ""
    except OSError:
        pass
    finally:
        if tmp:
            Path(tmp).unlink(missing_ok=True)


def _session(ort_module: Any, path: str | Path, opts: Any, providers: list[Any], model: str | bytes) -> Any:
    """A session on ``model`` (the file's path or the rewritten graph's bytes); ``path`` names it in errors."""
    try:
        return ort_module.InferenceSession(model, sess_options=opts, providers=providers)
    except Exception as exc:  # noqa: BLE001
        msg = str(exc)
        if "INVALID_PROTOBUF" in msg or "NO_SUCHFILE" in msg or "INVALID_GRAPH" in msg:
            raise I2IError(f"{path} is not a readable ONNX model ({msg.splitlines()[0][:200]})") from None
        raise


def meta_from_session(sess: Any, path: str | Path = "") -> GeneratorMeta:
    """The GeneratorMeta an i2i export carries in its metadata."""
    raw = sess.get_modelmeta().custom_metadata_map.get(META_KEY)
    if raw is None:
        raise I2IError(f"{path or 'this ONNX file'} has no i2i metadata; export it with `i2i export`")
    return GeneratorMeta.from_json(raw)


def read_meta(path: str | Path) -> GeneratorMeta:
    """The metadata of an .onnx file, read with the ``onnx`` package when present (no session)."""
    path = Path(path)
    if not path.is_file():
        raise I2IError(f"ONNX model {path} does not exist")
    try:
        import onnx
    except ImportError:  # a serving install: onnxruntime only
        import onnxruntime as ort

        return meta_from_session(ort.InferenceSession(str(path), providers=[CPU]), path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001
        raise I2IError(f"{path} is not a readable ONNX file ({type(exc).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise I2IError(f"{path} has no i2i metadata; export it with `i2i export`")
    return GeneratorMeta.from_json(props[META_KEY])


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
