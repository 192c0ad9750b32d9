"""Downloads and archives for the dataset catalogue and the model zoo (torch-free).

- :func:`download` streams to a temporary file beside the destination, checks the byte count
  (Content-Length and the expected size) and the sha256, then renames atomically: an interrupted or
  corrupt download never leaves a file that looks complete.
- :func:`extract` unpacks .zip / .tar.gz / .tgz / .tar into a temporary folder and renames it into
  place, refusing members that would land outside it (path traversal, links out of the tree).
- ``I2I_OFFLINE=1`` turns every download into an immediate error that says how to supply the file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from . import __version__
from .errors import I2IError

CHUNK = 1 << 20


def cache_dir(kind: str) -> Path:
    """Where downloaded ``kind`` ("datasets", "models") live: ``$I2I_CACHE_DIR/<kind>``, else
    ``$XDG_CACHE_HOME/i2i/<kind>``, else ``~/.cache/i2i/<kind>``. Not created here; an I2IError when
    there is no home directory to put it in."""
    root = os.environ.get("I2I_CACHE_DIR")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        try:
            base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "i2i"
        except RuntimeError:  # HOME unset and no passwd entry (a bare container)
            raise I2IError("there is no home directory for i2i's cache; set I2I_CACHE_DIR to a writable folder") from None
    return base / kind


def sha256_file(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file (sha256, or ``algorithm`` such as "md5"), read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _offline() -> bool:
    return os.environ.get("I2I_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _matches(path: Path, sha256: str | None, size: int | None, md5: str | None = None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    if md5 is not None and sha256 is None and sha256_file(path, "md5") != md5.lower():
        return False
    return sha256 is None or sha256_file(path) == sha256.lower()


class _Progress:
    """A tqdm bar on a terminal; one line at the start and one at the end otherwise (logs, CI)."""

    def __init__(self, total: int | None, desc: str) -> None:
        self.desc = desc
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
        else:
            size = f" ({total / 1e6:.1f} MB)" if total else ""
            print(f"i2i: downloading {desc}{size} ...", file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self, done: int | None = None) -> None:
        if self.bar is not None:
            self.bar.close()
        elif done is not None:
            print(f"i2i: downloaded {self.desc} ({done / 1e6:.1f} MB)", file=sys.stderr, flush=True)


def download(url: str, dest: Path, *, sha256: str | None = None, size: int | None = None,
             desc: str = "", offline_hint: str = "", timeout: float = 60.0, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (verified and atomic) and return ``dest``.

    ``md5`` is checked only where the publisher gives no sha256 (IOPaint pins its big-lama by MD5):
    a publisher's checksum beats none. An existing ``dest`` that matches ``sha256``/``md5``/``size``
    is reused without touching the network.
    Failures are :class:`I2IError` naming the URL; ``offline_hint`` (how to supply a local copy)
    is appended to network errors.
    """
    dest = Path(dest)
    if dest.is_file() and _matches(dest, sha256, size, md5):
        return dest
    hint = f"; {offline_hint}" if offline_hint else ""
    if dest.is_file():  # a copy was put there, but not the published file: say so, not only "cannot download"
        hint = f" (the file at {dest} does not match the published size/sha256, so it is not used){hint}"
    if _offline():
        raise I2IError(f"cannot download {url}: I2I_OFFLINE is set{hint}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got, expected = _stream(url, out, desc or dest.name, timeout, hint)
        if expected is not None and got != expected:
            raise I2IError(f"download of {url} was cut short: got {got} of {expected} bytes; try again{hint}")
        if size is not None and got != size:
            raise I2IError(f"download of {url} has {got} bytes, expected {size}; the file changed upstream "
                           f"or the transfer was corrupted{hint}")
        if sha256 is not None:
            actual = sha256_file(tmp)
            if actual != sha256.lower():
                raise I2IError(f"download of {url} failed its checksum: sha256 {actual}, expected {sha256}{hint}")
        elif md5 is not None:
            actual = sha256_file(tmp, "md5")
            if actual != md5.lower():
                raise I2IError(f"download of {url} failed its checksum: md5 {actual}, expected {md5}{hint}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _stream(url: str, out, desc: str, timeout: float, hint: str) -> tuple[int, int | None]:
    """Copy ``url`` into ``out``; return (bytes received, Content-Length or None)."""
    request = urllib.request.Request(url, headers={"User-Agent": f"i2i/{__version__}"})
    got = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            progress = _Progress(expected, desc)
            try:
                # http.client returns b"" (no exception) when a server closes early, which is why
                # the caller compares `got` with Content-Length.
                while block := resp.read(CHUNK):
                    out.write(block)
                    got += len(block)
                    progress.update(len(block))
            finally:
                progress.close(got)
    except http.client.IncompleteRead as exc:
        got += len(exc.partial)
        raise I2IError(f"download of {url} was cut short after {got} bytes; try again{hint}") from None
    except urllib.error.HTTPError as exc:
        raise I2IError(f"cannot download {url}: HTTP {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        raise I2IError(f"cannot download {url}: {exc.reason}{hint}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, bad URLs
        raise I2IError(f"cannot download {url}: {type(exc).__name__}: {exc}{hint}") from None
    return got, expected


def _check_member(archive: Path, name: str) -> None:
    """Refuse absolute paths and '..' (tar and zip alike)."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or (p.parts and p.parts[0].endswith(":")):
        raise I2IError(f"archive {archive} holds an unsafe path {name!r}; refusing to extract it")


def extract(archive: Path, dest_dir: Path) -> Path:
    """Unpack ``archive`` (.zip, .tar.gz, .tgz, .tar) so that its members lie under ``dest_dir``.

    The archive is unpacked into a temporary sibling folder that is renamed to ``dest_dir`` only
    when complete. An existing ``dest_dir`` is an error (remove it to re-extract).
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    if dest_dir.exists():
        raise I2IError(f"cannot extract {archive}: {dest_dir} already exists; remove it first")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", suffix=".extract", dir=dest_dir.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for name in zf.namelist():
                    _check_member(archive, name)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for member in members:
                    _check_member(archive, member.name)
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    # the "data" filter also rejects links that resolve outside and device files
                    try:
                        tf.extractall(tmp, filter="data")
                    except tarfile.FilterError as exc:
                        raise I2IError(f"archive {archive} holds an unsafe member: {exc}; refusing to extract it") from None
                else:  # older Pythons: no link may point upwards or outside
                    for member in members:
                        if member.issym() or member.islnk():
                            _check_member(archive, member.linkname)
                    tf.extractall(tmp)
        else:
            raise I2IError(f"cannot extract {archive}: not a .zip or .tar(.gz) archive (corrupt download? delete it and retry)")
        os.replace(tmp, dest_dir)
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise I2IError(f"cannot extract {archive}: {exc}; delete it and download again") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest_dir


__all__ = ["cache_dir", "sha256_file", "download", "extract"]
