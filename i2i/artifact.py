"""What a trained generator says about itself, in checkpoints and exported .onnx files alike.

Torch-free on purpose: the serving runtime reads this from ONNX metadata without importing torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: key of the JSON blob in safetensors metadata and in ONNX ``metadata_props``
META_KEY = "i2i"


@dataclass
class GeneratorMeta:
    """Everything needed to rebuild and run a generator without architecture flags."""

    #: registry name of the generator (``i2i list generators``) and its constructor kwargs
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: method that trained it (pix2pix, cyclegan, srgan, inpaint) or "" for imported weights
    method: str = ""
    #: which network of the method this is (G, G_A, G_B ...)
    net: str = "G"
    in_channels: int = 3
    out_channels: int = 3
    size_multiple: int = 1
    scale: int = 1
    #: value range of input and output pixels: images are mapped from [0, 1] to this range
    value_range: tuple[float, float] = (-1.0, 1.0)
    #: extra inputs after the image, e.g. [{"name": "mask", "channels": 1}]
    extra_inputs: list[dict[str, Any]] = field(default_factory=list)
    #: whether tiles give the untiled result: "local" (a bounded receptive field: tiles with enough
    #: overlap match), "whole_image" (image-wide statistics such as InstanceNorm: tiles would differ
    #: in colour, so tiling is refused), "" (unknown: artifacts written before i2i recorded it)
    tiling: str = ""
    #: why tiles would differ, in the network's own terms ("normalises with whole-image statistics
    #: (InstanceNorm2d)", "LaMa's Fourier convolutions (FFT) see the whole image" ...), said when
    #: tiling is refused; "" where tiling is "local" or unknown
    tiling_reason: str = ""
    #: smallest height and width the network takes; smaller images are padded up to it and cropped
    min_size: int = 1
    i2i_version: str = ""
    #: free-form provenance: run name, step, zoo name, source URL ...
    info: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "", todo: str = "export or save the model again") -> "GeneratorMeta":
        """The metadata in ``text``. Damaged JSON, or a field of the wrong kind or out of its range (a
        name missing, a scale of 0, a value range that is no increasing pair, an info entry the
        runtime reads that is no mapping) is a one-line ``I2IError`` naming ``source`` (its file) and
        ``todo`` (what to do)."""
        try:
            data = json.loads(text)
            known = set(cls.__dataclass_fields__)
            meta = cls(**{k: v for k, v in data.items() if k in known})
            meta._check()
        except (ValueError, TypeError, AttributeError) as exc:
            from .errors import I2IError

            raise I2IError(f"{source or 'this model'}: its i2i metadata is damaged ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]}); {todo}") from None
        return meta

    def _check(self) -> None:
        """Raises ValueError/TypeError for a field no generator can have; makes value_range a float pair."""
        def whole(field_: str, low: int, high: int) -> None:
            value = getattr(self, field_)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{field_} {value!r} is not a whole number in [{low}, {high}]")

        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name {self.name!r} is no generator name")
        for name in ("method", "net", "tiling", "tiling_reason", "i2i_version"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} {getattr(self, name)!r} is not text")
        for name in ("kwargs", "info"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} {getattr(self, name)!r} is not a mapping")
        for name, high in (("in_channels", 1 << 16), ("out_channels", 1 << 16), ("scale", 64),
                           ("size_multiple", 1 << 16), ("min_size", 1 << 16)):
            whole(name, 1, high)
        if not isinstance(self.value_range, (list, tuple)) or len(self.value_range) != 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.value_range):
            raise TypeError(f"value_range {self.value_range!r} is no pair of numbers")  # "01" unpacks as (0, 1)
        low, high = (float(v) for v in self.value_range)
        if not -1e6 < low < high < 1e6:
            raise ValueError(f"value_range {list(self.value_range)} is no increasing pair")
        self.value_range = (low, high)
        if not isinstance(self.extra_inputs, list) or not all(
                isinstance(e, dict) and isinstance(e.get("name"), str) for e in self.extra_inputs):
            raise TypeError(f"extra_inputs {self.extra_inputs!r} is no list of named inputs")
        for key in ("onnx", "ab_pairs"):  # the info entries the runtime reads
            if self.info.get(key) is not None and not isinstance(self.info[key], dict):
                raise TypeError(f"info[{key!r}] {self.info[key]!r} is not a mapping")
        pairs = self.info.get("ab_pairs") or {}
        aspect, side = pairs.get("aspect", 2.0), pairs.get("input", "left")
        if isinstance(aspect, bool) or not isinstance(aspect, (int, float)) or not 0 < aspect < 100 or side not in ("left", "right"):
            raise ValueError(f"info['ab_pairs'] {pairs!r} is no pair layout (aspect > 0, input left or right)")
        static = (self.info.get("onnx") or {}).get("static_hw")
        if static is not None and not (isinstance(static, list) and len(static) == 2
                                       and all(isinstance(v, int) and v > 0 for v in static)):
            raise ValueError(f"info['onnx']['static_hw'] {static!r} is no pair of sizes")
