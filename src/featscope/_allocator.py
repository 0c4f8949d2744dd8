"""Process-wide memory-allocator settings for featscope's hot loops (glibc; elsewhere no-ops)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, glibc's malloc.h
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
_TRIM_THRESHOLD = 512 * 2**20


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed blocks up to 32 MiB for reuse instead of unmapping them.

    A training step allocates and frees the same few activation buffers (a 16-run pack of
    the blog MLP: 3.2 MB each) thousands of times. By default glibc serves such blocks
    with mmap and returns them on free, so every step faults their pages in afresh; on
    this project's (virtual) machine that made ReLU and its backward about twice as slow
    (benchmarks/HISTORY.md). Only freed blocks are kept, but where the
    sizes a loop allocates change, they fragment the heap (see `release_freed_memory`).
    Returns whether the setting took (False off glibc: macOS, musl)."""
    libc = _libc()
    try:
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX) and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        )
    except AttributeError:  # no libc found, or not glibc
        return False


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def free_heap_bytes() -> int | None:
    """Bytes that glibc's heap holds free (mallinfo2's fordblks, glibc ≥ 2.33), or None."""
    libc = _libc()
    try:
        libc.mallinfo2.restype = _MallInfo2
        return int(libc.mallinfo2().fordblks)
    except AttributeError:
        return None


RELEASE_ABOVE = 256 * 2**20


def release_freed_memory(above: int = RELEASE_ABOVE) -> bool:
    """Give the heap's free pages back to the system (malloc_trim) once more than `above`
    bytes of it are free; returns whether it did.

    Blocks kept for reuse under `keep_freed_memory`'s 32 MiB threshold fragment the heap
    when a loop's allocations change size, and the holes stay resident: observing the
    grokking-fig3 net with the gradients family alone held about three times the memory,
    and took longer, than trimmed after every chunk. The threshold spares the small nets,
    whose chunks reuse the same blocks: trimming after every chunk made their observe jobs
    slower, their pages faulted in again (benchmarks/HISTORY.md)."""
    free = free_heap_bytes()
    if free is None or free <= above:
        return False
    return bool(_libc().malloc_trim(0))
