"""The host's commands as a user runs them: --version, plugins, list; an installed third-party plugin.

Installed plugins run in a subprocess whose PYTHONPATH holds a ``*.dist-info`` with the example
package's real entry points (``i2i.testing.plugin_paths``): no pip, no network, nothing left in
the environment. One test also builds and installs the example with pip into a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

import i2i
from i2i import plugins
from i2i.cli import cli
from i2i.plugins import BUILTIN_PLUGINS, PluginWarning
from i2i.registry import registry
from i2i.testing import plugin_paths

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


pytestmark = pytest.mark.usefixtures("clean_plugin_env")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), prog_name="i2i")


# --------------------------------------------------------------------------- built-ins, in process


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"i2i, version {i2i.__version__}"


def test_plugins_lists_builtins_with_versions() -> None:
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["plugin", "version", "source", "hooks"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(BUILTIN_PLUGINS) <= set(rows)
    for name in BUILTIN_PLUGINS:
        assert rows[name][1:3] == [i2i.__version__, "built-in"]
    assert "generators" in " ".join(rows["i2i_pix2pix"][3:])

    data = json.loads(invoke("plugins", "--json").output)
    by_name = {p["name"]: p for p in data}
    assert set(BUILTIN_PLUGINS) <= set(by_name)
    assert by_name["i2i_pix2pix"]["version"] == i2i.__version__ and by_name["i2i_pix2pix"]["builtin"] is True
    assert "register_generators" in by_name["i2i_pix2pix"]["hooks"]


def test_plugins_respects_the_block_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "i2i_srgan")
    result = invoke("plugins")
    assert result.exit_code == 0 and "i2i_srgan" not in result.output and "i2i_pix2pix" in result.output
    assert "srresnet" not in invoke("list", "generators").output


def test_list_with_a_wildcard() -> None:
    result = invoke("list", "generators", "unet*")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in result.output.splitlines()[2:]]
    assert names == ["unet_128", "unet_256"]
    data = json.loads(invoke("list", "generators", "unet*", "--json").output)
    assert [(d["name"], d["plugin"], d["multiple"]) for d in data] == [("unet_128", "i2i_pix2pix", 128),
                                                                      ("unet_256", "i2i_pix2pix", 256)]


def test_list_nothing_matches_suggests_and_fails() -> None:
    result = invoke("list", "generators", "nosuch")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "no generators match 'nosuch' (registered: " in result.output  # nothing close: names to try
    shown = result.output.split("registered: ")[1].split(")")[0].split(", ")
    assert shown and set(shown) - {"..."} <= set(registry("generator").names())

    result = invoke("list", "generators", "unet")
    assert result.exit_code == 1 and "did you mean: " in result.output and "unet_256" in result.output
    result = invoke("list", "losses", "lsgn")
    assert result.exit_code == 1 and "did you mean: lsgan" in result.output


def test_unknown_names_in_other_commands_suggest_the_closest() -> None:
    result = invoke("train", "pix2px", "--data", "facades")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == ("Error: unknown method 'pix2px' (did you mean: pix2pix?); see `i2i list methods`\n")


def test_list_a_kind_nobody_registers(monkeypatch: pytest.MonkeyPatch) -> None:
    providers = [p.name for p in plugins.manager().info.values() if "register_datasets" in p.hooks]
    assert providers
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", ",".join(providers))
    plugins.reset()
    result = invoke("list", "datasets")
    assert result.exit_code == 1
    assert result.output == "Error: no datasets are registered; `i2i plugins` shows which plugins are loaded\n"


@pytest.mark.parametrize("kind", ["generators", "discriminators", "losses", "methods", "datasets", "models"])
def test_list_every_kind(kind: str) -> None:
    result = invoke("list", kind)
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) >= 3  # header, rule, at least one entry
    assert json.loads(invoke("list", kind, "--json").output)


def test_list_unknown_kind_and_unknown_command() -> None:
    result = invoke("list", "generatrs")
    assert result.exit_code == 2 and "generators" in result.output
    result = invoke("plugin")
    assert result.exit_code == 2 and "no command 'plugin' (did you mean: plugins" in result.output


def test_every_command_has_help_text() -> None:
    ctx = click.Context(cli, info_name="i2i")
    missing = []

    def walk(group: click.Group, prefix: str, ctx: click.Context) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None
            if not (cmd.help or cmd.short_help or "").strip():
                missing.append(f"{prefix} {name}")
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix} {name}", click.Context(cmd, info_name=name, parent=ctx))

    walk(cli, "i2i", ctx)
    assert not missing, f"commands without help text: {missing}"
    for name in ("plugins", "list", "train", "translate", "eval"):
        assert name in cli.list_commands(ctx)


# --------------------------------------------------------------------------- installed plugins


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """The example plugin package on sys.path with its entry points, and `cli` as a new process has it."""
    for p in plugin_paths(EXAMPLES / "i2i-example-plugin", tmp_path / "site"):
        monkeypatch.syspath_prepend(str(p))
    plugins.reset()  # a new host: `cli` drops the old host's plugin commands and adds the new one's
    yield
    plugins.reset()
    for name in [m for m in sys.modules if m.split(".")[0] in ("i2i_example", "i2i_broken")]:
        del sys.modules[name]


def test_installed_plugin_is_listed_usable_and_adds_its_command(installed: None) -> None:
    result = invoke("plugins")
    assert result.exit_code == 0, result.output
    row = next(line.split() for line in result.output.splitlines() if line.startswith("example "))
    assert row == ["example", "0.2.0", "installed", "commands,", "generators"]
    assert "count-params" in invoke("--help").output

    # its generator is usable by name: through the host's registry, listing and the plugin's own command
    net = registry("generator").create("example_resnet", ngf=4, n_blocks=1)
    result = invoke("count-params", "example_resnet", "--set", "ngf=4", "--set", "n_blocks=1")
    assert result.exit_code == 0, result.output
    # 7x7 3->4 conv + its norm, one block of two 3x3 4->4 convs and two norms, 7x7 4->3 conv
    expected = (3 * 4 * 49 + 4) + 2 * 4 + 2 * (4 * 4 * 9 + 4 + 2 * 4) + (4 * 3 * 49 + 3)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert result.output.strip() == f"example_resnet: {expected:,} trainable parameters"
    result = invoke("count-params", "example_resnt")
    assert result.exit_code == 1 and "did you mean: example_resnet" in result.output
    result = invoke("list", "generators", "example*", "--json")
    assert [(d["name"], d["plugin"]) for d in json.loads(result.output)] == [("example_resnet", "example")]


@pytest.mark.filterwarnings("ignore:I2I_PLUGINS names 'other', which no installed plugin is called")
@pytest.mark.parametrize("env", [{"I2I_BLOCK_PLUGINS": "example"}, {"I2I_PLUGINS": ""}, {"I2I_PLUGINS": "other"}])
def test_blocked_plugin_is_not_listed_and_its_command_is_gone(
    installed: None, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    result = invoke("plugins", "--json")
    assert result.exit_code == 0, result.output
    assert "example" not in {p["name"] for p in json.loads(result.output)}
    assert "count-params" not in invoke("--help").output
    result = invoke("count-params", "unet_256")
    assert result.exit_code == 2 and "no command 'count-params'" in result.output
    assert "example_resnet" not in invoke("list", "generators").output


def test_broken_plugin_does_not_take_the_cli_down(installed: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for p in plugin_paths(EXAMPLES / "i2i-broken-plugin", tmp_path / "site"):
        monkeypatch.syspath_prepend(str(p))
    with pytest.warns(PluginWarning) as record:
        result = invoke("plugins")
    assert result.exit_code == 0, result.output
    assert [str(r.message) for r in record if issubclass(r.category, PluginWarning)] == [
        "plugin 'broken_import' skipped: ModuleNotFoundError: No module named 'i2i_a_dependency_that_is_not_installed'"]
    rows = {line.split()[0]: line.split()[2] for line in result.output.splitlines()[2:]}
    assert set(rows) == set(BUILTIN_PLUGINS) | {"example", "broken_hook", "broken_import"}
    assert rows["broken_import"] == "skipped" and "i2i_a_dependency_that_is_not_installed" in result.output
    with pytest.warns(PluginWarning, match="plugin 'broken_hook' skipped in register_generators: RuntimeError"):
        assert invoke("count-params", "unet_128").exit_code == 0  # the registries load, minus the broken hook


def run_i2i(*args: str, paths: list[Path]) -> subprocess.CompletedProcess[str]:
    """`i2i ARGS` in a fresh interpreter, as a user runs it, with ``paths`` on PYTHONPATH."""
    environ = {k: v for k, v in os.environ.items() if k not in ("I2I_BLOCK_PLUGINS", "I2I_PLUGINS")}
    environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    environ["PYTHONPATH"] = os.pathsep.join([*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", "from i2i.cli import main; main()", *args],
                          env=environ, capture_output=True, text=True, timeout=120)


def test_broken_plugins_warn_one_line_each_in_a_real_process(tmp_path: Path) -> None:
    site = tmp_path / "site"
    paths = [*plugin_paths(EXAMPLES / "i2i-example-plugin", site), plugin_paths(EXAMPLES / "i2i-broken-plugin", site)[1]]
    result = run_i2i("list", "generators", paths=paths)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "i2i: warning: plugin 'broken_import' skipped: ModuleNotFoundError: "
        "No module named 'i2i_a_dependency_that_is_not_installed'",
        "i2i: warning: plugin 'broken_hook' skipped in register_generators: RuntimeError: "
        "this hook is broken on purpose",
    ]
    names = {line.split()[0] for line in result.stdout.splitlines()[2:]}
    assert {"example_resnet", "unet_256"} <= names and "broken_identity" not in names


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building the example needs setuptools")
def test_example_builds_and_installs_with_pip(tmp_path: Path) -> None:
    """The example's pyproject is a real package: pip builds it (offline) and `i2i` finds it."""
    project = shutil.copytree(EXAMPLES / "i2i-example-plugin", tmp_path / "project",
                              ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--no-index", "--target", str(site), str(project)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})  # no network at all
    assert pip.returncode == 0, pip.stderr
    assert not (site / "i2i_example" / "__init__.py").is_symlink() and (site / "i2i_example" / "network.py").is_file()
    result = run_i2i("plugins", "--json", paths=[site])
    assert result.returncode == 0 and result.stderr == "", result.stderr
    example = next(p for p in json.loads(result.stdout) if p["name"] == "example")
    assert example["version"] == "0.2.0" and example["builtin"] is False
    assert example["module"] == "i2i_example" and example["hooks"] == ["register_commands", "register_generators"]


def test_misspelt_hook_in_a_plugin_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    import types

    from i2i.cli import main

    typo = types.ModuleType("fake_typo_plugin")
    typo.register_generator = i2i.hookimpl(lambda register: None)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_typo_plugin", typo)
    monkeypatch.setitem(BUILTIN_PLUGINS, "typo", "fake_typo_plugin")
    for argv in (["i2i", "--help"], ["i2i", "plugins"]):
        plugins.reset()
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exit_:
            main()
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert err == ("Error: plugin 'typo' implements unknown hook 'register_generator' (did you mean: "
                       "register_generators?); fix the plugin or block it with I2I_BLOCK_PLUGINS=typo\n")
    monkeypatch.setenv("I2I_BLOCK_PLUGINS", "typo")  # the way out the message gives
    plugins.reset()
    assert invoke("plugins").exit_code == 0


def test_help_and_plugins_do_not_import_torch() -> None:
    """Plugins import their networks inside the hooks: `i2i --help` stays fast and a serving install needs no torch."""
    code = ("import sys\nfrom click.testing import CliRunner\nfrom i2i.cli import cli\n"
            "for args in (['--help'], ['plugins'], ['eval', '--help']):\n"
            "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'albumentations', 'kornia', 'cv2') if m in sys.modules))\n")
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_plugin_paths_reads_a_package_list_as_well_as_find(tmp_path: Path) -> None:
    """`[tool.setuptools] packages = ["pkg"]` (a list) is as common as `packages.find`: both work."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "listed-plugin"\nversion = "0.1"\n[project.entry-points.i2i]\nlisted = "listed_plugin"\n'
        '[tool.setuptools]\npackages = ["listed_plugin"]\n')
    site, root = plugin_paths(project, tmp_path / "site")
    assert root == project.resolve()
    assert "listed = listed_plugin" in (site / "listed_plugin-0.1.dist-info" / "entry_points.txt").read_text()


def test_a_path_the_system_refuses_is_one_line_in_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file where a folder goes (the cache, a run's --out-dir), a name past the system's limit: what
    the system said and where, in one line, never a traceback."""
    (blocker := tmp_path / "a_file").write_text("not a folder")
    image = tmp_path / "in.png"
    image.write_bytes(bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8"
                                    "cfc0f00000030101009c4a7a0e0000000049454e44ae426082"))
    monkeypatch.setenv("I2I_CACHE_DIR", str(blocker))
    cases = [(["translate", str(image), "--model", "cyclegan_h2z", "--out", str(tmp_path / "o")], "Not a directory"),
             (["train", "pix2pix", "--data", str(tmp_path), "--out-dir", str(blocker), "--max-steps", "1"], "Not a directory"),
             (["export", str(tmp_path / ("x" * 300 + ".pth"))], "File name too long")]
    for args, says in cases:
        result = invoke(*args)
        assert result.exit_code == 1 and says in result.output, (args[0], result.output)
        errors = [line for line in result.output.splitlines() if not line.startswith("i2i: recipe")]  # train's note
        assert "Traceback" not in result.output and len(errors) == 1 and errors[0].startswith("Error: "), result.output
