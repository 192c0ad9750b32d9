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
    def from_json(cls, text: str, source: str = "") -> "GeneratorMeta":
        """The metadata in ``text``; damaged JSON or fields (a name missing, a value range that is no
        pair) are a one-line ``I2IError`` naming ``source`` (the file it came from)."""
        try:
            data = json.loads(text)
            known = set(cls.__dataclass_fields__)
            meta = cls(**{k: v for k, v in data.items() if k in known})
            low, high = meta.value_range
            meta.value_range = (float(low), float(high))
        except (ValueError, TypeError, AttributeError) as exc:
            from .errors import I2IError

            raise I2IError(f"{source or 'this model'}: its i2i metadata is damaged ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:120]}); export or save the model again") from None
        return meta
