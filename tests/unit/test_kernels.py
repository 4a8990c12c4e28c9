"""The CPU linear-kernel choice: resolution rules, a reversible swap, and losses that match the
plain model's within the scoring tolerance."""

import platform

import pytest
import torch

from lacy_labels.cpu import (
    CACHE_CAPACITY_ENV,
    bound_primitive_caches,
    emulated_on_cpu,
    warn_if_emulated,
)
from lacy_labels.kernels import (
    onednn_available,
    resolve_linear_kernel,
    set_linear_kernel,
)

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="no oneDNN in this torch build")


def test_resolution_rules():
    assert resolve_linear_kernel("torch", "cpu", "float32") == "torch"
    assert resolve_linear_kernel("auto", "cpu", "bfloat16") == "torch"
    assert resolve_linear_kernel("auto", "cuda:0", "float32") == "torch"
    want = "onednn" if onednn_available() else "torch"
    assert resolve_linear_kernel("auto", "cpu", "float32") == want
    with pytest.raises(ValueError, match="one of"):
        resolve_linear_kernel("mkl", "cpu", "float32")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_linear_kernel("onednn", "cuda", "float32")


def test_onednn_cache_bounds_are_set_and_a_value_already_there_wins():
    env = {"LRU_CACHE_CAPACITY": "64"}
    got = bound_primitive_caches(env)
    assert got == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "16", "LRU_CACHE_CAPACITY": "64"} == env
    assert set(got) == set(CACHE_CAPACITY_ENV)


@needs_onednn
def test_swap_is_reversible_and_matches_f_linear():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 40), torch.nn.GELU(), torch.nn.Linear(40, 7))
    x = torch.randn(3, 5, 24)
    with torch.inference_mode():
        want = model(x)
        assert set_linear_kernel(model, "onednn") == 2
        assert all("forward" in m.__dict__ for m in model if isinstance(m, torch.nn.Linear))
        with torch.profiler.profile() as prof:
            got = model(x)
        calls = {e.key: e.count for e in prof.key_averages()}
        assert calls.get("mkldnn::_linear_pointwise") == 2  # both layers went through oneDNN
        assert "aten::linear" not in calls
        assert set_linear_kernel(model, "torch") == 2
        assert not any("forward" in m.__dict__ for m in model)
        again = model(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(again, want)
    with pytest.raises(ValueError):
        set_linear_kernel(model, "auto")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 CPU wheel only")
def test_private_onednn_op_still_works_on_the_pinned_torch():
    """kernels.py uses torch.ops.mkldnn._linear_pointwise, a private op. `auto` falls back to
    MKL quietly when it is gone or disagrees; this test makes that change loud instead (scoring
    would lose ~1.25x on AMD CPUs)."""
    assert onednn_available(), "torch.ops.mkldnn._linear_pointwise is missing or disagrees"


def test_reduced_precision_without_native_instructions_warns_once(caplog):
    avx2, bf16 = frozenset({"avx2", "fma"}), frozenset({"avx2", "avx512f", "avx512_bf16"})
    assert emulated_on_cpu("bfloat16", avx2) and emulated_on_cpu("float16", bf16)
    assert not emulated_on_cpu("bfloat16", bf16) and not emulated_on_cpu("float32", avx2)
    assert not emulated_on_cpu("bfloat16", frozenset())  # flags unknown: no claim
    assert not warn_if_emulated("bfloat16", "cuda", avx2)
    with caplog.at_level("WARNING", logger="lacy"):
        assert warn_if_emulated("bfloat16", "cpu", avx2)
        assert warn_if_emulated("bfloat16", "cpu", avx2)
    lines = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert len(lines) == 1 and "--dtype float32" in lines[0]
