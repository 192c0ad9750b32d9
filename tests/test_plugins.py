"""The plugin manager: built-ins and entry points through one set of hooks, isolation, allow/block lists.

Fake plugins are module objects put in ``sys.modules`` and loaded as built-ins of a fresh
:class:`PluginHost`; the example packages under examples/ are found through their real
entry points (``i2i.testing.plugin_paths`` makes them visible on ``sys.path``).
"""

from __future__ import annotations

import sys
import types
import warnings
from pathlib import Path
from typing import Any, Callable

import click
import pytest
import torch
from torch import nn

import i2i
from i2i import plugins
from i2i.errors import I2IError
from i2i.plugins import BUILTIN_PLUGINS, PluginHost, PluginWarning
from i2i.testing import plugin_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


pytestmark = pytest.mark.usefixtures("clean_plugin_env")


def fake_plugin(monkeypatch: pytest.MonkeyPatch, module: str, **hooks: Callable[..., Any]) -> str:
    """A plugin module named ``module`` whose attributes are the given functions as @i2i.hookimpl."""
    mod = types.ModuleType(module)
    for attr, fn in hooks.items():
        setattr(mod, attr, i2i.hookimpl(fn))
    monkeypatch.setitem(sys.modules, module, mod)
    return module


def gens(*names: str) -> Callable[..., None]:
    def register_generators(register: Any) -> None:
        for name in names:
            register(name, nn.Identity)

    return register_generators


