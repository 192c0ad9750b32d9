"""Model zoo entries for the official Real-ESRGAN releases (xinntao/Real-ESRGAN, BSD-3-Clause) and
the SRGAN x4 generator published in leftthomas/SRGAN (MIT).

Each entry rebuilds the published architecture; ``converter`` unwraps basicsr's ``{"params_ema":
...}`` / ``{"params": ...}`` wrappers (and renames old ESRGAN keys) so the weights load strictly.
sha256 is pinned where we know the official file's digest; the others are verified on first
download only by loading strictly.
"""

from __future__ import annotations

from typing import Any

from .weights import identity, xinntao_to_basicsr

_RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"
_SOURCE = "https://github.com/xinntao/Real-ESRGAN"
_LICENSE = "BSD-3-Clause"

ZOO: dict[str, dict[str, Any]] = {
    "realesr-animevideov3": {
        "generator": "srvgg_compact",
        "generator_kwargs": {"num_feat": 64, "num_conv": 16, "scale": 4, "act_type": "prelu"},
        "url": f"{_RELEASES}/v0.2.5.0/realesr-animevideov3.pth",
        "sha256": "b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d",
        "size_bytes": 2_504_012,
        "converter": identity,
        "method": "srgan",
        "license": _LICENSE,
        "source": _SOURCE,
        "description": "Real-ESRGAN compact x4 for anime video (SRVGGNetCompact, 16 convs, 0.6M params)",
    },
    "realesrgan-x4plus": {
        "generator": "rrdbnet",
        "generator_kwargs": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 4},
        "url": f"{_RELEASES}/v0.1.0/RealESRGAN_x4plus.pth",
        "sha256": "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1",
        "size_bytes": 67_040_989,
        "converter": xinntao_to_basicsr,
        "method": "srgan",
        "license": _LICENSE,
        "source": _SOURCE,
        "description": "Real-ESRGAN x4plus: RRDBNet 23 blocks, general photos with real degradations",
    },
    "realesrgan-x4plus-anime-6b": {
        "generator": "rrdbnet",
        "generator_kwargs": {"num_feat": 64, "num_block": 6, "num_grow_ch": 32, "scale": 4},
        "url": f"{_RELEASES}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
        "converter": xinntao_to_basicsr,
        "method": "srgan",
        "license": _LICENSE,
        "source": _SOURCE,
        "description": "Real-ESRGAN x4plus anime: RRDBNet 6 blocks, for illustrations",
    },
    "realesrgan-x2plus": {
        "generator": "rrdbnet",
        "generator_kwargs": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32, "scale": 2},
        "url": f"{_RELEASES}/v0.2.1/RealESRGAN_x2plus.pth",
        "converter": xinntao_to_basicsr,
        "method": "srgan",
        "license": _LICENSE,
        "source": _SOURCE,
        "description": "Real-ESRGAN x2plus: RRDBNet 23 blocks with pixel-unshuffle input, x2",
    },
    "realesr-general-x4v3": {
        "generator": "srvgg_compact",
        "generator_kwargs": {"num_feat": 64, "num_conv": 32, "scale": 4, "act_type": "prelu"},
        "url": f"{_RELEASES}/v0.2.5.0/realesr-general-x4v3.pth",
        "converter": identity,
        "method": "srgan",
        "license": _LICENSE,
        "source": _SOURCE,
        "description": "Real-ESRGAN compact x4 for general scenes (SRVGGNetCompact, 32 convs, 1.2M params)",
    },
    "srgan-x4": {
        "generator": "srgan_leftthomas",
        "generator_kwargs": {"scale": 4, "num_feat": 64, "num_block": 5, "block7": "prelu"},
        "url": "https://github.com/leftthomas/SRGAN/raw/master/epochs/netG_epoch_4_100.pth",
        "converter": identity,
        "method": "srgan",
        "license": "MIT",
        "source": "https://github.com/leftthomas/SRGAN",
        "description": "SRGAN x4 (leftthomas/SRGAN netG_epoch_4_100.pth): 5 residual blocks, trained on VOC2012 crops",
    },
}

__all__ = ["ZOO"]
