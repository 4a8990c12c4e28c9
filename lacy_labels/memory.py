"""Hand freed heap memory back to the operating system (glibc only; a no-op elsewhere).

Scoring a group allocates and frees a logits block of tens of MB per row chunk, and oneDNN a
scratch buffer beside each; glibc carves later small allocations out of the holes they leave,
so free memory piles up in the heap (about 100 MB over a group of 24,000 tokens with a small
model) and stays resident. `malloc_trim(0)` returns every free whole page of every arena."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

DISABLE_ENV = "LACY_MALLOC_TRIM"  # "0" turns trimming off (to measure what it does)


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None (another C library, or turned off)."""
    if os.environ.get(DISABLE_ENV, "1") == "0":
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return free heap pages to the OS (a few ms); False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
