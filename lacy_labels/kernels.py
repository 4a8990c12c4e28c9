"""Which matrix-multiply kernel the reference model's linear layers use on CPU.

PyTorch's CPU wheels run fp32 `nn.Linear` through MKL, which takes a slower code path on
non-Intel CPUs (on this project's AMD EPYC machines it reaches 75-160 GFLOP/s where oneDNN, also
inside the wheel, reaches 165-210). "onednn" routes each linear layer of an inference-only model
through oneDNN's fp32 kernel: same precision, a different summation order (losses move by about
2e-4 nats). The swap is reversible and keeps the modules and their parameters as they are."""

from __future__ import annotations

import functools

LINEAR_KERNELS = ("auto", "onednn", "torch")


def _onednn_op():
    import torch

    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn_forward(module, x):
    import torch

    if x.device.type != "cpu" or x.dtype != module.weight.dtype:
        return torch.nn.functional.linear(x, module.weight, module.bias)
    return torch.ops.mkldnn._linear_pointwise(x, module.weight, module.bias, "none", [], "")


@functools.cache
def onednn_available() -> bool:
    """True if this torch build has oneDNN's linear op and it agrees with `F.linear` (a check:
    it changes nothing; see `lacy_labels.cpu.bound_primitive_caches` for what to call before it)."""
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


def check_linear_kernel(kernel: str, device: str) -> None:
    """A ValueError for a kernel name lacy does not know or one that cannot run on `device`
    (nothing is imported or run: what this torch build offers is checked at load)."""
    if kernel not in LINEAR_KERNELS:
        raise ValueError(f"linear_kernel must be one of {LINEAR_KERNELS}, got {kernel!r}")
    if kernel == "onednn" and str(device).split(":")[0] != "cpu":
        raise ValueError(f"linear_kernel 'onednn' runs on CPU only, not on {device!r}")


def resolve_linear_kernel(kernel: str, device: str, dtype: str) -> str:
    """The kernel `kernel` means here: "auto" is "onednn" for fp32 on CPU when available."""
    check_linear_kernel(kernel, device)
    if kernel == "torch":
        return "torch"
    on_cpu = str(device).split(":")[0] == "cpu"
    if kernel == "onednn":
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
