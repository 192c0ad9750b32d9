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
from typing import Any, Callable, Sequence

import numpy as np

from i2i.artifact import META_KEY, GeneratorMeta
from i2i.download import cache_dir
from i2i.errors import I2IError
from i2i.imageproc import from_range, pad_to_multiple, to_range, translate_array

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
#: what ``device=`` accepts
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
ACCELERATORS = (TENSORRT, CUDA)


class ProviderWarning(UserWarning):
    """An execution provider that was asked for is not in use; the model runs on a slower one."""


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """The providers to ask onnxruntime for, best first, always ending in CPU.

    ``auto`` asks only for what the wheel offers; an explicit ``cuda``/``tensorrt`` is asked for
    even when it is not listed, so the fallback warning tells the user it did not load.
    """
    device = device.lower()
    if device not in DEVICES:
        raise I2IError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        return [CUDA, CPU]
    if device == "tensorrt":
        return [TENSORRT, CUDA, CPU]
    wanted = []
    if TENSORRT in available and os.environ.get("I2I_TENSORRT", "1") != "0":
        wanted.append(TENSORRT)
    if CUDA in available:
        wanted.append(CUDA)
    return wanted + [CPU]


def _provider_options(name: str) -> dict[str, Any]:
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
    opts = ort_module.SessionOptions()
    opts.graph_optimization_level = ort_module.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: as fast or faster here (bench/onnx_latency.py)
    # and they leave the cores to image decoding/encoding and the other requests of a server.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = int(threads)
    providers = [(p, options) if (options := _provider_options(p)) else p for p in wanted]
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
    except Exception as exc:  # noqa: BLE001 - a GPU provider that fails to initialise: retry on CPU
        if wanted == [CPU]:
            raise
        warnings.warn(
            f"i2i: onnxruntime could not start {', '.join(p for p in wanted if p != CPU)} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); running on CPU",
            ProviderWarning,
            stacklevel=2,
        )
        sess = cpu_session([CPU])  # rewritten like any CPU session
        fell_back = True  # warned above
    active = list(sess.get_providers())
    asked = [p for p in wanted if p in ACCELERATORS]
    if asked and not fell_back and not any(p in active for p in asked):
        have = "onnxruntime-gpu is installed" if any(p in available for p in asked) else "this onnxruntime has no GPU support (pip install i2i[gpu])"
        warnings.warn(
            f"i2i: asked for {', '.join(asked)} but onnxruntime is running on {', '.join(active)}: "
            f"{have}, but CUDA/cuDNN/TensorRT libraries or a GPU were not found; running on CPU",
            ProviderWarning,
            stacklevel=2,
        )
    elif device == "tensorrt" and TENSORRT not in active:
        warnings.warn(f"i2i: TensorRT is not in use; running on {active[0]}", ProviderWarning, stacklevel=2)
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


