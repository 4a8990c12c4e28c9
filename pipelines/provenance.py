"""What made the labels: versions of lacy, the spaCy pipeline, the tokenizer and the reference
model, and the rules. Stored in every shard's Parquet metadata and in config.json."""

from __future__ import annotations

from lacy_labels import __version__
from pipelines.config import LabelConfig


def provenance(cfg: LabelConfig) -> dict:
    """Versions and settings that made the labels."""
    from lacy_labels.grammar import load_spacy, spacy_identity
    from lacy_labels.kernels import resolve_linear_kernel
    from lacy_labels.reference import model_identity, resolve_model_dir, shared_tokenizer

    model_dir = resolve_model_dir(cfg.reference_model, cfg.model_cache)
    tok = shared_tokenizer(str(model_dir))
    return {
        "lacy_version": __version__,
        **spacy_identity(load_spacy(cfg.spacy_model)),
        **model_identity(model_dir, tok),
        "reference_dtype": cfg.dtype,
        # as resolved where the job was launched; workers resolve "auto" the same way
        "reference_linear_kernel": resolve_linear_kernel(cfg.linear_kernel, cfg.device, cfg.dtype),
        "fact_rule": cfg.fact_rule().to_dict(),
        "label_rule": cfg.label_rule().to_dict(),
        "window": cfg.window,
        "min_context": cfg.score_config().context(),
    }
