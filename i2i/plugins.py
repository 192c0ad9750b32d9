"""The plugin manager: built-ins and ``i2i`` entry points, through the very same hooks.

- ``I2I_BLOCK_PLUGINS=a,b`` blocks plugins by name (built-ins too, with or without their ``i2i_``
  prefix: ``cpu`` blocks ``i2i_cpu``); a name no installed plugin has is a warning.
- ``I2I_PLUGINS=a,b`` loads only these third-party plugins (``I2I_PLUGINS=`` loads none); a name no
  installed plugin has is a warning.
- A plugin that fails to import, or whose hook raises, is reported in one warning naming it and the
  error; everything else still loads. A misspelt hook implementation is an error naming the plugin.
- A built-in that fails to import (or to add its commands) only because a dependency of an extra
  that is not installed is missing (torch in a serving install: ``pip install ".[serve]"``) is
  skipped quietly: ``i2i plugins`` shows it and the extra to install; no warning on every command.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import pluggy

from . import __version__, hookspecs
from .errors import I2IError, close_matches
from .registry import KINDS, Registry

ENTRY_POINT_GROUP = "i2i"

#: Built-in plugins' names start with this; I2I_BLOCK_PLUGINS may leave it out.
BUILTIN_PREFIX = "i2i_"

#: Built-in plugins (name -> module): ordinary plugin modules, loaded exactly like third-party ones.
BUILTIN_PLUGINS: dict[str, str] = {
    "i2i_losses": "i2i_losses",
    "i2i_datasets": "i2i_datasets",
    "i2i_pix2pix": "i2i_pix2pix",
    "i2i_cyclegan": "i2i_cyclegan",
    "i2i_srgan": "i2i_srgan",
    "i2i_inpaint": "i2i_inpaint",
    "i2i_export": "i2i_export.plugin",
    "i2i_cpu": "i2i_cpu",
    "i2i_spandrel": "i2i_spandrel",
    "i2i_metrics": "i2i_metrics",
}


#: top-level modules of the optional dependencies -> the extra that installs them (pyproject.toml)
EXTRA_OF: dict[str, str] = {
    **dict.fromkeys(("torch", "torchvision", "albumentations", "kornia", "onnx", "onnxscript", "safetensors",
                     "cv2", "yaml", "torchmetrics", "torch_fidelity", "lpips", "scipy"), "train"),
    **dict.fromkeys(("onnxruntime", "fastapi", "starlette", "uvicorn", "multipart", "python_multipart"), "serve"),
}


def missing_extra(exc: BaseException) -> str | None:
    """``needs torch (pip install 'i2i[train]')`` when ``exc`` is the import of an optional dependency
    that is not installed; None for any other error."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = EXTRA_OF.get(top)
    return f"needs {top} (pip install 'i2i[{extra}]')" if extra else None


class PluginWarning(UserWarning):
    """A plugin was skipped because it is broken."""


@dataclass
class PluginInfo:
    name: str
    version: str
    builtin: bool
    module: str
    hooks: list[str] = field(default_factory=list)


#: every hook a plugin may implement
_HOOK_NAMES = sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "i2i_spec"))