def _pad_to(x: np.ndarray, h: int, w: int, constant: bool) -> np.ndarray:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    widths = [(0, 0), (0, 0), (0, ph), (0, pw)]
    if constant:
        return np.pad(x, widths)
    return np.pad(x, widths, mode="reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "edge")


class OnnxGenerator:
    """An exported generator: ``.run`` on float batches, ``.translate`` on uint8 images."""

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
        out = self.session.run(["output"], feed)[0]
        return out.astype(np.float32, copy=False)

    def _fn(self) -> Callable[..., np.ndarray]:
        """The batch function translate_array calls; pads to the static size for fixed-size files."""
        if self.static_hw is None:
            return self.run
        sh, sw = self.static_hw
        s = self.meta.scale

        def run_static(batch: np.ndarray, *extras: np.ndarray) -> np.ndarray:
            h, w = batch.shape[-2:]
            if h > sh or w > sw:
                raise I2IError(f"a {h}x{w} tile does not fit this model's fixed size {sh}x{sw}")
            out = self.run(_pad_to(batch, sh, sw, False), *(_pad_to(e, sh, sw, True) for e in extras))
            return out[:, :, : h * s, : w * s]

        return run_static

    def translate(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        tile: int = 0,
        overlap: int = 32,
    ) -> np.ndarray:
        """uint8 HxWxC (or HxW) image -> translated uint8 HxWxC image.

        ``mask`` (inpainting models): HxW, 1/True/255 = hole. ``tile`` > 0 runs large images in
        tiles of that side with ``overlap`` pixels of context (bounded memory, same pixels for
        networks whose receptive field fits the overlap). Files with a fixed size are tiled to it.
        """
        image = self._match_channels(np.asarray(image))
        m = None
        if mask is not None:
            m = self._mask_array(mask, image)
        elif self.meta.extra_inputs:
            names = ", ".join(str(i["name"]) for i in self.meta.extra_inputs)
            raise I2IError(f"this model needs extra inputs ({names}); pass a mask")
        if self.static_hw is not None:
            h, w = image.shape[:2]
            sh, sw = self.static_hw
            if h > sh or w > sw:
                overlap = min(overlap, min(sh, sw) // 4)
                fit = min(sh, sw) - 2 * overlap
                tile = min(tile, fit) if tile > 0 else fit
        return translate_array(self._fn(), image, self.meta, mask=m, tile=tile, overlap=overlap)

    def translate_batch(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray] | None = None,
        max_batch: int = 8,
    ) -> list[np.ndarray]:
        """Several uint8 images -> their translations, in order.

        Images that pad to the same size (the size multiple, or the file's fixed size) go through
        the network together, up to ``max_batch`` at a time: one onnxruntime call per group
        instead of one per image. Images larger than a fixed-size file's input are tiled alone.
        """
        if masks is not None and len(masks) != len(images):
            raise I2IError(f"got {len(images)} images but {len(masks)} masks")
        if self.meta.extra_inputs and masks is None:
            names = ", ".join(str(i["name"]) for i in self.meta.extra_inputs)
            raise I2IError(f"this model needs extra inputs ({names}); pass one mask per image")
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[tuple[int, np.ndarray, list[np.ndarray], tuple[int, int]]]] = {}
        for i, image in enumerate(images):
            mask = masks[i] if masks is not None else None
            image = self._match_channels(np.asarray(image))
            h, w = image.shape[:2]
            if self.static_hw is not None and (h > self.static_hw[0] or w > self.static_hw[1]):
                results[i] = self.translate(image, mask)
                continue
            x, _ = pad_to_multiple(to_range(image, self.meta.value_range), self.meta.size_multiple)
            extras = [pad_to_multiple(self._mask_array(mask, image)[None], self.meta.size_multiple, fill=0.0)[0]] if mask is not None else []
            if self.static_hw is not None:
                x = _pad_to(x[None], *self.static_hw, False)[0]
                extras = [_pad_to(e[None], *self.static_hw, True)[0] for e in extras]
            groups.setdefault(x.shape[-2:], []).append((i, x, extras, (h, w)))
        s = self.meta.scale
        for items in groups.values():
            for k in range(0, len(items), max(1, max_batch)):
                chunk = items[k : k + max_batch]
                batch = np.stack([x for _, x, _, _ in chunk])
                extra_batches = [np.stack([e[j] for _, _, e, _ in chunk]) for j in range(len(chunk[0][2]))]
                out = self.run(batch, *extra_batches)
                for (i, _, _, (h, w)), y in zip(chunk, out):
                    results[i] = from_range(y[:, : h * s, : w * s], self.meta.value_range)
        return [r for r in results if r is not None]

    @staticmethod
    def _mask_array(mask: np.ndarray, image: np.ndarray) -> np.ndarray:
        """HxW (or HxWx1/3) mask, uint8 0/255 or bool/float -> float32 HxW in {0, 1} (1 = hole)."""
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0] if m.shape[-1] in (1, 3, 4) else m[0]
        if m.shape[:2] != image.shape[:2]:
            raise I2IError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {image.shape[1]}x{image.shape[0]}")
        threshold = 127 if m.dtype == np.uint8 else 0.5
        return (m > threshold).astype(np.float32)

    def _match_channels(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8:
            raise I2IError(f"translate takes uint8 images, got {image.dtype}")
        if image.ndim == 2:
            image = image[:, :, None]
        c, want = image.shape[2], self.meta.in_channels
        if c == want:
            return image
        if want == 3 and c == 1:
            return np.repeat(image, 3, axis=2)
        if want == 3 and c == 4:
            return image[:, :, :3]
        if want == 1 and c in (3, 4):  # ITU-R 601 luma, as Pillow's convert("L")
            luma = image[:, :, :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            return (luma + 0.5).astype(np.uint8)[:, :, None]
        raise I2IError(f"the model takes {want}-channel images, got {c} channels")

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` and ``i2i translate`` report: the metadata and where it runs."""
        from dataclasses import asdict

        return {"meta": asdict(self.meta), "providers": self.providers, "device": self.device,
                "inputs": self.input_names, "static_hw": self.static_hw, "path": self.path.name}
