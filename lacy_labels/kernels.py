"""Which matrix-multiply kernel the reference model's linear layers use on CPU.

PyTorch's CPU wheels run fp32 `nn.Linear` through MKL, which takes a slower code path on
non-Intel CPUs (on this project's AMD EPYC machines it reaches 75-160 GFLOP/s where oneDNN, also
inside the wheel, reaches 165-210). "onednn" routes each linear layer of an inference-only model
through oneDNN's fp32 kernel: same precision, a different summation order (losses move by about
2e-4 nats). The swap is reversible and keeps the modules and their parameters as they are."""

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

LINEAR_KERNELS = ("auto", "onednn", "torch")


def _onednn_op():
    import torch

    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn_forward(module, x):
    import torch

    if x.device.type != "cpu" or x.dtype != module.weight.dtype:
        return torch.nn.functional.linear(x, module.weight, module.bias)
    return torch.ops.mkldnn._linear_pointwise(x, module.weight, module.bias, "none", [], "")


def bound_primitive_caches(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Bound oneDNN's compiled-primitive caches in this process (CACHE_CAPACITY_ENV, values
    already set win); returns the values in force. A process that scores calls it before its
    first oneDNN op: the launcher at its start, `reference.load_reference` in every worker."""
    environ = os.environ if environ is None else environ
    for name, value in CACHE_CAPACITY_ENV.items():
        environ.setdefault(name, value)
    return {name: environ[name] for name in CACHE_CAPACITY_ENV}


@functools.cache
def onednn_available() -> bool:
    """True if this torch build has oneDNN's linear op and it agrees with `F.linear` (a check:
    it changes nothing; see `bound_primitive_caches` for what to call before it)."""
    import torch

    if _onednn_op() is None or not torch.backends.mkldnn.is_available():
        return False
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(7, 33, generator=gen), torch.randn(5, 33, generator=gen)
    b = torch.randn(5, generator=gen)
    try:
        with torch.inference_mode():
            got = torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")
    except RuntimeError:
        return False
    return bool(torch.allclose(got, torch.nn.functional.linear(x, w, b), rtol=1e-4, atol=1e-4))


def resolve_linear_kernel(kernel: str, device: str, dtype: str) -> str:
    """The kernel `kernel` means here: "auto" is "onednn" for fp32 on CPU when available."""
    if kernel not in LINEAR_KERNELS:
        raise ValueError(f"linear_kernel must be one of {LINEAR_KERNELS}, got {kernel!r}")
    if kernel == "torch":
        return "torch"
    on_cpu = str(device).split(":")[0] == "cpu"
    if kernel == "onednn":
        if not on_cpu:
            raise ValueError(f"linear_kernel 'onednn' runs on CPU only, not on {device!r}")
        if not onednn_available():
            raise ValueError("linear_kernel 'onednn': this torch build has no working oneDNN op")
        return "onednn"
    return "onednn" if on_cpu and dtype == "float32" and onednn_available() else "torch"


def set_linear_kernel(model, kernel: str) -> int:
    """Route every `nn.Linear` of `model` through `kernel` ("onednn" or "torch"); returns how
    many layers it set. Inference only: oneDNN's op has no backward here."""
    import torch

    if kernel not in ("onednn", "torch"):
        raise ValueError(f"set_linear_kernel takes 'onednn' or 'torch', got {kernel!r}")
    n = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.__dict__.pop("forward", None)
            if kernel == "onednn":
                module.forward = functools.partial(_onednn_forward, module)
            n += 1
    return n


# CPU flags whose instructions compute in a reduced precision natively; without them PyTorch
# emulates it, far slower than fp32 (bf16 scoring of 3 leads ran past 10 minutes on an AVX2-only
# EPYC, where fp32 scores a dozen in seconds).
NATIVE_CPU_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


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
