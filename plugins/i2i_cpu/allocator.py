"""Keep freed memory in the process once the CPU layers run (glibc's ``mallopt``).

The Winograd layer makes and drops a dozen 4-10 MB buffers per call. glibc's malloc gives buffers of
that size back to the kernel when they are freed (mmap, or trimming the heap), so the next call pays
a page fault for each of their 4 KiB pages: on a 2-core AVX-512 EPYC a 256-channel 64x64 Winograd
layer took 32-36 ms forward + backward that way (~9000 page faults a call) and 23 ms with the memory
kept, against 32 ms for oneDNN's direct convolution (BENCHMARKS.md).

So when the plugin swaps its first layer it changes glibc's settings for the rest of the process:
blocks of every size come from the heap instead of mmap (``M_MMAP_MAX`` 0: the mmap threshold cannot
be raised past 32 MiB, and the gradient of a U-Net's 1024 -> 512 transposed convolution is 32 MiB
exactly, which alone cost that layer 42 ms forward + backward against 10 ms kept), and the heap is
trimmed only past 512 MiB free at its top. The process then holds its high-water mark between
steps, as a training process does anyway (Intel's PyTorch extension reaches the same end by
preloading jemalloc). It can hold more where the sizes keep changing, since freed blocks wedged
between live ones are not given back: translating one image at each of 9 sizes from 256 to 1024
pixels with ``cpu_kernels`` left 1.7 GiB resident against 0.9 GiB with glibc's defaults (peak 2.8 GiB
against 1.8). Translate a folder of mixed sizes without ``--cpu-kernels`` where memory is tight.
Setting these yourself (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``,
or the same ``glibc.malloc.*`` in ``GLIBC_TUNABLES``) leaves glibc as you set it; on other C
libraries nothing is changed. Threads other than the main one allocate from their own arenas, which
glibc keeps in mmap'd 64 MiB heaps whatever the settings.
"""

from __future__ import annotations

import ctypes
import os
import platform

#: mallopt's parameter numbers (glibc's malloc.h) and the values set
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_THRESHOLD = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 512 << 20
#: the environment variables with which a user sets the same thresholds, and the tunables that replace them
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
USER_TUNABLES = ("glibc.malloc.mmap_threshold", "glibc.malloc.mmap_max", "glibc.malloc.trim_threshold")

_kept = False


def keep_freed_memory() -> bool:
    """Keep freed memory in the heap, once per process (see the module's text). Returns whether it is
    kept now: False on another C library, where the user set glibc's malloc, or if mallopt refused."""
    global _kept
    if _kept:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if any(v in os.environ for v in USER_SETTINGS) or any(t in tunables for t in USER_TUNABLES):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success. Setting either threshold ends glibc's own adjustment of both, and a
    # raised trim threshold with the default mmap threshold maps every block afresh (far slower than
    # glibc's default): so the trim threshold is set only once the mmap threshold is.
    _kept = (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_MMAP_MAX, 0) == 1
             and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    return _kept


def kept() -> bool:
    """Whether :func:`keep_freed_memory` changed glibc's settings in this process."""
    return _kept
