"""Feature-network weights (Inception for FID/KID/IS, AlexNet for LPIPS): fetched once into the i2i
cache through :func:`i2i.download.download` (progress bar, size and sha256 checked, atomic write),
or taken from a local file (a flag, else an environment variable).

The libraries would download these by themselves from their own URLs into torch's hub folder, with
no checksum and no offline message; we fetch the same files ourselves and hand the libraries the path.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass
from pathlib import Path

from i2i.errors import I2IError


@dataclass(frozen=True)
class FeatureWeights:
    """One published weights file of a feature network."""

    name: str
    url: str
    filename: str
    #: the published sha256 (None where only a prefix is published)
    sha256: str | None
    #: torchvision publishes only the first 8 hex digits of the sha256, in the file name (as torch.hub checks)
    sha256_prefix: str
    size: int | None
    #: the environment variable that names a local copy
    env: str
    what: str
    #: the command-line flag that takes a local copy (i2i eval translate / inpaint)
    flag: str


SOURCES: dict[str, FeatureWeights] = {
    # The TF-slim Inception v3 of the original FID code (2015-12-05 graph), converted to PyTorch by
    # torch-fidelity (pytorch-fid publishes the same bytes as pt_inception-2015-12-05-6726825d.pth).
    "inception": FeatureWeights(
        "inception",
        "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
        "weights-inception-2015-12-05-6726825d.pth",
        "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2", "6726825d", 95_628_359,
        "I2I_FID_WEIGHTS", "FID/KID/IS Inception", "--feature-weights"),
    # torchvision's ImageNet AlexNet, the LPIPS backbone (Zhang et al. 2018, lpips v0.1 'alex').
    "lpips_alex": FeatureWeights(
        "lpips_alex", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", "alexnet-owt-7be5be79.pth",
        None, "7be5be79", None, "I2I_LPIPS_WEIGHTS", "LPIPS AlexNet", "--lpips-weights"),
}

#: the training config key that takes a local copy (``i2i train --set fid_weights=FILE``)
SETTINGS = {"inception": "fid_weights", "lpips_alex": "lpips_weights"}

#: how the running entry point takes a local weights file besides the environment variable: "flags"
#: (the eval commands' --feature-weights/--lpips-weights), "settings" (training's --set keys) or None
#: (the Python API: the variable only)
_OFFERED: contextvars.ContextVar[str | None] = contextvars.ContextVar("i2i_metrics_weight_options", default=None)


@contextlib.contextmanager
def _offered(how: str):
    token = _OFFERED.set(how)
    try:
        yield
    finally:
        _OFFERED.reset(token)


def flags_offered():
    """Within this block, the offline/missing-file messages name the eval commands' weight flags."""
    return _offered("flags")


def settings_offered():
    """Within this block, the messages name training's ``--set fid_weights=FILE``/``lpips_weights``."""
    return _offered("settings")


def local_hint(src: FeatureWeights) -> str:
    """How the running entry point takes a local copy: its flag or setting, or the environment variable."""
    how = _OFFERED.get()
    if how == "flags":
        return f"pass {src.flag} FILE or set {src.env}=FILE"
    if how == "settings":
        return f"pass --set {SETTINGS[src.name]}=FILE or set {src.env}=FILE"
    return f"set {src.env}=FILE"


def weights_path(name: str, local: str | os.PathLike[str] | None = None) -> Path:
    """The weights file of feature network ``name`` ("inception", "lpips_alex").

    ``local`` (a flag's value), else ``$<env>`` (``I2I_FID_WEIGHTS``, ``I2I_LPIPS_WEIGHTS``), else the
    cached download (``$I2I_CACHE_DIR/metrics/``), fetched on first use. Offline or on a network error,
    an I2IError naming the URL, the flag and the variable.
    """
    from i2i.download import cache_dir, download, sha256_file

    src = SOURCES[name]
    chosen = local or os.environ.get(src.env)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            origin = f"${src.env}" if not local else ({"flags": src.flag, "settings": SETTINGS[src.name]}
                                                      .get(_OFFERED.get() or "", "weights="))
            raise I2IError(f"{src.what} weights {path} (from {origin}) is not a file; download {src.url} and "
                           f"{local_hint(src)}")
        return path
    dest = cache_dir("metrics") / src.filename
    fresh = not dest.is_file()
    hint = f"download {src.url} yourself and {local_hint(src)}"
    path = download(src.url, dest, sha256=src.sha256, size=src.size, desc=src.filename, offline_hint=hint)
    if fresh and src.sha256 is None and src.sha256_prefix:
        actual = sha256_file(path)
        if not actual.startswith(src.sha256_prefix):
            path.unlink(missing_ok=True)
            raise I2IError(f"download of {src.url} failed its checksum: sha256 {actual} does not start with "
                           f"{src.sha256_prefix}; {hint}")
    return path


def at_hand(name: str, local: str | os.PathLike[str] | None = None) -> bool:
    """Whether :func:`weights_path` would find ``name``'s weights without the network (a flag's
    value, the environment variable, or the cached download)."""
    from i2i.download import cache_dir

    src = SOURCES[name]
    return bool(local or os.environ.get(src.env)) or (cache_dir("metrics") / src.filename).is_file()


#: (resolved path, size, mtime) -> sha256: a weights file is hashed once per process
_SHA: dict[tuple[str, int, int], str] = {}


def describe(name: str, path: str | os.PathLike[str]) -> str:
    """Which weights file of feature network ``name`` a figure was measured with: ``published
    <file>, sha256 <12 hex>`` when its checksum is the published one, else ``<file name>, sha256 <12 hex>
    (not the published <file>)`` (a local file through a flag or $I2I_FID_WEIGHTS: figures not
    comparable with papers unless it is the same network)."""
    from i2i.download import sha256_file

    src, p = SOURCES[name], Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        _SHA[key] = sha256_file(p)
    sha = _SHA[key]
    published = sha == src.sha256 if src.sha256 else sha.startswith(src.sha256_prefix)
    if published:
        return f"published {src.filename}, sha256 {sha[:12]}"
    return f"{p.name}, sha256 {sha[:12]} (not the published {src.filename})"


def _a(word: str) -> str:
    """``word`` with its indefinite article (an Inception, an AlexNet, a ...)."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def load_state(path: Path, what: str) -> dict:
    """A state_dict read with ``weights_only=True``; anything else is a one-line I2IError."""
    import torch

    from i2i.zoo import load_failure

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file, whatever the unpickler says
        kind, detail = load_failure(path, exc)  # the one reading of torch.load's failures (i2i.zoo)
        why = {"empty": "it is empty (0 bytes)", "html": "it is an HTML page (an error page saved as the file?)",
               "text": "it is text (an error message saved as the file?)", "truncated": "it is cut short",
               "code": f"it is a pickle that runs code ({detail}), which i2i refuses to run",
               }.get(kind, "PyTorch cannot read it (a damaged or partial download, or another format)")
        raise I2IError(f"{path} is not {_a(what)} weights file: {why}; download it again") from None
    if not isinstance(state, dict):
        raise I2IError(f"{path} is not {_a(what)} weights file: it holds a {type(state).__name__}, not a state_dict")
    return state
