"""glibc malloc policy for CPU training: keep freed memory for reuse instead of unmapping it."""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory for reuse instead of returning it to the OS; returns
    False where there is no glibc (macOS, musl), which is left as it is.

    By default glibc serves every block over its mmap threshold (at most 32 MiB) with a fresh mmap
    and unmaps it on free, so a CPU training step that allocates its (B*T, vocab) logits and their
    gradients anew (about 400 MB each at model=tiny, batch 8 x 256) pays a page fault per 4 KiB
    page, every step: 35-40% of the step (bench/RESULTS.md). Setting the thresholds, as
    MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ would at startup, keeps freed blocks in the
    heap for reuse. torch's 64-byte-aligned requests do not always fit a freed block exactly, so
    some faults remain: in train.py's A/B the system time fell from 109 s to 8-42 s and the steps
    got 1.3-1.8x faster. The process then holds its peak memory until it exits.

    Process-wide and irreversible (there is no way back for the rest of the process), so only entry
    points call it (train.py, compare.py, the benchmarks), never library code: a program that
    imports `run_training` keeps its own malloc policy unless it calls this itself.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    for option, value in ((M_MMAP_THRESHOLD, 1 << 30), (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 1 << 28)):
        if libc.mallopt(option, value) != 1:
            raise RuntimeError(f"mallopt({option}, {value}) failed")
    return True
