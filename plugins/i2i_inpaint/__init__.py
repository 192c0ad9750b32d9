"""Inpainting (DeepFill v2, Yu et al. 2019): gated-conv generator taking a mask, SN-PatchGAN, hinge loss.

- generator ``deepfill_v2``: ``forward(image, mask)``, mask 1 = hole; output composited (known
  pixels returned exactly);
- discriminator ``sn_patch``: spectral-normalised PatchGAN over image + mask;
- method ``inpaint`` (:mod:`i2i_inpaint.method`);
- masks: a registry of seeded mask generators (:mod:`i2i_inpaint.masks`; extend it with
  ``register_mask``);
- command ``i2i eval inpaint`` (:mod:`i2i_inpaint.cli`).
"""

from __future__ import annotations

import i2i
from i2i.registry import InputSpec

# torch-free at import; networks load in the hooks
from .masks import create_mask, list_masks, mask_from_spec, mask_set, register_mask

__all__ = ["create_mask", "list_masks", "mask_from_spec", "mask_set", "register_mask"]


@i2i.hookimpl
def register_generators(register) -> None:
    from .networks import deepfill_v2

    register("deepfill_v2", deepfill_v2, size_multiple=4, extra_inputs=[InputSpec("mask", 1, "1 = hole")],
             test_kwargs={"cnum": 8}, test_size=32,
             kwarg_names={"in_channels": "in_channels", "out_channels": "out_channels"},  # factory takes **kwargs
             description="DeepFill v2 gated convolutions, coarse + refine (inpainting; input image + mask)")


@i2i.hookimpl
def register_discriminators(register) -> None:
    from .networks import SNPatchDiscriminator

    register("sn_patch", SNPatchDiscriminator, test_kwargs={"ndf": 8, "n_layers": 4}, test_in_channels=4,
             in_channels=4, kwarg_names={"in_channels": "input_nc"},  # spectral norm: no norm choice
             min_size=1, features=True,  # 5x5 stride-2 convs, padding 2: any side
             description="SN-PatchGAN (DeepFill v2): spectral norm, 5x5 stride 2; input image + mask")


@i2i.hookimpl
def register_masks(register) -> None:
    from .masks import register_builtin_masks

    register_builtin_masks(register)


@i2i.hookimpl
def register_methods(register) -> None:
    from .method import Inpaint

    register("inpaint", Inpaint, description="inpainting: DeepFill v2 + SN-PatchGAN, hinge + hole/valid L1")


@i2i.hookimpl
def register_commands(cli) -> None:
    from .cli import eval_inpaint

    cli.commands["eval"].add_command(eval_inpaint, "inpaint")
