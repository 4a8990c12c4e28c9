"""Pipeline settings: one dataclass; every field is a CLI flag (--name) and a config-file key
(JSON or TOML, flat keys), through `lacy_labels.cli`. Precedence: defaults < config file < flags.
Resolved once and saved beside the output as config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lacy_labels import cli
from lacy_labels.facts import FactRule
from lacy_labels.grammar import DEFAULT_MAX_PARSE_CHARS, DEFAULT_SPACY_BATCH, DEFAULT_SPACY_MODEL
from lacy_labels.kernels import LINEAR_KERNELS, check_linear_kernel
from lacy_labels.reference import DEFAULT_MODEL
from lacy_labels.rules import RULES, SCOPES, LabelRule
from lacy_labels.scoring import BATCH_TOKENS, ScoreConfig
from lacy_labels.thresholds import MAX_ENTRIES, LossSketch
from pipelines.bounded import DEFAULT_ROW_GROUP_BYTES

# The library's defaults, read once: each setting has one source.
_FACT, _LABEL, _SCORE = FactRule(), LabelRule(), ScoreConfig()


_f = cli.setting


@dataclass
class LabelConfig:
    # Input / output
    output: str = _f("", "output directory (local or any Beam filesystem path)")
    input: str | None = _f(None, "file, folder or glob; default: the shipped Wikipedia leads")
    limit: int | None = _f(None, "label at most this many input records")
    overwrite: bool = _f(
        False, "replace a previous lacy output there (only lacy's own files are deleted)"
    )
    text_field: str = _f("text", "text field of JSONL/Parquet/datasets records")
    id_field: str = _f("id", "id field of JSONL/Parquet/datasets records")
    txt_mode: str = _f(
        "file", "plain-text files: one document per 'file' or per 'line'", choices=("file", "line")
    )
    clean_control: bool = _f(True, "replace control characters (NUL included) with spaces")
    max_chars: int = _f(5_000_000, "reject documents longer than this many characters")
    max_row_group_bytes: int = _f(
        DEFAULT_ROW_GROUP_BYTES,
        "Parquet row groups larger than this (uncompressed) are not decoded: their rows are "
        "rejected (pyarrow decodes a row group whole)",
    )
    license: str = _f("cc-by-sa-4.0", "dataset license recorded in the dataset card")
    # spaCy and the fact proxy
    spacy_model: str = _f(DEFAULT_SPACY_MODEL, "spaCy pipeline package name or path")
    spacy_batch_size: int = _f(DEFAULT_SPACY_BATCH, "spaCy nlp.pipe batch size")
    max_parse_chars: int = _f(
        DEFAULT_MAX_PARSE_CHARS, "spaCy parses longer texts in pieces of this size"
    )
    fact_entity_types: list[str] = _f(
        _FACT.entity_types, "entity types that are facts (empty: all)", nargs="*"
    )
    fact_use_entities: bool = _f(_FACT.use_entities, "words inside named entities are facts")
    fact_pos: list[str] = _f(_FACT.pos, "coarse POS tags that are facts", nargs="*")
    fact_deps: list[str] = _f(_FACT.deps, "dependency labels that are facts", nargs="*")
    fact_exclude_pos: list[str] = _f(
        _FACT.exclude_pos,
        "coarse POS tags that are never facts, even inside an entity (give none to keep them)",
        nargs="*",
    )
    # Reference model
    reference_model: str = _f(DEFAULT_MODEL, "'smollm2' (shipped), a .gguf file or a model folder")
    model_cache: str | None = _f(None, "cache for converted models (default ~/.cache/lacy)")
    device: str = _f("cpu", "torch device for the reference model")
    dtype: str = _f("float32", "reference model dtype (float32 exact; bfloat16 opt-in)")
    threads: int | None = _f(None, "torch threads per worker (default: torch's choice)")
    linear_kernel: str = _f(
        "auto",
        "CPU matmul kernel of the reference model's linear layers (auto: oneDNN for fp32 on CPU)",
        choices=LINEAR_KERNELS,
    )
    window: int = _f(_SCORE.window, "scoring window (positions, start token included)")
    min_context: int | None = _f(
        _SCORE.min_context, "left context kept by every scored token (default window/8)"
    )
    batch_tokens: int | None = _f(
        _SCORE.batch_tokens,
        f"padded positions per forward pass (default by device: {BATCH_TOKENS})",
    )
    group_chars: int = _f(
        1 << 17,
        "characters per annotate/score group (the scorer's length-bucketing pool; raise it on "
        "a GPU to several times batch_tokens x ~4.5 characters)",
    )
    score_accelerator: str | None = _f(
        None,
        "Beam accelerator resource hint for the scoring stage only, e.g. "
        "'type:nvidia-l4;count:1;install-nvidia-driver' (Dataflow right fitting)",
    )
    dedupe_ids: bool = _f(
        True,
        "reject repeated ids (resolved inside the grouping shuffle; off: ids must be unique)",
    )
    # Labels
    rule: str = _f(_LABEL.rule, "labelling rule", choices=RULES)
    fact_quantile: float = _f(
        _LABEL.fact_quantile, "lacy: delegate facts at or above this loss quantile"
    )
    loss_fraction: float = _f(_LABEL.loss_fraction, "loss: delegate this share of all tokens")
    min_loss: float = _f(
        _LABEL.min_loss, "delegate only tokens whose reference loss is at least this (nats)"
    )
    threshold_scope: str = _f(
        _LABEL.scope, "thresholds over the whole dataset or per document", choices=SCOPES
    )
    threshold_sketch_size: int = _f(
        MAX_ENTRIES,
        "distinct float32 losses the threshold sketch holds exactly before it coarsens its bins",
    )
    threshold: float | None = _f(
        None, "fixed dataset threshold (no global barrier: every stage streams)"
    )
    threshold_from: str | None = _f(
        None, "take the fixed threshold from a previous output's stats.json (e.g. a sample run)"
    )
    listen_all: bool = _f(
        False,
        "let Beam's local runner services listen on every interface (default: loopback only)",
    )
    # Output layout
    shard_chars: int = _f(1 << 23, "characters of input text per Parquet shard (about)")
    row_group_rows: int = _f(500, "documents per Parquet row group")
    samples_in_report: int = _f(10, "sample documents shown in report.html")
    report: bool = _f(True, "write report.html beside the data")

    def fact_rule(self) -> FactRule:
        return FactRule(
            entity_types=tuple(self.fact_entity_types),
            use_entities=self.fact_use_entities,
            pos=tuple(self.fact_pos),
            deps=tuple(self.fact_deps),
            exclude_pos=tuple(self.fact_exclude_pos),
        )

    def label_rule(self) -> LabelRule:
        return LabelRule(
            self.rule, self.fact_quantile, self.loss_fraction, self.threshold_scope, self.min_loss
        )

    def score_config(self) -> ScoreConfig:
        return ScoreConfig(self.window, self.min_context, self.batch_tokens)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def validate(self) -> LabelConfig:
        if not self.output:
            raise ValueError("--output is required")
        self.fact_rule()
        self.label_rule()
        self.score_config().context()
        LossSketch(self.threshold_sketch_size)
        check_linear_kernel(self.linear_kernel, self.device)  # no torch: validation is pure
        if self.threshold is not None and self.threshold_from:
            raise ValueError("give --threshold or --threshold_from, not both")
        fixed = self.threshold is not None or self.threshold_from
        if fixed and (self.threshold_scope != "dataset" or self.rule == "none"):
            raise ValueError("a fixed threshold needs a dataset-scope lacy or loss rule")
        for name in ("shard_chars", "row_group_rows", "group_chars", "spacy_batch_size",
                     "max_chars", "max_row_group_bytes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        return self


DESCRIPTION = (
    "Label text with LaCy delegation labels (spaCy + reference-model losses) and write Parquet "
    "shards. Unknown flags are passed to Apache Beam untouched."
)
PROG = "lacy-label"


def build_parser():
    return cli.build_parser(LabelConfig, PROG, DESCRIPTION)


def resolve(argv: list[str] | None) -> tuple[LabelConfig, list[str]]:
    """(settings, Beam arguments) from the command line."""
    cfg, beam_args = cli.parse(LabelConfig, argv, PROG, DESCRIPTION, known_only=True)
    return cfg.validate(), beam_args
