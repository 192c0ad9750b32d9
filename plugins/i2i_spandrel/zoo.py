"""Zoo entry ``big-lama``: LaMa (Suvorov et al. 2022, advimman/lama, Apache-2.0), the big-lama
weights trained on Places2, as lama-cleaner / IOPaint publish them (a TorchScript file).

``i2i translate photo.jpg --mask hole.png --model big-lama`` downloads it (~196 MiB) into the cache,
reads its tensors without running its TorchScript code (:mod:`i2i.torchscript`) and builds
spandrel's LaMa class with them (:mod:`i2i_spandrel.arches`).

Checksum: the publisher's own, the MD5 e3aa4aaa15225a33ec84f9f4bc47e500 that IOPaint
(Sanster/IOPaint, iopaint/model/lama.py: LAMA_MODEL_MD5) checks for this URL, and its size, 205,669,692
bytes (196.1 MiB). No sha256 is pinned: the two SHA-256 figures third parties report for this URL
disagree with each other, and the file could not be fetched here to measure one; pin it where the
network is (``python -c "from i2i.download import sha256_file; print(sha256_file(PATH))"``).
"""

from __future__ import annotations

from typing import Any

from i2i.errors import I2IError

#: the architecture of every big-lama file (spandrel's LaMa: 4 input channels = RGB + mask, RGB out)
LAMA_KWARGS = {"arch": "LaMa", "net": "LaMa", "hyperparameters": {"in_nc": 4, "out_nc": 3},
               "in_channels": 3, "out_channels": 3, "scale": 1}


def lama_state(raw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A big-lama file's tensors (TorchScript, .pth or .safetensors; ``model.model.*``,
    ``generator.model.*`` or to_jit.py's ``model.generator.model.*`` keys; a training ``best.ckpt``) -> (state_dict of ``spandrel_inpaint``, its kwargs)."""
    from .arches import identify

    found = identify(raw)
    if found is None or found[1]["arch"] != "LaMa":
        what = "nothing spandrel knows" if found is None else f"a spandrel {found[1]['arch']} model"
        raise I2IError(f"this file holds {what}, not LaMa (a LaMa generator's keys end in model.N..., e.g. model.generator.model.1.bn_l.running_mean)")
    name, kwargs, sd = found
    return sd, kwargs


ZOO: dict[str, dict[str, Any]] = {
    "big-lama": {
        "generator": "spandrel_inpaint",
        "generator_kwargs": LAMA_KWARGS,
        "url": "https://github.com/Sanster/models/releases/download/add_big_lama/big-lama.pt",
        "sha256": None,  # see the module docstring: not known here, not invented
        "md5": "e3aa4aaa15225a33ec84f9f4bc47e500",  # IOPaint's LAMA_MODEL_MD5 for this URL
        "size_bytes": 205_669_692,
        "converter": lama_state,
        "method": "inpaint",
        "license": "Apache-2.0 (advimman/lama)",
        "source": "https://github.com/advimman/lama",
        "description": "LaMa big-lama (Places2): large-mask inpainting with Fourier convolutions, 51M params, any size",
    },
}

__all__ = ["ZOO", "LAMA_KWARGS", "lama_state"]
