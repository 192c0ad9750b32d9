"""Registries: names -> specs per kind; clashes name both plugins; unknown names suggest matches."""

from __future__ import annotations

import pytest
from torch import nn

from i2i.errors import I2IError, UnknownNameError, close_matches, did_you_mean
from i2i.registry import GeneratorSpec, InputSpec, LossSpec, Registry


def _filled() -> Registry[GeneratorSpec]:
    reg: Registry[GeneratorSpec] = Registry("generator", GeneratorSpec)
    for plugin, name in [("p2p", "unet_256"), ("p2p", "unet_128"), ("cg", "resnet_9blocks"), ("sr", "srresnet")]:
        reg.add(reg.make_spec(plugin, name, nn.Identity))
    return reg


def test_name_clash_is_an_error_naming_both_plugins() -> None:
    reg = _filled()
    with pytest.raises(I2IError) as err:
        reg.add(reg.make_spec("third_party", "unet_256", nn.Identity))
    message = str(err.value)
    assert "'unet_256'" in message and "'p2p'" in message and "'third_party'" in message
    assert "I2I_BLOCK_PLUGINS" in message  # says what to do
    assert reg.get("unet_256").plugin == "p2p"  # the first registration stays


def test_unknown_name_suggests_the_closest() -> None:
    reg = _filled()
    with pytest.raises(UnknownNameError) as err:
        reg.get("unet256")
    message = str(err.value)
    assert message.startswith("unknown generator 'unet256'")
    assert "did you mean: unet_256" in message
    assert "i2i list generators" in message
    assert isinstance(err.value, KeyError)  # `except KeyError` callers keep working
    with pytest.raises(UnknownNameError) as err:
        reg.create("srresnt")
    assert "srresnet" in str(err.value)


def test_close_matches_falls_back_to_substrings() -> None:
    names = ["unet_128", "unet_256", "resnet_9blocks"]
    assert set(close_matches("unet", names)) == {"unet_128", "unet_256"}
    assert did_you_mean("zzz", names) == ""
    assert did_you_mean("resnet_9block", names) == " (did you mean: resnet_9blocks?)"


def test_wildcards() -> None:
    reg = _filled()
    assert [s.name for s in reg.list("unet*")] == ["unet_128", "unet_256"]
    assert [s.name for s in reg.list("*res*")] == ["resnet_9blocks", "srresnet"]
    assert [s.name for s in reg.list("unet_?28")] == ["unet_128"]
    assert reg.list("nothing*") == []
    assert reg.list("UNET*") == []  # case-sensitive, like the names
    assert reg.names() == ["resnet_9blocks", "srresnet", "unet_128", "unet_256"]
    assert [s.name for s in reg] == reg.names() and len(reg) == 4 and "srresnet" in reg


def test_unknown_cfg_field_is_an_error_naming_the_plugin() -> None:
    reg = _filled()
    with pytest.raises(I2IError, match=r"plugin 'p2p' registered generator 'x' with unknown field 'size_mutliple' "
                                        r"\(did you mean: size_multiple"):
        reg.make_spec("p2p", "x", nn.Identity, size_mutliple=4)


def test_spec_fields_and_create_with_overrides() -> None:
    reg: Registry[GeneratorSpec] = Registry("generator", GeneratorSpec)
    spec = reg.make_spec("inp", "masked", nn.Conv2d, in_channels=3, extra_inputs=[{"name": "mask", "channels": 1}],
                         test_kwargs={"in_channels": 4, "out_channels": 3, "kernel_size": 1})
    reg.add(spec)
    assert spec.plugin == "inp" and spec.extra_inputs == (InputSpec("mask", 1),)
    net = reg.create("masked", in_channels=4, out_channels=3, kernel_size=3)
    assert isinstance(net, nn.Conv2d) and net.kernel_size == (3, 3)

    losses: Registry[LossSpec] = Registry("loss", LossSpec)
    losses.add(losses.make_spec("l", "l1", nn.L1Loss, kind="pixel"))
    assert losses.get("l1").kind == "pixel" and isinstance(losses.create("l1"), nn.L1Loss)


def test_an_unknown_name_found_in_a_description_is_suggested() -> None:
    from i2i.registry import losses

    with pytest.raises(UnknownNameError, match=r"unknown loss 'relativistic' \(did you mean: ragan\?\); see `i2i list losses`"):
        losses().get("relativistic")


def test_a_qualified_name_of_a_missing_plugin_says_so_and_suggests_no_other_network() -> None:
    reg = _filled()
    with pytest.raises(UnknownNameError) as err:
        reg.get("clashr16:unet_256")  # a checkpoint made with a plugin since uninstalled
    assert str(err.value) == (
        "generator 'unet_256' of plugin 'clashr16', which is not installed (or blocked, or registers no generators); "
        "install it, or unblock it (I2I_BLOCK_PLUGINS, I2I_PLUGINS; `i2i plugins` lists what is loaded); "
        "p2p:unet_256 is a different network of that name, not a replacement")
    with pytest.raises(UnknownNameError, match=r"^generator 'tiny' of plugin 'gone', which is not installed .*loaded\)$"):
        reg.get("gone:tiny")
    with pytest.raises(UnknownNameError, match=r"^plugin 'p2p' has no generator 'unet_512' \(did you mean: unet_128, "
                                               r"unet_256\?\); `i2i list generators` shows"):
        reg.get("p2p:unet_512")
    with pytest.raises(UnknownNameError, match=r"^plugin 'sr' has no generator 'unet_256' \(its generators: srresnet\); "
                                               r".* \(or install the version of 'sr' that had it\); p2p:unet_256 is a "
                                               r"different network of that name, not a replacement$"):
        reg.get("sr:unet_256")
    assert reg.get("p2p:unet_256").plugin == "p2p" and reg.get("sr:srresnet").name == "srresnet"


def test_recorded_never_swaps_in_another_plugins_network() -> None:
    reg = _filled()
    assert reg.recorded("unet_256") == "unet_256" and reg.recorded("unet_256", "p2p") == "unet_256"
    assert reg.recorded("clashr16:unet_256", "clashr16") == "clashr16:unet_256"  # get() says what is missing
    with pytest.raises(UnknownNameError, match="^generator 'unet_256' of plugin 'clashr16', which is not installed"):
        reg.recorded("unet_256", "clashr16")  # made by clashr16's unet_256, not p2p's
    with pytest.raises(UnknownNameError, match="^generator 'srresnet' of plugin 'i2i_srgan', which is not installed"):
        reg.recorded("srresnet", "i2i_srgan")  # i2i's own plugin blocked: a third party's srresnet is not it

    builtins: Registry[GeneratorSpec] = Registry("generator", GeneratorSpec)
    builtins.add(builtins.make_spec("i2i_cyclegan", "unet_256", nn.Identity))
    assert builtins.recorded("unet_256", "i2i_pix2pix") == "unet_256"  # moved between i2i's own plugins