def host(builtins: dict[str, str], entry_points: bool = False) -> PluginHost:
    return PluginHost(builtins=builtins, entry_points=entry_points)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The example and the broken plugin packages, discoverable through their entry points."""
    for project in ("i2i-example-plugin", "i2i-broken-plugin"):
        for p in plugin_paths(EXAMPLES / project, tmp_path / "site"):
            monkeypatch.syspath_prepend(str(p))
    yield
    for name in [m for m in sys.modules if m.split(".")[0] in ("i2i_example", "i2i_broken")]:
        del sys.modules[name]


# --------------------------------------------------------------------------- names


def test_two_plugins_claiming_one_name_is_an_error_naming_both(monkeypatch: pytest.MonkeyPatch) -> None:
    a = fake_plugin(monkeypatch, "fake_a", register_generators=gens("shared", "only_a"))
    b = fake_plugin(monkeypatch, "fake_b", register_generators=gens("shared"))
    h = host({"plugin_a": a, "plugin_b": b})
    with pytest.warns(PluginWarning, match="'shared' is registered twice and is off: by plugin 'plugin_[ab]' and by plugin 'plugin_[ab]'"):
        reg = h.registry("generator")
    # only that name is off: everything else works, and each claim is reachable by its qualified name
    assert reg.names() == ["only_a"] and reg.get("only_a").plugin == "plugin_a"
    with pytest.raises(I2IError) as err:
        reg.get("shared")
    assert "'plugin_a'" in str(err.value) and "'plugin_b'" in str(err.value) and "plugin_b:shared" in str(err.value)
    assert reg.get("plugin_a:shared").plugin == "plugin_a" and reg.get("plugin_b:shared").plugin == "plugin_b"
    assert reg.get("plugin_a:only_a").name == "only_a"
    # blocking one of them, as the message says, resolves it
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "plugin_b")
    reg = host({"plugin_a": a, "plugin_b": b}).registry("generator")
    assert reg.names() == ["only_a", "shared"] and reg.get("shared").plugin == "plugin_a"


def test_one_plugin_registering_a_name_twice_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    a = fake_plugin(monkeypatch, "fake_a", register_losses=lambda register: [register("l1", nn.L1Loss, kind="pixel"),
                                                                             register("l1", nn.L1Loss, kind="pixel")])
    with pytest.warns(PluginWarning, match="'l1' is registered twice and is off: by plugin 'plugin_a' and by plugin 'plugin_a'"):
        reg = host({"plugin_a": a}).registry("loss")
    with pytest.raises(I2IError, match="'l1' is registered twice"):
        reg.get("l1")


def test_registry_records_the_provider_and_an_unknown_name_suggests(monkeypatch: pytest.MonkeyPatch) -> None:
    a = fake_plugin(monkeypatch, "fake_a", register_generators=gens("unet_256", "unet_128"))
    reg = host({"plugin_a": a}).registry("generator")
    assert {s.plugin for s in reg} == {"plugin_a"}
    with pytest.raises(I2IError, match=r"unknown generator 'unet_265' \(did you mean: unet_256"):
        reg.get("unet_265")


# --------------------------------------------------------------------------- broken plugins


def test_plugin_that_fails_to_import_gives_one_warning_and_the_rest_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    good = fake_plugin(monkeypatch, "fake_good", register_generators=gens("good_net"))
    later = fake_plugin(monkeypatch, "fake_later", register_generators=gens("later_net"))
    with pytest.warns(PluginWarning) as record:
        h = host({"good": good, "bad": "i2i_no_such_module_anywhere", "later": later})
    # Only plugin warnings count: a ResourceWarning from an earlier test's garbage can land here too.
    plugin_warnings = [str(r.message) for r in record if issubclass(r.category, PluginWarning)]
    assert len(plugin_warnings) == 1, plugin_warnings
    message = plugin_warnings[0]
    assert message == ("plugin 'bad' skipped: ModuleNotFoundError: No module named 'i2i_no_such_module_anywhere'")
    assert set(h.info) == {"good", "later"}
    assert h.registry("generator").names() == ["good_net", "later_net"]


def test_plugin_whose_hook_raises_gives_one_warning_and_the_rest_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(register: Any) -> None:
        register("half_done", nn.Identity)
        raise RuntimeError("boom")

    good = fake_plugin(monkeypatch, "fake_good", register_generators=gens("good_net"))
    bad = fake_plugin(monkeypatch, "fake_bad", register_generators=broken,
                      register_losses=lambda register: register("bad_l1", nn.L1Loss, kind="pixel"))
    h = host({"good": good, "bad": bad})
    with pytest.warns(PluginWarning) as record:
        reg = h.registry("generator")
    assert [str(r.message) for r in record if issubclass(r.category, PluginWarning)] == [
        "plugin 'bad' skipped in register_generators: RuntimeError: boom"]
    assert reg.names() == ["good_net"]  # the broken hook's half-done registration is dropped too
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        assert h.registry("loss").names() == ["bad_l1"]  # its working hook still counts
        assert h.registry("generator").names() == ["good_net"]  # built once: no second warning


def test_bad_register_call_is_isolated_like_any_raising_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = fake_plugin(monkeypatch, "fake_bad", register_generators=lambda register: register("x", nn.Identity, chanels=3))
    good = fake_plugin(monkeypatch, "fake_good", register_generators=gens("good_net"))
    with pytest.warns(PluginWarning, match="plugin 'bad' skipped in register_generators: .*unknown field 'chanels'"):
        assert host({"bad": bad, "good": good}).registry("generator").names() == ["good_net"]


def test_misspelt_hook_implementation_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    typo = fake_plugin(monkeypatch, "fake_typo", register_generator=gens("x"))
    with pytest.raises(I2IError) as err:
        host({"typo": typo})
    message = str(err.value)
    assert "plugin 'typo' implements unknown hook 'register_generator'" in message
    assert "did you mean: register_generators" in message and "I2I_BLOCK_PLUGINS=typo" in message

    other = fake_plugin(monkeypatch, "fake_other", regster_losses=gens("x"))
    with pytest.raises(I2IError, match="unknown hook 'regster_losses' .*did you mean: register_losses"):
        host({"other": other})


def test_hook_implementation_with_wrong_arguments_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = fake_plugin(monkeypatch, "fake_wrong", register_generators=lambda reg: None)
    with pytest.raises(I2IError, match="plugin 'wrong' has a hook implementation that does not match its hookspec"):
        host({"wrong": wrong})


def test_plugin_may_not_replace_another_command(monkeypatch: pytest.MonkeyPatch) -> None:
    @click.group()
    def root() -> None:
        """root"""

    @root.command("train")
    def train() -> None:
        """the host's train"""

    def hijack(cli: click.Group) -> None:
        cli.add_command(click.Command("train", help="impostor"))
        cli.add_command(click.Command("extra", help="fine"))

    def crash(cli: click.Group) -> None:
        cli.add_command(click.Command("half", help="half"))
        raise ValueError("no")

    h = host({"hijack": fake_plugin(monkeypatch, "fake_hijack", register_commands=hijack),
              "crash": fake_plugin(monkeypatch, "fake_crash", register_commands=crash)})
    with pytest.warns(PluginWarning) as record:
        h.add_commands(root)
    messages = sorted(str(r.message) for r in record if issubclass(r.category, PluginWarning))
    assert messages == ["plugin 'crash' skipped in register_commands: ValueError: no",
                        "plugin 'hijack' tried to replace command 'train' of 'i2i'; kept the original"]
    assert root.commands["train"] is train and sorted(root.commands) == ["extra", "train"]


