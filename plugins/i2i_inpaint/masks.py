"""Hole masks for inpainting: a small registry of seeded mask generators.

A user's own mask for ``i2i translate --mask`` is read by the host (``i2i.translate.read_mask``);
mask files here (``files`` folders, the paired ``masks/`` layout) are read by the same rule
(:func:`i2i.translate.mask_plane`: opaque = hole where there is transparency, else non-zero = hole),
and a folder whose masks mark more than half the image as hole on average is taken as inverted.

Convention everywhere: float32 ``HxW`` arrays with values in {0, 1}, **1 = hole** (pixels to fill).

A mask generator is a callable ``gen(rng, (h, w)) -> mask`` built by a registered factory
(``factory(**kwargs) -> gen``). All randomness comes from the ``numpy.random.Generator`` passed in,
so the same seed gives the same mask, in any process, on any machine (:func:`mask_rng`).

Built-in generators (``list_masks()``):

- ``free_form``: DeepFill v2 brush strokes (Yu et al. 2019, ``brush_stroke_mask``).
- ``free_form_eval``: the same with up to 10 strokes up to 50 px wide, so hole ratios span 0-60%.
- ``rect``: one or more axis-aligned rectangles.
- ``files``: irregular masks read from a folder of mask images (e.g. the NVIDIA irregular mask set;
  non-zero = hole, or opaque = hole with transparency), resized to the image size, randomly flipped / rotated.
- ``mixture``: picks one component generator per mask with given probabilities.
- ``union``: the union of several generators (DeepFill v2 trains on brush strokes OR a box).

Plugins add generators through the ``register_masks`` hook, like every other kind (``i2i list
masks`` shows them)::

    @i2i.hookimpl
    def register_masks(register):
        register("blobs", make_blobs, description="random ellipses")

(:func:`register_mask` adds one at run time, e.g. in a test.)

Mask *specs* are strings that the config and CLI accept (:func:`mask_from_spec`):
``"free_form"``, ``"free_form:0.7,rect:0.3"`` (a mixture), ``"union:free_form+rect"``, or a
folder path (``files`` over that folder).
"""

from __future__ import annotations

import math
import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np
from PIL import Image, ImageDraw

from i2i.errors import I2IError, UnknownNameError, did_you_mean
from i2i.registry import MaskSpec, Registry, registry


class MaskGenerator(Protocol):
    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray: ...


def _registry() -> Registry[MaskSpec]:
    """The host's mask registry: every plugin's ``register_masks`` hook, plus :func:`register_mask` calls."""
    return registry("mask")


def _get(name: str) -> MaskSpec:
    reg = _registry()
    if name in reg:
        return reg.get(name)
    raise UnknownNameError(f"unknown mask generator {name!r}{did_you_mean(name, reg.names())}; "
                           f"known: {', '.join(reg.names())}, or a folder of mask images")


def register_mask(name: str, factory: Callable[..., MaskGenerator], plugin: str = "", description: str = "") -> None:
    """Add a mask generator at run time (plugins use the ``register_masks`` hook); clashes name both plugins."""
    reg = _registry()
    reg.add(reg.make_spec(plugin or _caller_module(), name, factory, description=description))


def unregister_mask(name: str) -> None:
    """Remove a mask generator (tests, or a plugin replacing its own entry); unknown names are errors."""
    _get(name)
    del _registry()._entries[name]


def _caller_module() -> str:
    return str(sys._getframe(2).f_globals.get("__name__", "")).split(".")[0]


def list_masks(pattern: str = "*") -> list[MaskSpec]:
    return _registry().list(pattern)


def create_mask(name: str, **kwargs: Any) -> MaskGenerator:
    """Build a registered generator; an unknown name lists close matches."""
    spec = _get(name)
    try:
        return spec.factory(**kwargs)
    except TypeError as exc:  # wrong kwargs from a config file: say which generator
        raise I2IError(f"mask generator {name!r}: {exc}") from None


def mask_rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent RNG for (seed, key...): e.g. ``mask_rng(eval_seed, index)``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, *[int(k) for k in keys]]))


