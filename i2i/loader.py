"""THE one door that opens a generator: ``i2i.load(source)`` -> :class:`Generator`.

(The module is ``loader``, not ``load``: a submodule named like the function would replace
``i2i.load`` the moment anything imported it.)

Every user path goes through here: ``i2i translate``, ``i2i serve``, both ``i2i eval`` commands,
``i2i export``, SR's ``init_from`` and the Python API, so a picture gives the same pixels
whichever door it comes through. ``source`` is any of:

- a zoo name from ``i2i list models`` (``cyclegan_horse2zebra``), or an architecture with a
  pretrained tag (``resnet_9blocks.horse2zebra``); ``weights=FILE`` uses a local copy;
- an i2i run folder, checkpoint folder or ``weights.safetensors``;
- a published ``.pth`` / ``.pt`` / ``.safetensors`` file: its architecture is recognised from its
  keys by the plugins' ``identify_weights`` hook;
- an exported ``.onnx`` file, run by onnxruntime (no torch needed).

This module imports neither torch nor onnxruntime at import time: the serving install has no torch.
:class:`~i2i.artifact.GeneratorMeta` is built here only (:func:`build_meta`).

Example::

    import i2i
    g = i2i.load("realesr-animevideov3")          # or "runs/my_run", "model.onnx", "x.pth"
    big = g(np.asarray(Image.open("small.png")))  # uint8 HxWxC in, uint8 out (alpha kept)
    tiles = g(image, tile=256)                    # bounded memory, same pixels
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .artifact import GeneratorMeta
from .errors import I2IError, ModelOutputError
from .imageproc import pad_to, translate_array

__all__ = ["load", "Generator", "build_meta", "parse_device", "DEFAULT_MAX_PIXELS", "plan_tile"]

#: the pixel limit of ``i2i translate`` and ``i2i serve`` (width x height of one input)
DEFAULT_MAX_PIXELS = 4096 * 4096
#: the tile side ``i2i translate`` picks when it tiles by itself
AUTO_TILE = 512

WEIGHT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors")


class TilingWarning(UserWarning):
    """Tiles were asked of a generator that does not say whether they match the whole image."""


def parse_device(device: str) -> tuple[str, int | None]:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``tensorrt`` -> (kind, index). Torch-free.

    Raises I2IError (one line) for anything else.
    """
    text = (device or "auto").strip().lower()
    kind, _, index = text.partition(":")
    if kind in ("auto", "cpu", "tensorrt") and not index:
        return kind, None
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index) if index else None
    raise I2IError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N (or tensorrt for .onnx models)")


def build_meta(name: str, kwargs: dict[str, Any], *, method: str = "", net: str = "G",
               info: dict[str, Any] | None = None, module: Any = None, spec: Any = None) -> GeneratorMeta:
    """The self-description of registered generator ``name`` built with ``kwargs``.

    ``module``, when given, is the built network: its layers decide ``tiling`` for specs that say
    "auto" (InstanceNorm, GroupNorm or LayerNorm normalise with whole-image statistics).
    ``spec``: the GeneratorSpec, for one that is not registered (the conformance suite's own).
    Channels and scale are read from ``kwargs`` under the keywords the spec's contract names
    (:func:`i2i.contract.generator_io`), else the spec's fixed values.
    """
    from . import __version__
    from .registry import generators

    from .contract import generator_io

    spec = spec or generators().get(name)
    tiling, reason = spec.tiling, getattr(spec, "tiling_reason", "")
    if tiling == "auto":
        found = _tiling_reason_of(module) if module is not None else ""  # one walk over the layers
        tiling = ("whole_image" if found else "local") if module is not None else ""
        reason = reason or found
    io = generator_io(spec, kwargs)  # read through the spec's contract, not guessed from kwarg names
    # a factory of many architectures (spandrel) says what this built instance is
    own = dict(spec.describe(module)) if getattr(spec, "describe", None) is not None and module is not None else {}
    io.update({k: int(own[k]) for k in ("in_channels", "out_channels", "scale") if k in own})
    return GeneratorMeta(
        name=name, kwargs=dict(kwargs), method=method, net=net,
        in_channels=io["in_channels"], out_channels=io["out_channels"],
        size_multiple=int(own.get("size_multiple", spec.size_multiple)), scale=io["scale"],
        value_range=tuple(spec.value_range),  # type: ignore[arg-type]
        extra_inputs=[{"name": i.name, "channels": i.channels} for i in spec.extra_inputs],
        tiling=own.get("tiling", tiling),
        tiling_reason=own.get("tiling_reason", reason) if own.get("tiling", tiling) == "whole_image" else "",
        min_size=int(own.get("min_size", spec.min_size)), i2i_version=__version__,
        # the plugin that built it: a checkpoint still opens while another plugin claims the same name
        info={**({"plugin": spec.plugin} if getattr(spec, "plugin", "") else {}), **own.get("info", {}), **(info or {})},
    )