# --------------------------------------------------------------------------- built-ins, block and allow lists


def test_builtins_load_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        h = PluginHost(entry_points=False)
        for kind in ("generator", "discriminator", "loss", "method", "dataset", "model"):
            h.registry(kind)
    assert set(h.info) == set(BUILTIN_PLUGINS)
    assert all(p.builtin and p.version == i2i.__version__ for p in h.info.values())
    assert "register_generators" in h.info["i2i_pix2pix"].hooks
    assert h.registry("generator").get("unet_256").plugin == "i2i_pix2pix"


def test_block_list_blocks_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "i2i_pix2pix, i2i_srgan")
    h = PluginHost(entry_points=False)
    assert "i2i_pix2pix" not in h.info and "i2i_srgan" not in h.info and "i2i_losses" in h.info
    gens_ = h.registry("generator")
    assert "unet_256" not in gens_ and "srresnet" not in gens_
    assert h.pm.is_blocked("i2i_pix2pix")


def test_a_builtin_may_be_blocked_without_its_prefix_and_an_unknown_name_is_a_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "cpu,srgan")  # the names issue 15 and users write
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        h = PluginHost()
    assert "i2i_cpu" not in h.info and "i2i_srgan" not in h.info and "i2i_pix2pix" in h.info
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "i2i_cpux")
    with pytest.warns(PluginWarning, match="I2I_BLOCK_PLUGINS names 'i2i_cpux', which no installed plugin is "
                                           r"called \(did you mean: i2i_cpu\?\)"):
        h = PluginHost()
    assert "i2i_cpu" in h.info


def test_entry_point_plugins_are_found_with_their_version(installed: None) -> None:
    with pytest.warns(PluginWarning) as record:
        h = PluginHost()
    # broken_import fails at import: one warning; broken_hook imports fine. (pytest.warns records every
    # warning, including a ResourceWarning the garbage collector may raise for another test's object.)
    plugin_warnings = [r for r in record if issubclass(r.category, PluginWarning)]
    assert [str(r.message).split(":")[0] for r in plugin_warnings] == ["plugin 'broken_import' skipped"]
    info = h.info["example"]
    assert (info.version, info.builtin, info.module) == ("0.2.0", False, "i2i_example")
    assert info.hooks == ["register_commands", "register_generators"]
    with pytest.warns(PluginWarning, match="plugin 'broken_hook' skipped in register_generators: RuntimeError"):
        reg = h.registry("generator")
    spec = reg.get("example_resnet")
    assert spec.plugin == "example" and "broken_identity" not in reg and "unet_256" in reg
    assert "broken_plugin_l1" in h.registry("loss")
    net = reg.create("example_resnet", ngf=4, n_blocks=1).eval()
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    y = net(x)
    assert y.shape == x.shape and y.abs().max() <= 1


def test_allow_list_and_block_list_for_entry_points(installed: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_PLUGINS", "example")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # the broken ones are not even imported
        h = PluginHost()
        assert "example_resnet" in h.registry("generator")
    assert "example" in h.info and "broken_hook" not in h.info and "i2i_pix2pix" in h.info  # built-ins stay

    monkeypatch.setenv("I2I_PLUGINS", "")
    h = PluginHost()
    assert not [p for p in h.info.values() if not p.builtin]

    monkeypatch.setenv("I2I_PLUGINS", "exampel,pix2pix")
    with pytest.warns(PluginWarning) as record:
        PluginHost()
    said = sorted(str(r.message) for r in record if issubclass(r.category, PluginWarning))
    assert said == ["I2I_PLUGINS names 'exampel', which no installed plugin is called (did you mean: example?)",
                    "I2I_PLUGINS names 'pix2pix', which no installed plugin is called (built-ins always load: "
                    "it selects installed plugins)"]

    monkeypatch.delenv("I2I_PLUGINS")
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "example,broken_import,broken_hook")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        h = PluginHost()
    assert "example" not in h.info and "example_resnet" not in h.registry("generator")