def mask_set(gen: MaskGenerator, n: int, size_hw: tuple[int, int], seed: int) -> list[np.ndarray]:
    """``n`` masks, mask ``i`` drawn with ``mask_rng(seed, i)``: the same set for the same seed."""
    return [gen(mask_rng(seed, i), size_hw) for i in range(n)]


def hole_ratio(mask: np.ndarray) -> float:
    return float(np.asarray(mask, dtype=np.float32).mean())


# -- built-in generators ---------------------------------------------------------------------


class FreeForm:
    """DeepFill v2's random brush strokes.

    Defaults are the paper's for 256x256 images; widths and stroke lengths scale with the image
    size, so a 64x64 mask looks like a 256x256 one shrunk.
    """

    def __init__(self, max_strokes: int = 4, min_vertex: int = 4, max_vertex: int = 12,
                 mean_angle: float = 2 * math.pi / 5, angle_range: float = 2 * math.pi / 15,
                 min_width: float = 12, max_width: float = 40, ref_size: int = 256) -> None:
        if max_strokes < 1 or min_vertex < 1 or max_vertex < min_vertex or max_width < min_width:
            raise I2IError("free_form masks need max_strokes >= 1, 1 <= min_vertex <= max_vertex, min_width <= max_width")
        self.max_strokes, self.min_vertex, self.max_vertex = max_strokes, min_vertex, max_vertex
        self.mean_angle, self.angle_range = mean_angle, angle_range
        self.min_width, self.max_width, self.ref_size = min_width, max_width, ref_size

    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
        h, w = size_hw
        scale = min(h, w) / self.ref_size
        radius = math.sqrt(h * h + w * w) / 8
        img = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, self.max_strokes + 1))):
            n_vertex = int(rng.integers(self.min_vertex, self.max_vertex + 1))
            a_min = self.mean_angle - rng.uniform(0, self.angle_range)
            a_max = self.mean_angle + rng.uniform(0, self.angle_range)
            angles = [(2 * math.pi - rng.uniform(a_min, a_max)) if i % 2 == 0 else rng.uniform(a_min, a_max)
                      for i in range(n_vertex)]
            vertex = [(int(rng.integers(0, w)), int(rng.integers(0, h)))]
            for angle in angles:
                r = float(np.clip(rng.normal(radius, radius / 2), 0, 2 * radius))
                x = float(np.clip(vertex[-1][0] + r * math.cos(angle), 0, w))
                y = float(np.clip(vertex[-1][1] + r * math.sin(angle), 0, h))
                vertex.append((int(x), int(y)))
            width = max(1, int(rng.uniform(self.min_width, self.max_width) * scale))
            draw.line(vertex, fill=1, width=width)
            for vx, vy in vertex:  # round joints, as in the paper
                draw.ellipse((vx - width // 2, vy - width // 2, vx + width // 2, vy + width // 2), fill=1)
        mask = np.asarray(img, dtype=np.float32)
        if rng.random() < 0.5:
            mask = mask[:, ::-1]
        if rng.random() < 0.5:
            mask = mask[::-1, :]
        return np.ascontiguousarray(mask)


class Rect:
    """``1..max_count`` rectangles, each side a uniform fraction in [min_frac, max_frac] of the image."""

    def __init__(self, min_frac: float = 0.25, max_frac: float = 0.5, max_count: int = 1) -> None:
        if not 0 < min_frac <= max_frac <= 1 or max_count < 1:
            raise I2IError("rect masks need 0 < min_frac <= max_frac <= 1 and max_count >= 1")
        self.min_frac, self.max_frac, self.max_count = min_frac, max_frac, max_count

    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
        h, w = size_hw
        mask = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(1, self.max_count + 1))):
            bh = max(1, int(round(h * rng.uniform(self.min_frac, self.max_frac))))
            bw = max(1, int(round(w * rng.uniform(self.min_frac, self.max_frac))))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            mask[y : y + bh, x : x + bw] = 1.0
        return mask


@lru_cache(maxsize=16)
def _mask_files(root: str) -> tuple[str, ...]:
    from i2i.imageio import list_images

    files = tuple(str(p) for p in list_images(root, recursive=True))
    if not files:
        raise I2IError(f"no mask images in {root}; expected PNG masks (non-zero = hole)")
    return files


