"""Published SR weights: unwrap, rename to our layouts, recognise the architecture, load strictly.

Converters take what ``torch.load`` returned (a state_dict, or a wrapper dict such as basicsr's
``{"params_ema": sd}`` / ``{"params": sd}``) and return a state_dict in our module's key layout;
they are the zoo's ``ModelSpec.converter`` hook. :func:`detect` recognises a state_dict's
architecture and kwargs from its keys and shapes, so ``--weights FILE`` needs no architecture flags.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from i2i.errors import I2IError
from i2i.zoo import fill_batchnorm_counters, unwrap_state_dict

StateDict = dict[str, torch.Tensor]


def unwrap(obj: Any) -> StateDict:
    """The state_dict inside a published checkpoint; BatchNorm counters filled for pre-0.4.1 files (leftthomas SRGAN)."""
    return fill_batchnorm_counters(unwrap_state_dict(obj))


_XINNTAO = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\."), lambda m: f"body.{m[1]}.rdb{m[2]}."),
    (re.compile(r"^trunk_conv\."), lambda m: "conv_body."),
    (re.compile(r"^upconv(\d)\."), lambda m: f"conv_up{m[1]}."),
    (re.compile(r"^HRconv\."), lambda m: "conv_hr."),
]


def xinntao_to_basicsr(obj: Any) -> StateDict:
    """Old xinntao/ESRGAN RRDBNet keys (``RRDB_trunk.N.RDBk``, ``trunk_conv``, ``upconvN``, ``HRconv``)
    -> the basicsr layout of :class:`~i2i_srgan.networks.RRDBNet`; basicsr keys pass unchanged."""
    out: StateDict = {}
    for key, value in unwrap(obj).items():
        for pattern, repl in _XINNTAO:
            key = pattern.sub(repl, key)
        out[key] = value
    return out


def identity(obj: Any) -> StateDict:
    """Unwrap only (Real-ESRGAN compact, basicsr RRDBNet, leftthomas SRGAN use our keys as they are)."""
    return unwrap(obj)


def _count(sd: StateDict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m[1] for k in sd if (m := rx.match(k))})


def detect(sd: StateDict) -> tuple[str, dict[str, Any], StateDict]:
    """(generator name, kwargs, converted state_dict) for a published SR state_dict.

    Recognises Real-ESRGAN compact (``body.N``), RRDBNet (basicsr or xinntao keys), leftthomas
    SRGAN (``block1`` .. ``blockN``) and our SRResNet; anything else is a clear error.
    """
    sd = unwrap(sd)
    if "RRDB_trunk.0.RDB1.conv1.weight" in sd:
        sd = xinntao_to_basicsr(sd)
    if "conv_first.weight" in sd and "body.0.rdb1.conv1.weight" in sd:
        num_feat, in_ch = sd["conv_first.weight"].shape[:2]
        out_ch = sd["conv_last.weight"].shape[0]
        unshuffle = int(round((in_ch / out_ch) ** 0.5))  # x2 / x1 models pixel-unshuffle 4x / 16x channels
        scale = {1: 4, 2: 2, 4: 1}.get(unshuffle)
        if scale is None:
            raise I2IError(f"RRDBNet weights with {in_ch} input and {out_ch} output channels match no known scale")
        kwargs = {"in_channels": int(out_ch), "out_channels": int(out_ch), "scale": scale, "num_feat": int(num_feat),
                  "num_block": _count(sd, r"^body\.(\d+)\."), "num_grow_ch": int(sd["body.0.rdb1.conv1.weight"].shape[0])}
        return "rrdbnet", kwargs, sd
    if "body.0.weight" in sd and sd["body.0.weight"].ndim == 4:
        convs = sorted(int(m[1]) for k in sd if (m := re.match(r"^body\.(\d+)\.weight$", k)) and sd[k].ndim == 4)
        last = sd[f"body.{convs[-1]}.weight"]
        num_feat, in_ch = sd["body.0.weight"].shape[:2]
        scale = int(round((last.shape[0] / in_ch) ** 0.5))
        if "body.1.weight" not in sd:  # relu and leakyrelu carry no weights, so the keys cannot tell them apart
            raise I2IError("SRVGGNetCompact weights without PReLU: name the architecture with --weights ZOO_NAME=FILE")
        kwargs = {"in_channels": int(in_ch), "out_channels": int(in_ch), "num_feat": int(num_feat),
                  "num_conv": len(convs) - 2, "scale": scale, "act_type": "prelu"}
        return "srvgg_compact", kwargs, sd
    if "block1.0.weight" in sd and "block2.conv1.weight" in sd:
        blocks = _count(sd, r"^block(\d+)\.")
        num_block = blocks - 3
        ups = _count(sd, rf"^block{blocks}\.(\d+)\.conv\.")
        tail = f"block{num_block + 2}.1"
        block7 = "batchnorm" if f"{tail}.running_mean" in sd else "prelu"
        kwargs = {"scale": 2**ups, "num_feat": int(sd["block1.0.weight"].shape[0]), "num_block": num_block, "block7": block7}
        return "srgan_leftthomas", kwargs, sd
    if "head.0.weight" in sd and "body.0.conv1.weight" in sd:
        in_ch = sd["head.0.weight"].shape[1]
        num_feat = sd["head.0.weight"].shape[0]
        up_convs = [k for k in sd if re.match(r"^upsample\.\d+\.weight$", k) and sd[k].ndim == 4]
        scale = 3 if sd["upsample.0.weight"].shape[0] == 9 * num_feat else 2 ** len(up_convs)
        kwargs = {"in_channels": int(in_ch), "out_channels": int(sd["tail.weight"].shape[0]),
                  "num_feat": int(sd["head.0.weight"].shape[0]), "num_block": _count(sd, r"^body\.(\d+)\."),
                  "scale": scale, "norm": "batch" if "body.0.bn1.running_mean" in sd else "none"}
        return "srresnet", kwargs, sd
    sample = ", ".join(list(sd)[:6])
    raise I2IError(f"unrecognised SR weights (keys start: {sample}); known layouts: Real-ESRGAN compact, "
                   f"RRDBNet (ESRGAN / Real-ESRGAN), leftthomas SRGAN, i2i srresnet")


def recognises(obj: Any) -> bool:
    """Whether :func:`detect` knows this layout (the ``identify_weights`` hook asks first).

    Only a layout detect() reads and whose every key the detected network has: files of related
    architectures that share some keys (RCAN's ``head.0``, MMRealSR's RRDBNet plus modulation
    layers) are left to the next plugin (spandrel) instead of failing here. Missing keys or wrong
    shapes still count as ours, so a damaged file gets the strict loader's message.
    """
    try:
        sd = unwrap(obj)
    except I2IError:
        return False
    if not (any(k in sd for k in ("RRDB_trunk.0.RDB1.conv1.weight", "body.0.rdb1.conv1.weight", "block1.0.weight",
                                  "head.0.weight")) or ("body.0.weight" in sd and sd["body.0.weight"].ndim == 4)):
        return False
    try:
        name, kwargs, converted = detect(sd)
    except I2IError as exc:
        return "without PReLU" in str(exc)  # ours, and its message says what to do
    from i2i.registry import create_generator

    with torch.device("meta"):  # the key set only: nothing allocated or initialised
        own = create_generator(name, **kwargs).state_dict()
    return not set(converted) - set(own)


__all__ = ["unwrap", "xinntao_to_basicsr", "identity", "detect", "recognises"]