def test_manager_is_shared_until_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    first = plugins.manager()
    assert plugins.manager() is first
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "i2i_srgan")
    assert "i2i_srgan" in plugins.manager().info  # the environment is read once per process
    plugins.reset()
    assert "i2i_srgan" not in plugins.manager().info


def install_unet_256_clasher(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the plugin host the built-ins plus a package 'clasher' that registers unet_256 again
    (undo with plugins.reset())."""
    clasher = fake_plugin(monkeypatch, "fake_clasher", register_generators=gens("unet_256"))
    with pytest.warns(PluginWarning, match="'unet_256' is registered twice and is off"):
        host = PluginHost({**BUILTIN_PLUGINS, "clasher": clasher})
        host.registry("generator")
    monkeypatch.setattr(plugins, "_host", host)


def test_a_plugin_claiming_a_builtin_name_breaks_nothing_else(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A third-party package registers unet_256 again: every command still works; the name itself is a
    one-line error naming both plugins, and each claim is usable by its qualified name."""
    from click.testing import CliRunner
    from PIL import Image

    from i2i.cli import cli

    install_unet_256_clasher(monkeypatch)
    try:
        runner = CliRunner()
        res = runner.invoke(cli, ["list", "generators"])
        assert res.exit_code == 0 and "unet_128" in res.output and "resnet_9blocks" in res.output
        assert runner.invoke(cli, ["list", "losses"]).exit_code == 0
        Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
        from i2i.registry import generators

        assert generators().get("i2i_pix2pix:unet_256").plugin == "i2i_pix2pix"
        res = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path), "--max-steps", "1",
                                  "--out-dir", str(tmp_path / "runs")])
        lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert lines and "'i2i_pix2pix'" in lines[-1] and "'clasher'" in lines[-1] and "i2i_pix2pix:unet_256" in lines[-1]
    finally:
        plugins.reset()