def _read_mask_file(path: str, invert: bool = False) -> Image.Image:
    """A mask file as an "L" image, 255 = hole, by the host's rule (:func:`i2i.translate.mask_plane`)."""
    from i2i.imageio import decode_image
    from i2i.translate import mask_plane

    plane = mask_plane(decode_image(path, name=f"mask {path}"), f"mask {path}")
    return Image.fromarray(((plane != invert) * 255).astype(np.uint8))


#: folder_inverted looks at up to this many files, spread over the sorted folder
INVERSION_SAMPLE = 32


@lru_cache(maxsize=16)
def folder_inverted(files: tuple[str, ...], label: str) -> bool:
    """Whether a folder's masks are inverted, by the rule for one mask (:data:`i2i.translate.INVERTED_ABOVE`)
    applied to the folder: their mean hole ratio (over up to INVERSION_SAMPLE files spread over the
    sorted list) above a half. Said in a MaskWarning when it is."""
    import warnings

    from i2i.translate import INVERTED_ABOVE, MaskWarning

    picks = files[:: max(1, len(files) // INVERSION_SAMPLE)][:INVERSION_SAMPLE]
    ratio = float(np.mean([np.asarray(_read_mask_file(f)).mean() / 255 for f in picks]))
    if ratio <= INVERTED_ABOVE:
        return False
    warnings.warn(f"i2i: the masks in {label} mark {ratio:.0%} of the image as hole on average ({len(picks)} files): "
                  f"taken as inverted (white/opaque = keep)", MaskWarning, stacklevel=2)
    return True


def _resize_mask(img: Image.Image, size_hw: tuple[int, int]) -> np.ndarray:
    """Binarise (non-zero = hole), then area-resize and threshold at half, keeping the hole ratio."""
    h, w = size_hw
    binary = img.point(lambda v: 255 if v else 0)
    if binary.size != (w, h):
        binary = binary.resize((w, h), Image.Resampling.BOX)
    return (np.asarray(binary) >= 128).astype(np.float32)


class Files:
    """Irregular masks from a folder of mask images (non-zero = hole), e.g. NVIDIA's test masks.

    ``first``/``last`` select a slice of the sorted files (the NVIDIA set is sorted by rising
    hole ratio, so ``last=0.5`` keeps the larger holes); ``augment`` applies a random flip and a
    random 90-degree rotation. ``invert``: None decides by :func:`folder_inverted` over the whole
    folder; True/False say.
    """

    def __init__(self, root: str | os.PathLike[str], first: float = 0.0, last: float = 1.0, augment: bool = True,
                 invert: bool | None = None) -> None:
        if not Path(root).expanduser().is_dir():
            raise I2IError(f"mask folder {root} does not exist; pass a folder of mask images (non-zero = hole)")
        files = _mask_files(str(Path(root).expanduser()))
        self.invert = folder_inverted(files, str(root)) if invert is None else bool(invert)
        lo, hi = int(len(files) * first), int(math.ceil(len(files) * last))
        self.files = files[lo:hi]
        if not self.files:
            raise I2IError(f"files masks: the slice first={first}, last={last} of {root} is empty")
        self.augment = augment

    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
        img = _read_mask_file(self.files[int(rng.integers(0, len(self.files)))], self.invert)
        if self.augment:
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            k = int(rng.integers(0, 4))
            if k:
                img = img.transpose([Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270][k - 1])
        return _resize_mask(img, size_hw)


def _components(components: Any) -> list[tuple[MaskGenerator, float]]:
    """[{name, p, kwargs}] or {name: p} or [(gen, p)] -> [(generator, probability)]."""
    if isinstance(components, Mapping):
        components = [{"name": k, "p": v} for k, v in components.items()]
    out: list[tuple[MaskGenerator, float]] = []
    for c in components:
        if isinstance(c, Mapping):
            gen = create_mask(str(c["name"]), **dict(c.get("kwargs") or {}))
            out.append((gen, float(c.get("p", 1.0))))
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            gen = create_mask(c[0]) if isinstance(c[0], str) else c[0]
            out.append((gen, float(c[1])))
        else:
            out.append((create_mask(c) if isinstance(c, str) else c, 1.0))
    if not out:
        raise I2IError("a mask mixture needs at least one component")
    return out


class Mixture:
    """One component per mask, chosen with the given probabilities (normalised to sum 1)."""

    def __init__(self, components: Any) -> None:
        parts = _components(components)
        probs = np.array([p for _, p in parts], dtype=np.float64)
        if (probs < 0).any() or probs.sum() <= 0:
            raise I2IError(f"mask mixture probabilities must be >= 0 and not all 0, got {probs.tolist()}")
        self.gens = [g for g, _ in parts]
        self.probs = probs / probs.sum()

    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
        return self.gens[int(rng.choice(len(self.gens), p=self.probs))](rng, size_hw)


class Union:
    """The union of one mask from each component (DeepFill v2: brush strokes OR a box)."""

    def __init__(self, components: Any) -> None:
        self.gens = [g for g, _ in _components(components)]

    def __call__(self, rng: np.random.Generator, size_hw: tuple[int, int]) -> np.ndarray:
        out = np.zeros(size_hw, np.float32)
        for gen in self.gens:
            out = np.maximum(out, gen(rng, size_hw))
        return out


def register_builtin_masks(register: Callable[..., None]) -> None:
    """The built-in generators, through the ``register_masks`` hook (see ``i2i_inpaint.register_masks``)."""
    register("free_form", FreeForm, description="DeepFill v2 brush strokes")
    register("free_form_eval", lambda **kw: FreeForm(**{"max_strokes": 10, "max_width": 50, **kw}),
             description="brush strokes with more and wider strokes: hole ratios span 0-60% (eval default)")
    register("rect", Rect, description="random rectangles")
    register("files", Files, description="mask images from a folder (root=...; non-zero = hole)")
    register("mixture", Mixture, description="one of several generators, by probability")
    register("union", Union, description="union of several generators")


def mask_from_spec(spec: str, kwargs: Mapping[str, Any] | None = None) -> MaskGenerator:
    """A generator from a config/CLI string.

    - ``"free_form"`` (any registered name) with ``kwargs`` for its factory;
    - ``"free_form:0.7,rect:0.3"``: a mixture with these probabilities; a component may be a
      folder of mask files (``"free_form:0.5,/data/nvidia_masks:0.5"``), its kwargs under its path;
    - ``"union:free_form+rect"``: a union;
    - an existing folder: ``files`` masks from it (``kwargs`` e.g. ``{"augment": False}``).
    """
    spec = spec.strip()
    kwargs = dict(kwargs or {})
    if spec.startswith("union:"):
        return Union([s for s in spec[len("union:"):].split("+") if s])
    if "," in spec or (":" in spec and not Path(spec).exists()):
        parts = []
        for item in spec.split(","):
            name, _, p = item.strip().rpartition(":")
            if not name:  # no probability given
                name, p = p, ""
            name = name.strip()
            try:
                prob = float(p) if p else 1.0
            except ValueError:
                raise I2IError(f"mask spec {spec!r}: {p!r} is not a probability; write e.g. free_form:0.7,rect:0.3") from None
            if name not in _registry() and Path(name).expanduser().is_dir():  # a folder of mask files
                parts.append({"name": "files", "p": prob, "kwargs": {"root": name, **(kwargs.get(name) or {})}})
            else:
                parts.append({"name": name, "p": prob, "kwargs": kwargs.get(name)})
        return Mixture(parts)
    if spec in _registry():
        return create_mask(spec, **kwargs)
    if Path(spec).expanduser().is_dir():
        return Files(spec, **kwargs)
    _get(spec)  # raises: unknown name with close matches
    raise AssertionError


__all__ = [
    "MaskGenerator", "MaskSpec", "register_mask", "unregister_mask", "list_masks", "create_mask", "mask_from_spec",
    "mask_rng", "mask_set", "hole_ratio", "folder_inverted", "FreeForm", "Rect", "Files", "Mixture", "Union",
]
