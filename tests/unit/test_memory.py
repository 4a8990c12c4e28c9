"""release_free_memory: free pages in the middle of the heap go back to the system."""

import ctypes
import ctypes.util

import pytest

from lacy_labels import memory


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture
def libc():
    if memory._malloc_trim() is None:
        pytest.skip("not glibc")
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    lib.malloc.argtypes, lib.malloc.restype = [ctypes.c_size_t], ctypes.c_void_p
    lib.free.argtypes = [ctypes.c_void_p]
    return lib


def test_fragmented_heap_is_returned(libc):
    # 64 MB in 64 KB blocks, each followed by a small block that stays: freeing the big ones
    # leaves holes that free() cannot give back (nothing is at the heap's top).
    big, small = [], []
    for _ in range(1024):
        p = libc.malloc(64 << 10)
        ctypes.memset(p, 1, 64 << 10)
        big.append(p)
        small.append(libc.malloc(32))
    # The small blocks may come from free lists elsewhere (with some plugins loaded, they do):
    # a block above the big ones keeps them off the heap's top either way.
    pin = libc.malloc(64 << 10)
    for p in big:
        libc.free(p)
    before = _rss()
    assert memory.release_free_memory() is True
    after = _rss()
    for p in [*small, pin]:
        libc.free(p)
    assert before - after > 32 << 20, (before, after)


def test_turned_off(monkeypatch):
    monkeypatch.setenv(memory.DISABLE_ENV, "0")
    memory._malloc_trim.cache_clear()
    try:
        assert memory.release_free_memory() is False
    finally:
        memory._malloc_trim.cache_clear()