def test_a_clash_leaves_checkpoints_and_files_of_that_name_opening(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A generator saved before another plugin claimed its name still opens: by the plugin its metadata
    records, or (older files, zoo models, published weights) by i2i's own claim."""
    import numpy as np

    from i2i.checkpoint import save_generator
    from i2i.loader import build_meta
    from i2i.registry import create_generator, generators

    torch.manual_seed(0)
    net = create_generator("unet_256", ngf=4)
    meta = build_meta("unet_256", {"ngf": 4}, module=net)
    assert meta.info["plugin"] == "i2i_pix2pix"
    save_generator(tmp_path / "new.safetensors", net, meta)
    meta.info.pop("plugin")
    save_generator(tmp_path / "old.safetensors", net, meta)
    x = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    want = i2i.load(tmp_path / "new.safetensors")(x)

    install_unet_256_clasher(monkeypatch)
    try:
        for name in ("new", "old"):
            assert np.array_equal(i2i.load(tmp_path / f"{name}.safetensors")(x), want), name
        assert generators().recorded("unet_256", "clasher") == "clasher:unet_256"
        assert generators().recorded("unet_256") == "i2i_pix2pix:unet_256"
        assert generators().recorded("unet_128") == "unet_128"
        with pytest.raises(I2IError, match="generator 'unet_256' of plugin 'some_other_plugin', which is not installed"):
            generators().recorded("unet_256", "some_other_plugin")  # neither claim is the network it was made with
    finally:
        plugins.reset()


def test_list_shows_a_clashing_name_as_off_with_the_qualified_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """`i2i list generators 'unet*'` with a plugin claiming unet_256 too: a row says the name is off and
    by whom, and one row per claim gives the qualified name to use; --json holds the same rows."""
    import json

    from click.testing import CliRunner

    from i2i.cli import cli

    install_unet_256_clasher(monkeypatch)
    try:
        runner = CliRunner()
        res = runner.invoke(cli, ["list", "generators", "unet*"])
        assert res.exit_code == 0, res.output
        names = [line.split()[0] for line in res.output.splitlines()[2:] if line.strip()]
        assert names == ["unet_128", "unet_256", "clasher:unet_256", "i2i_pix2pix:unet_256"]
        off = next(line for line in res.output.splitlines() if line.startswith("unet_256 "))
        assert "OFF: registered by plugin 'clasher' and 'i2i_pix2pix'" in off
        assert "use clasher:unet_256 or i2i_pix2pix:unet_256" in off
        rows = json.loads(runner.invoke(cli, ["list", "generators", "unet*", "--json"]).output)
        assert [r["name"] for r in rows] == names and rows[1]["description"].startswith("OFF: ")
        assert rows[1]["plugin"] == "clasher, i2i_pix2pix" and rows[3]["multiple"] == 256
        assert {r["plugin"] for r in rows[2:]} == {"clasher", "i2i_pix2pix"}
        for pattern in ("clasher:*", "unet_256"):  # the qualified names match too; only the clash is listed
            rows = json.loads(runner.invoke(cli, ["list", "generators", pattern, "--json"]).output)
            assert [r["name"] for r in rows] == names[1:], pattern
    finally:
        plugins.reset()


def test_a_checkpoint_of_an_uninstalled_plugin_names_it_and_never_opens_another_network(tmp_path: Path) -> None:
    """Made with clasher:unet_256 (or recorded as unet_256 of plugin clasher), then clasher is uninstalled:
    every door says the plugin is missing, and never builds i2i_pix2pix's unet_256 in its place (whose
    weights would even fit here) or suggests it as a spelling fix."""
    from click.testing import CliRunner
    from PIL import Image

    from i2i.checkpoint import save_generator
    from i2i.cli import cli
    from i2i.loader import build_meta
    from i2i.registry import create_generator

    net = create_generator("unet_256", ngf=4)
    for name, label in (("clasher:unet_256", "qualified"), ("unet_256", "bare")):
        meta = build_meta("unet_256", {"ngf": 4}, module=net)
        meta.name, meta.info["plugin"] = name, "clasher"
        save_generator(tmp_path / f"{label}.safetensors", net, meta)
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    want = ("generator 'unet_256' of plugin 'clasher', which is not installed (or blocked, or registers no "
            "generators); install it, or unblock it")
    runner = CliRunner()
    for label in ("qualified", "bare"):
        weights = str(tmp_path / f"{label}.safetensors")
        with pytest.raises(I2IError) as err:
            i2i.load(weights)
        assert str(err.value).startswith(want) and "did you mean" not in str(err.value), label
        assert "i2i_pix2pix:unet_256 is a different network of that name, not a replacement" in str(err.value)
        for args in (["translate", str(tmp_path / "a.png"), "--checkpoint", weights, "--out", str(tmp_path / "out")],
                     ["export", weights, "-o", str(tmp_path / "m.onnx")]):
            res = runner.invoke(cli, args)
            assert res.exit_code == 1 and "Traceback" not in res.output, (label, args, res.output)
            assert res.output.strip().splitlines()[-1] == f"Error: {err.value}", (label, args)
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()


def test_a_run_resumes_while_another_plugin_claims_its_generator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run of unet_256 started before a package that registers unet_256 again was installed resumes
    with the network it was made with (its checkpoint records the plugin), not the clash error."""
    from click.testing import CliRunner

    from i2i.cli import cli
    from tiny_pix2pix import copy_facades, needs_facades

    if needs_facades.args[0]:
        pytest.skip("../shared/datasets/facades not present")
    data = copy_facades(tmp_path / "facades", 2)
    runs = str(tmp_path / "runs")
    tiny = ["--set", "generator=unet_256", "--set", "generator_kwargs.ngf=4", "--set", "discriminator_kwargs.ndf=4",
            "--set", "num_workers=0", "--set", "n_epochs=2", "--set", "n_epochs_decay=0", "--set", "save_every_minutes=0"]
    first = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(data), "--out-dir", runs, "--name", "r",
                                     "--max-steps", "1", *tiny])
    assert first.exit_code == 0, first.output
    install_unet_256_clasher(monkeypatch)
    try:
        res = CliRunner().invoke(cli, ["train", "pix2pix", "--out-dir", runs, "--name", "r", "--resume", "--max-steps", "2"])
        assert res.exit_code == 0 and "resuming from step 1" in res.output, res.output
        new = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(data), "--out-dir", runs, "--name", "n",
                                       "--max-steps", "1", *tiny])
        assert new.exit_code != 0 and "registered twice" in new.output  # something new with the bare name: the clash
    finally:
        plugins.reset()