def weights_alone(source: Any, weights: Any) -> tuple[Any, Any]:
    """``(source, weights)`` of a command's model options: ``--weights FILE`` with no model, checkpoint
    or SOURCE is itself the model (a published file, opened as :func:`load` opens it), so ``i2i
    translate``, ``i2i export`` and ``i2i serve`` all take a weights file alone the same way."""
    if weights is not None and not source:
        return str(weights), None
    return source, weights


def _tiling_reason_of(module: Any) -> str:
    """Which layer makes ``module`` "whole_image", in words (the first one found)."""
    from torch import nn

    for layer in module.modules():
        whole = isinstance(layer, (nn.GroupNorm, nn.LayerNorm)) or (
            isinstance(layer, nn.modules.instancenorm._InstanceNorm) and not layer.track_running_stats)
        if whole:
            return f"normalises with whole-image statistics ({type(layer).__name__})"
    return ""


def tiling_reason(meta: GeneratorMeta) -> str:
    """Why ``meta``'s generator cannot be tiled, from its own description (files from an i2i that did
    not record it: the generic reason)."""
    return meta.tiling_reason or "normalises with whole-image statistics"


def _tiling_of(module: Any) -> str:
    """"whole_image" when a layer normalises over the whole image at inference, else "local"."""
    return "whole_image" if _tiling_reason_of(module) else "local"


