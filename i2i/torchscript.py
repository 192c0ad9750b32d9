"""The tensors of a TorchScript archive, read without running its code.

Some published weights exist only as TorchScript (``torch.jit.save``): the big-lama release that
lama-cleaner / IOPaint publish is one. ``torch.load(weights_only=True)`` refuses such archives and
``torch.jit.load`` would run the code they carry; :func:`read_torchscript` instead unpickles the
archive's ``data.pkl`` with an allow-list (TorchScript module objects become plain attribute
holders, tensors are rebuilt from the archive's storages) and returns the module tree's tensors as
a state_dict (``"model.model.1.bn_l.running_mean"`` ...), as ``module.state_dict()`` would name them.

Archive layout (PyTorch ``torch/csrc/jit/serialization/export_module.cpp``): a zip with
``<name>/data.pkl`` (the module objects, protocol 2, tensors as ``torch._utils._rebuild_tensor_v2``
over persistent storage ids ``("storage", type, key, location, numel)``) and ``<name>/data/<key>``
(the raw storage bytes, little-endian).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .errors import I2IError

__all__ = ["is_torchscript", "read_torchscript"]


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript zip archive (it has ``constants.pkl`` and ``code/``)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


class _ScriptObject:
    """A TorchScript module object: keeps the attribute dict its pickle sets (nothing else runs)."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state


def _int_list(items: Any) -> list:
    return list(items)


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, Any] = {}

    def find_class(self, module: str, name: str) -> Any:
        import torch

        if module == "__torch__" or module.startswith("__torch__."):
            # TorchScript's recording of user code, whatever the class is called: a script's own top-level
            # class is __torch__.Name (advimman/lama bin/to_jit.py's JITWrapper). Only its attributes are
            # kept; its code is never run, so any such name is as safe as any other.
            return type(name, (_ScriptObject,), {})
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if module == "torch" and name.endswith("Storage") and hasattr(torch, name):
            return getattr(torch, name)
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist", "build_boollist",
                                                      "build_tensorlist", "build_genericlist"):
            return _int_list
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights archive")

    def persistent_load(self, pid: Any) -> Any:
        import torch

        kind, storage_type, key, _location, numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if key not in self.storages:
            dtype = storage_type.dtype if hasattr(storage_type, "dtype") else storage_type
            raw = bytearray(self.archive.read(f"{self.prefix}/data/{key}"))
            untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            self.storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        return self.storages[key]


def _walk(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    import torch

    state = obj.__dict__.get("state") if isinstance(obj, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + key] = value
        elif isinstance(value, _ScriptObject):
            _walk(value, f"{prefix}{key}.", out)


def read_torchscript(path: str | Path) -> dict[str, Any]:
    """The parameters and buffers of the TorchScript module saved in ``path``, by state_dict name.

    Raises I2IError when the archive is not TorchScript, is damaged, or pickles anything beyond
    module objects, tensors and plain containers.
    """
    try:
        with zipfile.ZipFile(path) as z:
            pkl = next((n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
            if pkl is None:
                raise I2IError(f"{path} is not a TorchScript archive (no data.pkl)")
            prefix = pkl.rsplit("/", 1)[0]
            with warnings.catch_warnings():  # TypedStorage is deprecated, and what torch.load itself uses
                warnings.simplefilter("ignore")
                root = _Unpickler(z.read(pkl), z, prefix).load()
    except (zipfile.BadZipFile, OSError, KeyError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise I2IError(f"cannot read {path} as a TorchScript archive ({type(exc).__name__}: {exc})") from None
    out: dict[str, Any] = {}
    _walk(root, "", out)
    if not out:
        raise I2IError(f"{path} is a TorchScript archive without tensors")
    return out
