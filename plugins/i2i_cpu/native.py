"""The Winograd transforms in C (``winograd_kernels.c``): compiled once per machine, loaded with ctypes.

The library is built on first use with the system C compiler (``$CC``, a command such as ``ccache
gcc``, else ``cc``; ``-O3 -march=native -fopenmp``) into i2i's cache (``i2i cache``: kind ``kernels``), named by a hash of the
source, the flags, the compiler's version and the CPU, so an edit or another machine builds afresh.
There are no Python or torch headers to compile against (a build takes ~1 s), and the library uses
the OpenMP runtime torch already loaded (``libgomp.so.1``), so its threads are torch's.

Where there is no compiler, or the build fails, :func:`kernels` returns None and
:mod:`i2i_cpu.winograd` computes the transforms with torch operations (the same sums, ~1.5x slower
per layer); ``I2I_CPU_NATIVE=0`` chooses that too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib
import os
import platform
import shlex
import shutil
import struct
import subprocess
import tempfile
import warnings
from pathlib import Path

SOURCE = Path(__file__).with_name("winograd_kernels.c")
#: every file the build reads (the source includes the header once per tile size)
SOURCES = (SOURCE, SOURCE.with_name("winograd_kernels_tile.h"))
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=c99")

_ints = [ctypes.c_int] * 10
#: each function's argument types, as winograd_kernels.c declares them (each ends with m, the tile
#: size, and the number of threads)
SIGNATURES = {
    "winograd_input": [ctypes.c_void_p, ctypes.c_void_p, *_ints],
    "winograd_output": [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, *_ints[:8]],
    "winograd_grad_output": [ctypes.c_void_p, ctypes.c_void_p, *_ints[:8]],
    "winograd_grad_input": [ctypes.c_void_p, ctypes.c_void_p, *_ints],
    "winograd_weight": [ctypes.c_void_p, ctypes.c_void_p, *_ints[:5]],
    "winograd_grad_weight": [ctypes.c_void_p, ctypes.c_void_p, *_ints[:4]],
}


class NativeBuildWarning(UserWarning):
    """The C transforms could not be built: the torch operations are used (slower, same results)."""


def _cpu_model() -> str:
    """The CPU's model name and feature flags (``-march=native`` compiles for them): VMs report the
    same model name ("AMD EPYC") with and without AVX-512, and a library built for one would crash on
    the other."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    model = next((line for line in lines if line.startswith("model name")), "")
    flags = next((line for line in lines if line.startswith(("flags", "Features"))), "")
    return f"{model}\n{flags}"


def _library_path(compiler: str, version: str) -> Path:
    from i2i.download import cache_dir

    key = hashlib.sha256("\0".join([*(f.read_text() for f in SOURCES), *FLAGS, compiler, version, platform.machine(),
                                    _cpu_model()]).encode()).hexdigest()[:16]
    return cache_dir("kernels") / f"winograd_{key}.so"


def build(compiler: str | None = None) -> Path:
    """Compile ``winograd_kernels.c`` into the cache (if not there yet) and return the library's path.
    Raises FileNotFoundError (no compiler), OSError (no cache folder to write), I2IError (no home
    directory for the cache) or subprocess.CalledProcessError (it did not compile)."""
    compiler = compiler or os.environ.get("CC") or "cc"
    command = shlex.split(compiler)  # CC="ccache gcc" is a command, as make takes it
    exe = shutil.which(command[0]) if command else None
    if exe is None:
        raise FileNotFoundError(f"no C compiler {compiler!r} on PATH")
    command[0] = exe
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    path = _library_path(" ".join(command), version)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # built beside its final name and renamed: another process never loads half a file
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        subprocess.run([*command, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True, check=True)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)  # mkstemp made it 0600: others sharing the cache could not load it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: Path) -> ctypes.CDLL:
    """The library at ``path`` with its functions' argument types set."""
    lib = ctypes.CDLL(str(path))
    for name, argtypes in SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, None
    return lib


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The C transforms, built and loaded once per process; None where ``I2I_CPU_NATIVE=0``, or (with a
    :class:`NativeBuildWarning` saying why) where they cannot be built."""
    if os.environ.get("I2I_CPU_NATIVE", "").strip() == "0":
        return None
    from i2i.errors import I2IError

    importlib.import_module("torch")  # torch's libgomp.so.1 loaded first: the library then shares it

    try:
        path = build()
        try:
            if not _whole_elf(path):  # cut short (a disk that filled up, say): dlopen would crash (SIGBUS)
                raise OSError(f"{path} is cut short")
            return load(path)
        except OSError:  # a damaged library in the cache: built again, once
            path.unlink(missing_ok=True)
            return load(build())
    except subprocess.CalledProcessError as e:
        warnings.warn(f"i2i_cpu: the C Winograd transforms did not compile ({_reason(e)}); using torch "
                      "operations (slower)", NativeBuildWarning, stacklevel=2)
    except FileNotFoundError as e:
        warnings.warn(f"i2i_cpu: the C Winograd transforms are not available ({e}); using torch operations "
                      "(slower). Install a C compiler (gcc or clang) to build them", NativeBuildWarning, stacklevel=2)
    except OSError as e:  # the cache folder not writable, or a library that does not load
        warnings.warn(f"i2i_cpu: the C Winograd transforms are not available ({e}); using torch operations "
                      "(slower)", NativeBuildWarning, stacklevel=2)
    except I2IError as e:  # no cache folder to build into (no home directory)
        warnings.warn(f"i2i_cpu: the C Winograd transforms are not built: {e}; using torch operations (slower)",
                      NativeBuildWarning, stacklevel=2)
    return None


def _whole_elf(path: Path) -> bool:
    """Whether ``path`` holds as many bytes as its ELF header says (its section headers come last), or is
    not a 64-bit little-endian ELF file at all (another platform's library: left to dlopen)."""
    with open(path, "rb") as f:
        header = f.read(64)
    if header[:4] != b"\x7fELF":
        return platform.system() != "Linux"  # on Linux the compiler writes ELF: anything else is damage
    if len(header) < 64 or header[4] != 2 or header[5] != 1:  # ELFCLASS64, little-endian
        return len(header) == 64
    section_headers, entry_size, entries = struct.unpack_from("<Q", header, 0x28)[0], *struct.unpack_from("<HH", header, 0x3A)
    return path.stat().st_size >= section_headers + entry_size * entries


def _reason(e: subprocess.CalledProcessError) -> str:
    """The compiler's first error line (the linker's summary line comes last and says less), else its
    last line, else the exit status; and which command it was when it was not the build."""
    lines = [line.strip() for line in (e.stderr or "").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    reason = (errors or lines[-1:] or [f"exit status {e.returncode}"])[0]
    return f"`{' '.join(map(str, e.cmd))}`: {reason}" if "--version" in e.cmd else reason


def pointers(tensors: list) -> ctypes.Array:
    """A C array of the data pointers of ``tensors`` (contiguous float32), for the ``const float *const *``
    arguments."""
    return (ctypes.c_void_p * len(tensors))(*(t.data_ptr() for t in tensors))
