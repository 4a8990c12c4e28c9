"""What this CPU can do and what the process tells its kernels: the CPU's name and feature flags
(read once from /proc/cpuinfo), whether a reduced precision would be emulated, and the bound on
oneDNN's primitive caches that every scoring process sets before its first oneDNN op."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import MutableMapping

# oneDNN (and PyTorch's ideep layer above it) keep up to 1024 compiled primitives each, one per
# input shape; length-bucketed batches have a new shape almost every batch, so an unbounded cache
# grew a scoring worker by ~600 MB over 400 documents. 16 keeps the current batches' shapes.
# Read when oneDNN first runs; a value already set in the environment wins.
CACHE_CAPACITY_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "16"}


def bound_primitive_caches(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Bound oneDNN's compiled-primitive caches in this process (CACHE_CAPACITY_ENV, values
    already set win); returns the values in force. A process that scores calls it before its
    first oneDNN op: the launcher at its start, `reference.load_reference` in every worker."""
    environ = os.environ if environ is None else environ
    for name, value in CACHE_CAPACITY_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in CACHE_CAPACITY_ENV}


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where it is absent)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU's model name (lscpu's), to print beside every figure."""
    import platform

    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# CPU flags whose instructions compute in a reduced precision natively; without them PyTorch
# emulates it, far slower than fp32 (bf16 scoring of 3 leads ran past 10 minutes on an AVX2-only
# EPYC, where fp32 scores a dozen in seconds).
NATIVE_CPU_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    return frozenset(_cpuinfo().get("flags", "").split())


def emulated_on_cpu(dtype: str, flags: frozenset[str] | None = None) -> bool:
    """True if `dtype` is a reduced precision this CPU has no native instructions for (False
    for fp32, and where the flags cannot be read)."""
    wanted = NATIVE_CPU_FLAGS.get(str(dtype).removeprefix("torch."))
    flags = cpu_flags() if flags is None else flags
    return bool(wanted and flags and not flags.intersection(wanted))


@functools.cache
def warn_if_emulated(dtype: str, device: str, flags: frozenset[str] | None = None) -> bool:
    """Warn once per process and dtype when reduced precision would be emulated on this CPU
    (`flags`: this CPU's); returns whether it is."""
    if str(device).split(":")[0] != "cpu" or not emulated_on_cpu(dtype, flags):
        return False
    logging.getLogger("lacy").warning(
        "%s on this CPU is emulated (no %s instructions) and many times slower than float32: "
        "use --dtype float32 on this machine (exact and the default), or a GPU for %s",
        dtype, " or ".join(NATIVE_CPU_FLAGS[dtype]), dtype,
    )  # fmt: skip
    return True
