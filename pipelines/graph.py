"""The job's graph: raw text -> LaCy delegation labels in Parquet shards, rejects and stats.

Stages: read -> validate -> group by a hash of the id (the one shuffle of texts: batching and
id-dedupe together) -> spaCy + subwords + alignment (CPU) -> Reshuffle -> reference losses
(RunInference; GPU workers via a resource hint) -> threshold (a dataset-wide order-independent
loss sketch as a side input, or a fixed one: then every stage streams) -> labels -> shards keyed
by a hash of the id (the one shuffle of labelled arrays) -> Parquet; rejects as JSONL shards and
stats.json written by the job.

Records cross stage boundaries packed (lacy_labels.codec: one zstd-compressed `bytes` each), so
shuffles move less and a runner that buffers a stage's output in memory holds less."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.utils import shared

from lacy_labels import codec
from lacy_labels.validate import validate
from pipelines import outputs, stats
from pipelines.config import LabelConfig
from pipelines.listing import Listed
from pipelines.metrics import NAMESPACE
from pipelines.plan import Plan
from pipelines.sources import ReadOptions, read_file
from pipelines.transforms import (
    REJECTS,
    AnnotateDoFn,
    LabelDoFn,
    all_losses,
    count_rejects,
    population,
    score_transform,
    split_scored,
    stable_bucket,
)


class ReadRecords(beam.PTransform):
    """Files -> raw records. With --limit, files are read in order in one step until the limit."""

    def __init__(self, cfg: LabelConfig, files: list[Listed]):
        super().__init__()
        self.cfg, self.files = cfg, files

    def expand(self, p):
        cfg, files = self.cfg, self.files
        opts = ReadOptions(
            cfg.text_field, cfg.id_field, cfg.txt_mode, cfg.max_chars, cfg.max_row_group_bytes
        )
        read = lambda entry: read_file(entry, opts)  # noqa: E731
        if cfg.limit is not None:
            return p | beam.Create([files]) | beam.FlatMap(_read_limited, read, cfg.limit)
        return p | beam.Create(files) | "SpreadFiles" >> beam.Reshuffle() | beam.FlatMap(read)


def _read_limited(files, read, limit):
    n = 0
    for path in files:
        for raw in read(path):
            if n >= limit:
                return
            n += 1
            yield raw


def _validate(raw, cfg):
    beam.metrics.Metrics.counter(NAMESPACE, "documents_in").inc()
    out = validate(raw, cfg.clean_control, cfg.max_chars)
    if isinstance(out, dict):
        yield out
    else:
        yield beam.pvalue.TaggedOutput(REJECTS, out.to_dict())


def _group_key(doc: dict, groups: int, dedupe: bool):
    """Same id, same group (so duplicates meet); without dedupe, the source position decides."""
    key = doc["id"] if dedupe else f"{doc['source']}#{doc['index']}"
    return stable_bucket(key, groups), doc


def _threshold_info(sketch, rule) -> dict:
    return {
        "threshold": rule.dataset_threshold(sketch),
        "threshold_source": "this run",
        "population_quantiles": sketch.summary(),
        "population_size": sketch.n,
        "sketch_level": sketch.level,
    }


def build(
    p, cfg: LabelConfig, meta: dict, files: list[Listed], plan: Plan, fixed: dict | None = None
) -> dict:
    """Wire the pipeline; returns the main PCollections (for tests and the writer)."""
    rule = cfg.label_rule()
    raw = p | "Read" >> ReadRecords(cfg, files)
    valid = raw | "Validate" >> beam.FlatMap(_validate, cfg).with_outputs(REJECTS, main="docs")
    annotated = (
        valid.docs
        | "KeyByGroup" >> beam.Map(_group_key, plan.groups, cfg.dedupe_ids)
        | "GroupDocs" >> beam.GroupByKey()
        | "Annotate"
        >> beam.ParDo(AnnotateDoFn(cfg, shared.Shared())).with_outputs(REJECTS, main="groups")
    )
    scored = (
        annotated.groups
        | "ToScorers" >> beam.Reshuffle()
        | "Unpack" >> beam.Map(codec.unpack_many)
        | "Score" >> score_transform(cfg, plan.threads)
        | "SplitScored" >> beam.FlatMap(split_scored).with_outputs(REJECTS, main="recs")
    )
    if fixed is not None:
        thresholds = p | "FixedThreshold" >> beam.Create(
            [{"threshold": fixed["value"], "threshold_source": fixed["source"]}]
        )
    else:
        thresholds = (
            scored.recs
            | "Population" >> beam.Map(population, rule)
            | "PopulationSketch"
            >> beam.CombineGlobally(stats.LossSketchFn(cfg.threshold_sketch_size))
            | "Threshold" >> beam.Map(_threshold_info, rule)
        )
    if fixed is not None or rule.scope == "document" or rule.rule == "none":
        # No global barrier: every document is labelled as soon as it is scored.
        threshold = fixed["value"] if fixed is not None else None
    else:
        threshold = beam.pvalue.AsSingleton(
            thresholds | "ThresholdValue" >> beam.Map(lambda t: t["threshold"])
        )
    # Packed, the scored records wait for the threshold in ~40% of the bytes; the population
    # above reads them before packing, in the same stage.
    packed = scored.recs | "Pack" >> beam.Map(codec.pack)
    labelled = packed | "Label" >> beam.ParDo(LabelDoFn(rule), threshold)
    rejects = (valid[REJECTS], annotated[REJECTS], scored[REJECTS]) | "AllRejects" >> beam.Flatten()
    _write(cfg, meta, plan, raw, labelled, rejects, thresholds)
    return {"raw": raw, "labelled": labelled, "rejects": rejects, "thresholds": thresholds}


def _write(cfg, meta, plan, raw, labelled, rejects, thresholds):
    out, n_shards = cfg.output.rstrip("/"), plan.shards
    (
        labelled
        | "KeyByShard" >> beam.Map(lambda r: (stable_bucket(r["id"], n_shards), codec.pack(r)))
        | "GroupShards" >> beam.GroupByKey()
        | "WriteShards"
        >> beam.MapTuple(
            lambda k, rows: outputs.write_shard(
                out, k, n_shards, [codec.unpack(b) for b in rows], meta, cfg.row_group_rows
            )
        )
    )
    # Gathered before counting, so that one stage counts them: runners fuse the steps after a
    # Flatten into each input's stage, and Flink then keeps one stage's count of a counter that
    # several stages increment (the rejects of Validate and of Annotate: 11 of 12 counted).
    counted = (
        rejects | "GatherRejects" >> beam.Reshuffle() | "CountRejects" >> beam.Map(count_rejects)
    )
    counted | "WriteRejects" >> outputs.WriteRejects(out)
    by_reason = (
        counted | "Reasons" >> beam.Map(lambda r: r["reason"]) | beam.combiners.Count.PerElement()
    )
    summary = labelled | "Stats" >> beam.CombineGlobally(stats.StatsFn())
    loss_sketch = (
        labelled
        | "AllLosses" >> beam.Map(all_losses)
        | "LossSketch" >> beam.CombineGlobally(stats.LossSketchFn(cfg.threshold_sketch_size))
    )
    n_in = beam.pvalue.AsSingleton(raw | "CountIn" >> beam.combiners.Count.Globally())
    (
        summary
        | "AssembleStats"
        >> beam.Map(
            _assemble_stats,
            n_in,
            beam.pvalue.AsDict(by_reason),
            beam.pvalue.AsSingleton(thresholds),
            beam.pvalue.AsSingleton(loss_sketch),
            cfg,
            plan,
        )
        | "WriteStats" >> beam.Map(outputs.write_stats, out, meta, cfg.row_group_rows)
    )


def _assemble_stats(summary, n_in, by_reason, thresholds, loss_sketch, cfg, plan):
    return {
        "documents_in": n_in,
        **summary,
        "documents_rejected": sum(by_reason.values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rule": cfg.rule,
        "threshold_scope": cfg.threshold_scope,
        "min_loss": cfg.min_loss,
        "threshold": thresholds["threshold"],
        "threshold_source": thresholds["threshold_source"],
        "threshold_population_quantiles": thresholds.get("population_quantiles"),
        "threshold_sketch_level": thresholds.get("sketch_level"),
        "loss_quantiles": loss_sketch.summary(4),
        "planned_groups": plan.groups,
        "planned_shards": plan.shards,
    }
