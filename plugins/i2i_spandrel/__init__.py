"""The architectures people already have, through spandrel (MIT, chaiNNer-org/spandrel).

- generators ``spandrel`` (image -> image: SR, restoration) and ``spandrel_inpaint`` (image + mask:
  LaMa, MAT): any architecture spandrel builds, rebuilt from ``arch`` + ``net`` + ``hyperparameters``
  (see :mod:`i2i_spandrel.arches`), images in [0, 1];
- ``identify_weights``, asked last (``trylast``): a published file that no i2i layout claims and
  that spandrel recognises opens as one of them (``i2i.load("4x_SwinIR.pth")``);
- ``export_module``: LaMa's FFT layers exported as real DFT matrix products (:mod:`i2i_spandrel.fft`),
  and a one-line reason for architectures that do not export (:data:`i2i_spandrel.table.NO_ONNX`);
- the zoo entry ``big-lama`` (:mod:`i2i_spandrel.zoo`).

spandrel is an optional dependency (``pip install 'i2i[spandrel]'``); without it this plugin
registers nothing. Non-commercial architectures appear only with ``spandrel-extra-arches``.
"""

from __future__ import annotations

import importlib.util

import i2i

SPANDREL_RANGE = (0.0, 1.0)


def available() -> bool:
    """Whether spandrel is installed (without importing it, or torch)."""
    return importlib.util.find_spec("spandrel") is not None


#: the tiny instances the conformance suite builds (spandrel's own classes, small hyperparameters)
TINY_COMPACT = {"arch": "Compact", "net": "SRVGGNetCompact",
                "hyperparameters": {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4,
                                    "act_type": "prelu"}}
TINY_LAMA = {"arch": "LaMa", "net": "LaMa", "hyperparameters": {"in_nc": 4, "out_nc": 3}}


def _describe(module):  # noqa: ANN001, ANN202 - an nn.Module; torch is imported lazily
    describe = getattr(module, "describe", None)
    return describe() if callable(describe) and type(module).__name__ == "SpandrelNet" else {}


def _summary() -> str:
    from .arches import catalogue

    cat = catalogue()
    extra = sum(a.package != "spandrel" for a in cat.values())
    note = f", {extra} non-commercial" if extra else "; non-commercial ones with spandrel-extra-arches"
    return f"{len(cat)} architectures{note}: docs/spandrel.md"


#: spandrel's inpainting architectures (image + mask); every other one is image -> image
INPAINTING = frozenset({"LaMa", "MAT"})


def _variants(inpainting: bool):  # noqa: ANN202 - [(name, description)] for `i2i list generators`
    from .arches import catalogue

    return [(a.id, f"spandrel's {a.id}, {a.license}: a file of it opens as is; build one with "
                   f"generator_kwargs.arch={a.id}")
            for a in catalogue().values() if (a.id in INPAINTING) == inpainting]


@i2i.hookimpl
def register_generators(register) -> None:
    if not available():
        return
    from .arches import build

    register("spandrel", build, value_range=SPANDREL_RANGE, scale=4, describe=_describe,
             test_kwargs=TINY_COMPACT, test_size=32,
             variants=lambda: _variants(False),
             description=f"any spandrel image model (ESRGAN, SwinIR, HAT, DAT, SPAN ...; {_summary()}), "
                         f"rebuilt from generator_kwargs arch/net/hyperparameters; images in [0, 1]")
    register("spandrel_inpaint", build, value_range=SPANDREL_RANGE, scale=1, describe=_describe,
             extra_inputs=[{"name": "mask", "channels": 1, "description": "1 = hole"}],
             test_kwargs=TINY_LAMA, test_size=32, test_size_multiple=8, tiling="whole_image",
             variants=lambda: _variants(True),
             description="any spandrel inpainting model (LaMa; MAT with spandrel-extra-arches): image + mask")


@i2i.hookimpl(trylast=True)
def identify_weights(state: dict):
    """Whatever spandrel recognises, after every i2i layout had its turn."""
    if not available():
        return None
    from .arches import identify

    return identify(state)


@i2i.hookimpl
def export_module(module, meta):  # noqa: ANN001, ANN201 - torch types, imported lazily
    """LaMa's Fourier units as DFT matrix products on a copy; a clear refusal for what cannot export."""
    if type(module).__name__ != "SpandrelNet":
        return None
    import copy

    from .fft import substitute
    from .table import refuse_export

    refuse_export(module.arch)
    clone = copy.deepcopy(module)
    return clone if substitute(clone) else None


@i2i.hookimpl
def register_models(register) -> None:
    if not available():
        return
    from .zoo import ZOO

    for name, entry in ZOO.items():
        register(name, **entry)
