"""glibc's heap: freed blocks kept for reuse, and given back once much of the heap is free."""

import os
import subprocess
import sys

import pytest

from featscope._allocator import free_heap_bytes

pytestmark = pytest.mark.skipif(free_heap_bytes() is None, reason="glibc's mallinfo2 only")

# In a fresh process: what earlier tests left in this one's heap would blur the counts.
PROBE = """
import numpy as np
from featscope._allocator import free_heap_bytes, keep_freed_memory, release_freed_memory
MB = 2 ** 20
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * {page} // MB
keep_freed_memory()  # 8 MB blocks now come from the heap, not from mmap
blocks = [np.ones(MB + i) for i in range(32)]  # 8 MB each, touched
del blocks[::2]  # 16 holes inside the heap: freed, still resident
free = free_heap_bytes() // MB
kept = release_freed_memory(above=2 ** 40)
before = resident()
released = release_freed_memory(above=64 * MB)
print(free, kept, released, before - resident())
""".format(page=os.sysconf("SC_PAGE_SIZE"))


def test_free_heap_pages_go_back_to_the_system_only_above_the_threshold():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    free_mb, kept, released, dropped_mb = int(out[0]), out[1] == "True", out[2] == "True", int(out[3])
    assert free_mb >= 16 * 8  # the holes count as free heap
    assert not kept  # below the threshold nothing is given back
    assert released and dropped_mb >= 16 * 8 - 8  # the holes' pages left the resident set
