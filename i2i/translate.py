"""`i2i translate`: run a generator (checkpoint, zoo model or .onnx file) over images."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .artifact import GeneratorMeta
from .errors import I2IError
from .imageio import IMAGE_EXTENSIONS, read_image, write_image
from .imageproc import GeneratorFn, translate_array


@dataclass
class Translator:
    """A generator as a numpy function plus its self-description."""

    fn: GeneratorFn
    meta: GeneratorMeta
    device: str

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, tile: int = 0, overlap: int = 32) -> np.ndarray:
        return translate_array(self.fn, image, self.meta, mask=mask, tile=tile, overlap=overlap)


def torch_translator(module, meta: GeneratorMeta, device: str) -> Translator:
    import torch

    dev = torch.device(device)
    module = module.to(dev).eval()

    @torch.inference_mode()
    def fn(x: np.ndarray, *extras: np.ndarray) -> np.ndarray:
        args = [torch.from_numpy(a).to(dev) for a in (x, *extras)]
        return module(*args).float().cpu().numpy()

    return Translator(fn, meta, str(dev))


def load_translator(checkpoint: str | None, model: str | None, weights: str | None, device: str = "auto",
                    net: str | None = None, ema: bool = True) -> Translator:
    """Resolve what the user named into a Translator (exactly one of checkpoint / model)."""
    if bool(checkpoint) == bool(model):
        raise I2IError("name exactly one source: --checkpoint PATH, or --model NAME (zoo, or a .onnx file)")
    if model and model.endswith(".onnx"):
        from i2i_export.runtime import OnnxGenerator

        gen = OnnxGenerator(model, device=device)
        return Translator(gen.run, gen.meta, ",".join(gen.providers))
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if checkpoint:
        from .checkpoint import load_generator

        module, meta = load_generator(checkpoint, net=net, ema=ema)
    else:
        from .zoo import resolve_model

        module, meta = resolve_model(model, weights=weights)  # type: ignore[arg-type]
    return torch_translator(module, meta, device)


def expand_inputs(inputs: tuple[str, ...]) -> list[Path]:
    """Files, folders (their images) and globs -> image paths, in order, without duplicates."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            found = [p]
        else:
            found = sorted(Path(f) for f in glob.glob(item, recursive=True) if Path(f).suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise I2IError(f"no images found at {item!r}; pass image files, folders or globs like 'photos/*.jpg'")
        paths.extend(f for f in found if f not in paths)
    return paths


def read_mask(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    """A hole mask for an image of size_hw: greyscale, non-zero = hole, same size as the image."""
    rgb = read_image(path, channels=3)
    # a colour file is not a mask (often the photo passed by mistake); grey RGB/JPEG noise is fine
    if int((rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2)).max()) > 8:
        raise I2IError(f"mask {path} is a colour image; give a greyscale mask (non-zero/white = hole, black = keep)")
    mask = rgb.max(axis=2)
    if mask.shape != tuple(size_hw):
        raise I2IError(f"mask {path} is {mask.shape[1]}x{mask.shape[0]} but the image is {size_hw[1]}x{size_hw[0]}; "
                        f"give a mask of the image's size (non-zero = hole)")
    hole = (mask > 0).astype(np.float32)
    if not hole.any():
        raise I2IError(f"mask {path} marks no hole (all zero); non-zero pixels mark the region to fill")
    if hole.all():
        raise I2IError(f"mask {path} is all hole (nothing known to fill from); black (0) marks the pixels to keep - is it inverted?")
    return hole


def resize_shorter(image: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    scale = size / min(h, w)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    squeeze = image.ndim == 3 and image.shape[2] == 1
    pil = Image.fromarray(image[:, :, 0] if squeeze else image)
    out = np.asarray(pil.resize(new, Image.NEAREST if nearest else Image.BICUBIC))
    return out[:, :, None] if squeeze else out


def translate_files(translator: Translator, paths: list[Path], out_dir: Path, size: int | None = None,
                    mask: str | None = None, tile: int = 0, overlap: int = 32,
                    progress: Callable[[Path], None] | None = None) -> list[Path]:
    written: list[Path] = []
    if mask and not translator.meta.extra_inputs:
        raise I2IError(f"--mask is for inpainting models; {translator.meta.name} takes no mask")
    if translator.meta.extra_inputs and not mask:
        names = ", ".join(i["name"] for i in translator.meta.extra_inputs)
        raise I2IError(f"{translator.meta.name} needs a {names}: pass --mask FILE (non-zero = hole)")
    for path in paths:
        image = read_image(path, channels=translator.meta.in_channels)
        hole = read_mask(mask, image.shape[:2]) if mask else None  # checked against the image as given
        if size:
            image = resize_shorter(image, size)
            if hole is not None:  # nearest: a hole stays a hole, a known pixel stays known
                hole = (resize_shorter((hole * 255).astype(np.uint8)[:, :, None], size, nearest=True)[:, :, 0] > 0)
                hole = hole.astype(np.float32)
        result = translator(image, mask=hole, tile=tile, overlap=overlap)
        target = out_dir / f"{path.stem}.png"
        out_dir.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        write_image(target, result)
        written.append(target)
        if progress:
            progress(path)
    return written
