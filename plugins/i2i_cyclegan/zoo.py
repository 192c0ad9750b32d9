"""The official CycleGAN and pix2pix generators (junyanz/pytorch-CycleGAN-and-pix2pix) as zoo
entries, and the importer for checkpoints of the reference layout and its close variants.

The converters take what ``torch.load`` returned and return ``(state_dict, generator kwargs)``
(see :mod:`i2i.zoo`); they:

- unwrap ``{"state_dict": ...}`` style wrappers and DataParallel's ``module.`` prefix;
- drop legacy InstanceNorm running statistics (``running_mean``/``running_var``/
  ``num_batches_tracked`` that PyTorch < 0.4 saved for InstanceNorm, which the reference itself
  patches away in ``__patch_instance_norm_state_dict``);
- rename the residual block's inner Sequential ``block`` -> ``conv_block`` (vintagify and other
  reimplementations);
- read from the tensors what the reference layout leaves open: InstanceNorm with a learned
  scale/shift (``norm="instance_affine"``), dropout in the blocks, ``ngf`` and channel counts.

The official files publish no checksums; a download is checked against its Content-Length and
then by the strict load.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from i2i.errors import I2IError
from i2i.zoo import fill_batchnorm_counters, unwrap_state_dict as unwrap

StateDict = dict[str, torch.Tensor]

_STATS = ("running_mean", "running_var", "num_batches_tracked")

_CYCLEGAN_MODELS = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
_PIX2PIX_MODELS = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
SOURCE = "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix"
#: the reference code's licence; the models were trained on the datasets named in each entry,
#: whose own terms (mostly research use) apply to what they learned
LICENSE = "BSD (reference code); research use (training data)"

_BLOCK = re.compile(r"^model\.(\d+)\.block\.")


def resnet_reference(obj: Any) -> tuple[StateDict, dict[str, Any]]:
    """A reference-layout ``ResnetGenerator`` state_dict -> (our keys, kwargs read from it)."""
    sd = {_BLOCK.sub(r"model.\1.conv_block.", k): v for k, v in unwrap(obj).items()}
    if "model.1.weight" not in sd:
        raise I2IError(f"not a ResNet generator of the CycleGAN layout (no model.1.weight; keys start: "
                       f"{', '.join(list(sd)[:4])})")
    first = sd["model.1.weight"]
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    last = max((int(m[1]) for k in sd if (m := re.match(r"^model\.(\d+)\.weight$", k))), default=1)
    kwargs: dict[str, Any] = {"ngf": ngf, "input_nc": input_nc, "output_nc": int(sd[f"model.{last}.weight"].shape[0])}
    if "model.1.bias" not in sd:  # convs before BatchNorm carry no bias (the reference's layout)
        kwargs["norm"] = "batch"
    else:
        # InstanceNorm never uses running statistics here: drop what old PyTorch versions saved
        sd = {k: v for k, v in sd.items() if not k.endswith(_STATS)}
        if "model.2.weight" in sd:  # a norm with a learned scale and shift after the first conv
            kwargs["norm"] = "instance_affine"
    # a Dropout shifts the block's second conv from index 5 to 6 (index 6 is otherwise the affine norm)
    if any(re.match(r"^model\.\d+\.conv_block\.6\.weight$", k) and v.ndim == 4 for k, v in sd.items()):
        kwargs["use_dropout"] = True
    return sd, kwargs


def resnet_blocks(sd: StateDict) -> int:
    return len({m[1] for k in sd if (m := re.match(r"^model\.(\d+)\.conv_block\.", k))})


def make_resnet_converter(n_blocks: int):
    """resnet_reference, plus a clear error when the file has another number of residual blocks."""

    def convert(obj: Any) -> tuple[StateDict, dict[str, Any]]:
        sd, kwargs = resnet_reference(obj)
        found = resnet_blocks(sd)
        if found != n_blocks:
            raise I2IError(f"these weights have {found} residual blocks, not {n_blocks}; use "
                           f"--model cyclegan_resnet_{found}blocks --weights FILE")
        return sd, kwargs

    convert.__name__ = f"resnet_{n_blocks}blocks_reference"
    return convert


def unet_reference(obj: Any) -> StateDict:
    """A reference-layout ``UnetGenerator`` (BatchNorm) state_dict -> our keys.

    Files saved before PyTorch 0.4 lack BatchNorm's ``num_batches_tracked``; it only counts
    training steps, so it is filled with 0.
    """
    return fill_batchnorm_counters(unwrap(obj))


CYCLEGAN = {
    "apple2orange": "apples -> oranges (ImageNet)",
    "orange2apple": "oranges -> apples (ImageNet)",
    "summer2winter_yosemite": "Yosemite summer -> winter (Flickr)",
    "winter2summer_yosemite": "Yosemite winter -> summer (Flickr)",
    "horse2zebra": "horses -> zebras (ImageNet)",
    "zebra2horse": "zebras -> horses (ImageNet)",
    "monet2photo": "Monet paintings -> photos",
    "style_monet": "photos -> Monet style",
    "style_cezanne": "photos -> Cezanne style",
    "style_ukiyoe": "photos -> Ukiyo-e style",
    "style_vangogh": "photos -> Van Gogh style",
    "sat2map": "satellite photos -> Google maps",
    "map2sat": "Google maps -> satellite photos",
    "cityscapes_photo2label": "Cityscapes photos -> label maps",
    "cityscapes_label2photo": "Cityscapes label maps -> photos",
    "facades_photo2label": "CMP facades photos -> label maps",
    "facades_label2photo": "CMP facades label maps -> photos",
    "iphone2dslr_flower": "iPhone flower photos -> DSLR shallow depth of field",
}
ALIASES = {"cyclegan_h2z": "horse2zebra", "cyclegan_z2h": "zebra2horse"}
PIX2PIX = {
    "edges2shoes": "edge maps -> shoes",
    "sat2map": "satellite photos -> Google maps",
    "map2sat": "Google maps -> satellite photos",
    "facades_label2photo": "CMP facades label maps -> photos",
    "day2night": "daytime -> night-time scenes",
}


def entries() -> dict[str, dict[str, Any]]:
    """Zoo name -> ModelSpec fields, for ``register_models``."""
    out: dict[str, dict[str, Any]] = {}
    cyclegan = {f"cyclegan_{n}": n for n in CYCLEGAN} | ALIASES
    for name, file in sorted(cyclegan.items()):
        out[name] = {
            "generator": "resnet_9blocks",
            "generator_kwargs": {"ngf": 64, "norm": "instance", "use_dropout": False},
            "url": f"{_CYCLEGAN_MODELS}/{file}.pth",
            "converter": make_resnet_converter(9),
            "method": "cyclegan",
            "license": LICENSE,
            "source": SOURCE,
            "description": f"official CycleGAN {file}: {CYCLEGAN[file]}" + (" (alias)" if name in ALIASES else ""),
        }
    for file, what in PIX2PIX.items():
        out[f"pix2pix_{file}"] = {
            "generator": "unet_256",
            "generator_kwargs": {"ngf": 64, "norm": "batch", "use_dropout": True},
            "url": f"{_PIX2PIX_MODELS}/{file}.pth",
            "converter": unet_reference,
            "method": "pix2pix",
            "license": LICENSE,
            "source": SOURCE,
            "description": f"official pix2pix {file}: {what}",
        }
    for n in (6, 9):
        out[f"cyclegan_resnet_{n}blocks"] = {
            "generator": f"resnet_{n}blocks",
            "generator_kwargs": {"ngf": 64, "norm": "instance", "use_dropout": False},
            "url": "",
            "converter": make_resnet_converter(n),
            "method": "cyclegan",
            "license": "that of the weights file",
            "source": SOURCE,
            "description": f"import: any reference-layout CycleGAN resnet_{n}blocks file via --weights FILE "
                           f"(norm, dropout, ngf read from the file)",
        }
    return out