def _one_line(exc: BaseException) -> str:
    """``Type: message`` on one line (some messages, pluggy's among them, span several)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _warn(message: str) -> None:
    # warn_explicit with no source line: one line even outside the CLI (which prints "i2i: warning: ...")
    warnings.warn_explicit(message, PluginWarning, filename="i2i", lineno=0, module="i2i.plugins")


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


class PluginHost:
    """Owns the pluggy manager and the registries built from it."""

    def __init__(self, builtins: dict[str, str] = BUILTIN_PLUGINS, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("i2i")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        #: plugins that failed to load (or, built-ins short of an extra, to add their commands):
        #: name -> the one-line reason (``i2i plugins`` shows them)
        self.skipped: dict[str, str] = {}
        self._registries: dict[str, Registry[Any]] = {}
        requested = _env_list("I2I_BLOCK_PLUGINS") or set()
        short = {name.removeprefix(BUILTIN_PREFIX): name for name in builtins}  # "cpu" -> "i2i_cpu"
        blocked = requested | {short[name] for name in requested if name in short}
        allowed = _env_list("I2I_PLUGINS")
        eps = list(md.entry_points(group=ENTRY_POINT_GROUP)) if entry_points else []
        if entry_points:  # (without them, an unknown name may be an entry point's: no way to tell)
            known = {*builtins, *short, *(ep.name for ep in eps)}
            for name in sorted(requested - known):
                best = close_matches(name, sorted(known), n=1)
                _warn(f"I2I_BLOCK_PLUGINS names {name!r}, which no installed plugin is called"
                      + (f" (did you mean: {best[0]}?)" if best else f" (plugins: {', '.join(sorted(known))})"))
            installed = sorted(ep.name for ep in eps)
            for name in sorted((allowed or set()) - set(installed)):
                best = close_matches(name, installed, n=1)
                _warn(f"I2I_PLUGINS names {name!r}, which no installed plugin is called"
                      + (" (built-ins always load: it selects installed plugins)" if name in known
                         else f" (did you mean: {best[0]}?)" if best
                         else f" (installed: {', '.join(installed)})" if installed
                         else " (no third-party plugin is installed; built-ins always load)"))
        for name in blocked:
            self.pm.set_blocked(name)
        for name, module_name in builtins.items():
            if name in blocked:
                continue
            self._load(name, lambda m=module_name: importlib.import_module(m), __version__, True)
        if entry_points:
            for ep in eps:
                if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                    continue
                version = ep.dist.version if ep.dist is not None else "?"
                self._load(ep.name, ep.load, version, False)
        self.pm.check_pending()  # a backstop: _check_hook_names has already named the culprit

    def _load(self, name: str, load: Any, version: str, builtin: bool) -> None:
        try:
            module = load()
        except Exception as exc:  # a broken plugin must not take the host down
            quiet = missing_extra(exc) if builtin else None  # an install without that extra: not broken
            self.skipped[name] = quiet or _one_line(exc)
            if not quiet:
                _warn(f"plugin {name!r} skipped: {self.skipped[name]}")
            return
        self._check_hook_names(name, module)
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:  # a hookimpl whose arguments the hookspec lacks
            raise I2IError(
                f"plugin {name!r} has a hook implementation that does not match its hookspec: {_one_line(exc)}; "
                f"fix the plugin or block it with I2I_BLOCK_PLUGINS={name}"
            ) from None
        except Exception as exc:  # e.g. two entry points with one name
            self.skipped[name] = _one_line(exc)
            _warn(f"plugin {name!r} skipped: {self.skipped[name]}")
            return
        hooks = sorted(c.name for c in self.pm.get_hookcallers(module) or [] if c.name in _HOOK_NAMES)
        self.info[name] = PluginInfo(name, version, builtin, getattr(module, "__name__", str(module)), hooks)

    def _missing_extra(self, name: str, exc: BaseException) -> str | None:
        """:func:`missing_extra` for a hook of the loaded plugin ``name``: only built-ins are excused."""
        info = self.info.get(name)
        return missing_extra(exc) if info is not None and info.builtin else None

    @staticmethod
    def _check_hook_names(name: str, plugin: Any) -> None:
        """Any attribute marked ``@i2i.hookimpl`` must name a hook: a misspelt one is an error."""
        for attr in dir(plugin):
            try:
                opts = getattr(getattr(plugin, attr), "i2i_impl", None)
            except Exception:  # a lazy module attribute that fails: not a hookimpl
                continue
            if not isinstance(opts, dict):
                continue
            hook = opts.get("specname") or attr
            if hook not in _HOOK_NAMES:
                best = close_matches(hook, _HOOK_NAMES, n=1)  # the hooks share "register_": one guess
                hint = f" (did you mean: {best[0]}?)" if best else f" (hooks: {', '.join(_HOOK_NAMES)})"
                raise I2IError(
                    f"plugin {name!r} implements unknown hook {hook!r}{hint}; "
                    f"fix the plugin or block it with I2I_BLOCK_PLUGINS={name}"
                )

    def registry(self, kind: str) -> Registry[Any]:
        """Build (once) the registry of one kind by calling every plugin's hook in turn."""
        if kind not in self._registries:
            hook_name, spec_cls = KINDS[kind]
            reg: Registry[Any] = Registry(kind, spec_cls)
            hook = getattr(self.pm.hook, hook_name)
            for impl in reversed(hook.get_hookimpls()):  # registration order
                staged: list[Any] = []

                def register(name: str, *args: Any, _p: str = impl.plugin_name, **cfg: Any) -> None:
                    staged.append(reg.make_spec(_p, name, *args, **cfg))

                try:
                    impl.function(register=register)
                except Exception as exc:  # its entries are dropped, every other plugin's stay
                    why = self._missing_extra(impl.plugin_name, exc) or _one_line(exc)
                    _warn(f"plugin {impl.plugin_name!r} skipped in {hook_name}: {why}")
                    continue
                for spec in staged:
                    reg.add(spec, clash="disable")  # a clash disables that name, not the whole host
            for name, claims in reg.clashes.items():
                _warn(reg.clash_message(name, claims, off=True))
            self._registries[kind] = reg
        return self._registries[kind]

    def add_commands(self, cli: Any) -> None:
        """Call every ``register_commands`` hook; a plugin may not replace another's command."""
        owner = {name: "i2i" for name in cli.commands}
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                cli.commands.clear()
                cli.commands.update(before)
                quiet = self._missing_extra(impl.plugin_name, exc)
                if quiet:  # this hook runs on every command: shown by `i2i plugins`, not warned about
                    self.skipped[impl.plugin_name] = f"commands skipped: {quiet}"
                else:
                    _warn(f"plugin {impl.plugin_name!r} skipped in register_commands: {_one_line(exc)}")
                continue
            for name, cmd in list(cli.commands.items()):
                if name in before and before[name] is not cmd:
                    _warn(f"plugin {impl.plugin_name!r} tried to replace command {name!r} of {owner[name]!r}; "
                          "kept the original")
                    cli.commands[name] = before[name]
                elif name not in before:
                    owner[name] = impl.plugin_name


_host: PluginHost | None = None


def manager() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def reset() -> None:
    """Forget the plugin host (tests use this after changing the environment)."""
    global _host
    _host = None