class Generator:
    """An opened generator: ``meta``, ``run`` on float batches, and ``g(image)`` on 8-bit images.

    Made by :func:`load`; the backend (PyTorch module or onnxruntime session) is an implementation
    detail behind ``run``.
    """

    def __init__(self, run: Callable[..., np.ndarray], meta: GeneratorMeta, device: str, *, source: str = "",
                 static_hw: tuple[int, int] | None = None, module: Any = None, providers: list[str] | None = None) -> None:
        self._run = run
        self.meta = meta
        #: where it runs: "cpu", "cuda:0" (PyTorch); "cpu", "cuda", "tensorrt" (onnxruntime, see ``providers``)
        self.device = device
        self.source = source
        #: (H, W) of an ONNX file exported with a fixed size; inputs are padded and tiled to it
        self.static_hw = static_hw
        #: the torch module (None for ONNX files): what ``i2i export`` exports
        self.module = module
        self.providers = providers or []
        self._warned_tiling = False

    def run(self, batch: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        """float32 N x in_channels x H x W in ``meta.value_range`` (+ extra inputs such as an
        N x 1 x H x W mask, 1 = hole) -> float32 N x out_channels x H*scale x W*scale.

        H and W must suit the network (multiples of ``meta.size_multiple``); ``__call__`` pads.
        Raises I2IError when the network cannot take the input, or gives NaN or infinite values (damaged
        weights, a float16 overflow), which no image can show.
        """
        try:
            out = self._run(batch, *extras)
        except I2IError:
            raise
        except (RuntimeError, ValueError) as exc:  # a shape the network cannot take
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise I2IError(f"{self.meta.name} cannot take a {batch.shape[-1]}x{batch.shape[-2]} input "
                           f"({type(exc).__name__}: {first})") from None
        # A float64 sum of float32 values cannot overflow, so it is finite when every value is: one pass,
        # no boolean copy of the output on every call (isfinite(out) is only built to count, and confirm)
        if not np.isfinite(out.sum(dtype=np.float64)) and (bad := out.size - int(np.isfinite(out).sum())):
            raise ModelOutputError(f"{self.source or self.meta.name} gave {bad} NaN or infinite value(s) of {out.size}: its "
                           "weights may be damaged (export or download it again), or float16 overflowed (use a "
                           "float32 model)")
        return out

    def __call__(self, image: Any, mask: Any = None, tile: int = 0, overlap: int = 32, whole: bool = False) -> Any:
        """Translate one image: uint8 HxW or HxWxC (C in 1, 2, 3, 4) numpy array, or a PIL image.

        Returns the same kind (numpy uint8 / PIL), (H*scale)x(W*scale). Grey in gives grey out (a
        3-channel model's output is turned back to luma), and an alpha channel is passed through,
        resized with the image (as Real-ESRGAN does). ``mask`` (inpainting models): HxW, non-zero /
        True / > 0.5 = hole. ``tile`` > 0 runs in tiles of that side with ``overlap`` context pixels:
        bounded memory, same pixels for "local" generators; refused (I2IError) for generators that
        normalise with whole-image statistics. A model trained on side-by-side A|B files (pix2pix)
        translates the input half of such a file, as the reference's test step does (see
        :meth:`pair_input`); ``whole=True`` translates it whole.
        """
        from PIL import Image

        if isinstance(image, Image.Image):
            out = self.translate(_from_pil(image), mask, tile=tile, overlap=overlap, whole=whole)
            return Image.fromarray(out[:, :, 0] if out.shape[2] == 1 else out)
        return self.translate(np.asarray(image), mask, tile=tile, overlap=overlap, whole=whole)

    def pair_input(self, image: np.ndarray) -> np.ndarray | None:
        """The input half of an A|B pair file when this model was trained on such files, else None.

        A file counts as a pair when its aspect ratio is that of the training pairs (facades: 2:1);
        the half is the training direction's input (AtoB: left, BtoA: right).
        """
        pairs = self.meta.info.get("ab_pairs")
        h, w = image.shape[:2]
        if not pairs or abs(w / h - float(pairs.get("aspect", 2.0))) > 0.02:
            return None
        half = w // 2
        return image[:, :half] if pairs.get("input", "left") == "left" else image[:, half : 2 * half]

    def translate(self, image: np.ndarray, mask: Any = None, *, tile: int = 0, overlap: int = 32,
                  whole: bool = False) -> np.ndarray:
        """``__call__`` on a uint8 numpy image: returns uint8 (H*scale)x(W*scale)xC. With ``tile``,
        memory is the 8-bit output plus one tile."""
        from .imageio import split_alpha, to_channels

        if image.dtype != np.uint8:
            raise I2IError(f"images are uint8 (0-255), got {image.dtype}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
            raise I2IError(f"an image is HxW or HxWxC with C in 1-4, got shape {image.shape}")
        half = None if whole else self.pair_input(image)
        image = image if half is None else half
        colour, alpha = split_alpha(image)
        grey_in = colour.shape[2] == 1
        x = to_channels(colour, self.meta.in_channels)
        h, w = x.shape[:2]
        hole = self._mask(mask, h, w)
        tile, overlap = self._plan(h, w, tile, overlap)
        fn = self._static_fn() if self.static_hw else self.run
        channels = self.meta.out_channels
        keep_grey = grey_in and channels == 3  # grey in, grey out: the colour output back to luma
        out = np.empty((h * self.meta.scale, w * self.meta.scale, (1 if keep_grey else channels) + (alpha is not None)),
                       np.uint8)

        def put(y: int, x0: int, part: np.ndarray) -> None:
            part = to_channels(part, 1) if keep_grey else part
            out[y : y + part.shape[0], x0 : x0 + part.shape[1], : part.shape[2]] = part

        translate_array(fn, x, self.meta, mask=hole, tile=tile, overlap=overlap, sink=put)
        if alpha is not None:  # passed through, resized with the image (as Real-ESRGAN does)
            out[:, :, -1] = np.asarray(_resize_alpha(alpha, self.meta.scale))
        return out

    def _mask(self, mask: Any, h: int, w: int) -> np.ndarray | None:
        """Any mask (uint8 0/255, bool, float in [0, 1], HxW or HxWxC) -> float32 HxW in {0, 1}."""
        if not self.meta.extra_inputs:
            if mask is not None:
                raise I2IError(f"{self.meta.name} takes no mask (it is not an inpainting model)")
            return None
        if mask is None:
            names = ", ".join(str(i["name"]) for i in self.meta.extra_inputs)
            raise I2IError(f"{self.meta.name} needs a {names}: pass a mask (non-zero = hole)")
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != (h, w):
            raise I2IError(f"the mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
        threshold = 127 if m.dtype == np.uint8 else 0.5
        return (m > threshold).astype(np.float32)

    def _plan(self, h: int, w: int, tile: int, overlap: int) -> tuple[int, int]:
        """Check the tiling asked for and add what a fixed-size ONNX file needs."""
        if tile > 0 and max(h, w) > tile:
            self.check_tiling()
        if self.static_hw is not None:
            sh, sw = self.static_hw
            if h > sh or w > sw:
                self.check_tiling(f"it was exported at a fixed {sw}x{sh} and this image is {w}x{h} (export it "
                                  f"without --static)")
                overlap = min(overlap, min(sh, sw) // 4)
                fit = min(sh, sw) - 2 * overlap
                tile = min(tile, fit) if tile > 0 else fit
        return tile, overlap

    def check_tiling(self, why: str = "tiling (--tile) cannot be used") -> None:
        """Raise I2IError (saying ``why``) when this generator's tiles would not match the whole image;
        warn once when it does not say (files from an older i2i)."""
        if self.meta.tiling == "whole_image":
            raise I2IError(f"{self.meta.name} {tiling_reason(self.meta)}, so tiles would differ from the whole "
                           f"image: {why}; run the whole image, or make it smaller (--size)")
        if self.meta.tiling != "local" and not self._warned_tiling:
            self._warned_tiling = True
            warnings.warn(f"i2i: {self.source or self.meta.name} does not record whether tiles match the whole "
                          f"image (exported by an older i2i); tile seams may show", TilingWarning, stacklevel=4)

    def _static_fn(self) -> Callable[..., np.ndarray]:
        """``run`` for a fixed-size file: pad each (already size-multiple) input to the fixed size."""
        sh, sw = self.static_hw  # type: ignore[misc]
        s = self.meta.scale

        def run_static(batch: np.ndarray, *extras: np.ndarray) -> np.ndarray:
            h, w = batch.shape[-2:]
            out = self.run(pad_to(batch, sh, sw), *(pad_to(e, sh, sw, fill=0.0) for e in extras))
            return out[:, :, : h * s, : w * s]

        return run_static

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` and ``i2i translate`` report: the metadata and where it runs, and the
        checkpoint's model card (``model_card``: its Markdown text, ``summary``: its one line; None and
        "" for sources without one: .onnx files, published weights, older checkpoints)."""
        from .modelcard import card_summary, read_card

        # an .onnx file's metadata keeps the path of the checkpoint it came from, relative to where it was
        # exported: from anywhere else it may name another run's card, so files have none (module None)
        checkpoint = self.meta.info.get("checkpoint") if self.module is not None else None
        card = read_card(checkpoint) if isinstance(checkpoint, str) and checkpoint else None
        return {"meta": asdict(self.meta), "device": self.device, "providers": self.providers,
                "static_hw": self.static_hw, "source": Path(self.source).name if self.source else "",
                "model_card": card, "summary": card_summary(card) if card else ""}


def plan_tile(meta: GeneratorMeta, h: int, w: int, tile: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
              free_bytes: int | None = None) -> int:
    """The tile side to translate an HxW image with, given what was asked (``tile``, 0 = whole).

    An image past ``max_pixels``, or whose untiled run is estimated to need more memory than is
    free, is tiled (``AUTO_TILE``) when the generator allows it; otherwise an I2IError names
    ``--tile`` / ``--size`` / ``--max-pixels``. Returns ``tile`` unchanged when no limit applies.
    """
    if tile > 0:
        return tile
    need = estimate_bytes(meta, h, w)
    free = free_memory() if free_bytes is None else free_bytes
    over_pixels = max_pixels is not None and h * w > max_pixels
    over_memory = free is not None and need > free
    if not (over_pixels or over_memory):
        return 0
    why = (f"{w}x{h} = {h * w} pixels is past the limit of {max_pixels} (--max-pixels)" if over_pixels else
           f"translating {w}x{h} whole needs about {need / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free")  # type: ignore[operator]
    if meta.tiling == "whole_image":
        raise I2IError(f"{why}, and {meta.name} cannot be tiled (it {tiling_reason(meta)}): make it smaller with "
                       f"--size, or raise --max-pixels if the memory is there")
    side = AUTO_TILE if max_pixels is None else max(64, min(AUTO_TILE, math.isqrt(max_pixels)))
    warnings.warn(f"i2i: {why}: translating in {side}-pixel tiles (--tile sets the size)", UserWarning, stacklevel=2)
    return side


def estimate_bytes(meta: GeneratorMeta, h: int, w: int) -> int:
    """A rough peak of an untiled run: ~2 feature maps of 64 float32 channels at the input size
    (what the built-in generators keep alive at full resolution) plus the float32 output twice."""
    pixels = h * w
    return pixels * 64 * 4 * 2 + pixels * meta.scale**2 * meta.out_channels * 4 * 2


def free_memory() -> int | None:
    """Bytes the kernel says are available (Linux MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _from_pil(image: Any) -> np.ndarray:
    """A PIL image as uint8 HxWxC in L, LA, RGB or RGBA (the modes decode_image gives)."""
    if image.mode not in ("L", "LA", "RGB", "RGBA"):
        has_alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
    return np.array(image, dtype=np.uint8)


def _resize_alpha(alpha: np.ndarray, scale: int) -> Any:
    """The alpha plane as a PIL "L" image at the output size (bicubic, as for colour upscaling)."""
    from PIL import Image

    plane = Image.fromarray(alpha, "L")
    if scale == 1:
        return plane
    return plane.resize((alpha.shape[1] * scale, alpha.shape[0] * scale), Image.BICUBIC)


# -- opening ------------------------------------------------------------------------------------


def load(source: str | Path, *, weights: str | Path | None = None, device: str = "auto", net: str | None = None,
         ema: bool = True, threads: int = 0, cpu_kernels: bool = False) -> Generator:
    """Open a generator from any source (see the module docstring) on ``device``.

    ``device``: auto (CUDA when there, else CPU), cpu, cuda, cuda:N; tensorrt for .onnx files. A
    device that is asked for and not there is an I2IError, never a silent fallback.
    ``weights``: a local weights file for a zoo name. ``net``: which generator of a checkpoint
    (CycleGAN's G_B); ``ema=False`` takes the raw weights over the EMA copy. ``threads``: onnxruntime
    intra-op threads (0: its default). ``cpu_kernels``: a PyTorch model running on the CPU gets the
    accelerator plugins' kernels (i2i_cpu, :mod:`i2i.accelerate`); an .onnx file is optimised at export
    instead (``i2i export --optimize cpu``).

    Raises I2IError (one line) for an unknown name, a missing or damaged file, weights that fit no
    known architecture, or a device that is not there.
    """
    text = str(source)
    path = Path(text).expanduser()
    kind, index = parse_device(device)
    if text.lower().endswith(".onnx"):
        if weights is not None or net is not None:
            raise I2IError("an .onnx file holds one generator and its weights: --weights and --net do not apply")
        if cpu_kernels:
            raise I2IError("--cpu-kernels is for PyTorch models; an .onnx file is optimised for the CPU when it is "
                           "exported (i2i export --optimize cpu)")
        return _load_onnx(path, device, threads)
    if kind == "tensorrt":
        raise I2IError("--device tensorrt is for .onnx models; export first with `i2i export`, or use cuda")
    import importlib.util

    if importlib.util.find_spec("torch") is None:  # a serving install: onnxruntime only
        raise I2IError(f"opening {text} needs PyTorch (pip install 'i2i[train]'); this install runs .onnx files "
                       f"(`i2i export` makes one where PyTorch is installed)")
    if path.exists() or _looks_like_path(text):
        if weights is not None:
            raise I2IError("--weights goes with a zoo name (--model NAME); a file or run folder already holds its weights")
        module, meta = _open_file(path, net=net, ema=ema)
    else:
        if net is not None:
            raise I2IError("--net picks a generator of a checkpoint; a zoo model has one")
        from .zoo import open_zoo_model

        module, meta = open_zoo_model(text, weights=str(weights) if weights else None)
    return _torch_generator(module, meta, kind, index, source=text, cpu_kernels=cpu_kernels)


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.lower().endswith(WEIGHT_SUFFIXES)


def _open_file(path: Path, net: str | None, ema: bool) -> tuple[Any, GeneratorMeta]:
    """A run/checkpoint folder or an i2i weights file; else a published weights file."""
    from .checkpoint import WEIGHTS, has_i2i_meta, open_checkpoint

    if not path.exists():
        raise I2IError(f"{path} does not exist; pass a zoo name (`i2i list models`), a run or checkpoint folder, "
                       f"a .pth/.safetensors weights file or an .onnx file")
    if path.is_dir() or path.name == WEIGHTS or (path.suffix == ".safetensors" and has_i2i_meta(path)):
        return open_checkpoint(path, net=net, ema=ema)
    if net is not None:
        raise I2IError("--net picks a generator of an i2i checkpoint; a published weights file holds one")
    return _open_published(path)


def _open_published(path: Path) -> tuple[Any, GeneratorMeta]:
    """A published weights file, its architecture recognised by the plugins' identify_weights hook."""
    from .plugins import manager
    from .zoo import build_strict, load_state

    state = load_state(path)
    try:
        found = manager().pm.hook.identify_weights(state=state)
    except I2IError as exc:  # a plugin recognised the file but cannot use it: name the file
        raise type(exc)(f"{path}: {exc}") from None
    if found is None:
        raise I2IError(f"{path}: no plugin recognises these weights; if a zoo entry describes the architecture, "
                       f"use --model NAME --weights {path} (`i2i list models`)")
    name, kwargs, sd = found
    from .registry import generators

    name = generators().recorded(name)  # the built-in network while a plugin claims its name too
    module = build_strict(name, kwargs, sd, str(path))
    return module, build_meta(name, kwargs, info={"weights": str(path)}, module=module)


def _torch_generator(module: Any, meta: GeneratorMeta, kind: str, index: int | None, source: str,
                     cpu_kernels: bool = False) -> Generator:
    import torch

    from .engine.precision import resolve_device

    if not meta.tiling:  # artifacts written before i2i recorded it: read it from the layers
        meta.tiling = _tiling_of(module)
        meta.tiling_reason = meta.tiling_reason or (_tiling_reason_of(module) if meta.tiling == "whole_image" else "")
    dev = resolve_device(kind if index is None else f"{kind}:{index}")
    module = module.to(dev).eval()
    if cpu_kernels:
        from .accelerate import cpu_kernels as accelerate

        accelerate(module, dev, "fp32")

    @torch.inference_mode()
    def run(x: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        args = [torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(dev) for a in (x, *extras)]
        return module(*args).float().cpu().numpy()

    return Generator(run, meta, str(dev), source=source, module=module)


def _load_onnx(path: Path, device: str, threads: int) -> Generator:
    try:
        from i2i_export.runtime import OnnxGenerator
    except ImportError as exc:
        raise I2IError(f"running .onnx models needs onnxruntime ({exc}): pip install 'i2i[serve]'") from None
    og = OnnxGenerator(path, device=device, threads=threads)
    return Generator(og.run, og.meta, og.device, source=str(path), static_hw=og.static_hw, providers=og.providers)
