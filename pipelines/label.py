"""The main job: raw text -> LaCy delegation labels in Parquet shards.

    python -m pipelines.label --output DIR [--input PATH_OR_GLOB] [--limit N] [--overwrite]
        [--config FILE] [pipeline flags] [Beam options]

Stages: read -> validate -> dedupe ids -> spaCy + subwords + alignment -> reference losses ->
dataset-wide threshold (an exact-or-bounded, order-independent loss sketch; a side input) ->
labels -> write (+ rejects, stats.json, config.json, dataset card, report.html)."""

from __future__ import annotations

import logging
import math
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared

from lacy_labels import __version__
from lacy_labels.validate import resolve_duplicates, validate
from pipelines import outputs, stats
from pipelines.card import render_card
from pipelines.config import LabelConfig, resolve
from pipelines.sources import expand_inputs, read_file
from pipelines.transforms import (
    REJECTS,
    AnnotateDoFn,
    ScoreDoFn,
    all_losses,
    label_record,
    population,
    stable_bucket,
)

log = logging.getLogger("lacy")


def provenance(cfg: LabelConfig) -> dict:
    """Versions and settings that made the labels (stored in Parquet metadata and config.json)."""
    from lacy_labels.grammar import load_spacy, spacy_identity
    from lacy_labels.kernels import resolve_linear_kernel
    from lacy_labels.reference import load_tokenizer, model_identity, resolve_model_dir

    model_dir = resolve_model_dir(cfg.reference_model, cfg.model_cache)
    tok = load_tokenizer(model_dir)
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


class ReadRecords(beam.PTransform):
    """Files -> raw records. With --limit, files are read in order in one step until the limit."""

    def __init__(self, cfg: LabelConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, p):
        cfg, files = self.cfg, expand_inputs(self.cfg.input)
        read = lambda path: read_file(path, cfg.text_field, cfg.id_field, cfg.txt_mode)  # noqa: E731
        if cfg.limit is not None:
            return (
                p
                | beam.Create([files])
                | beam.FlatMap(_read_limited, read, cfg.limit)
                | "Spread" >> beam.Reshuffle()
            )
        return (
            p
            | beam.Create(files)
            | "SpreadFiles" >> beam.Reshuffle()
            | beam.FlatMap(read)
            | "SpreadRecords" >> beam.Reshuffle()
        )


def _read_limited(files, read, limit):
    n = 0
    for path in files:
        for raw in read(path):
            if n >= limit:
                return
            n += 1
            yield raw


def _validate(raw, cfg):
    out = validate(raw, cfg.clean_control, cfg.max_chars)
    if isinstance(out, dict):
        yield out
    else:
        yield beam.pvalue.TaggedOutput(REJECTS, out.to_dict())


def _dedupe(element):
    doc_id, docs = element
    keep, dups = resolve_duplicates(doc_id, list(docs))
    yield keep
    for d in dups:
        yield beam.pvalue.TaggedOutput(REJECTS, d.to_dict())


def _thresholds(sketch, rule) -> dict:
    """The dataset-wide threshold (None with per-document scope) and its population's spread."""
    return {
        "threshold": rule.dataset_threshold(sketch),
        "population_quantiles": sketch.summary(),
        "population_size": sketch.n,
        "sketch_level": sketch.level,
    }


def _batch_key(doc: dict, n_docs: int, per_batch: int):
    return stable_bucket(doc["id"], math.ceil(n_docs / per_batch)), doc


def build(p, cfg: LabelConfig, meta: dict) -> dict:
    """Wire the pipeline; returns the main PCollections (for tests and the writer)."""
    rule = cfg.label_rule()
    raw = p | "Read" >> ReadRecords(cfg)
    valid = raw | "Validate" >> beam.FlatMap(_validate, cfg).with_outputs(REJECTS, main="docs")
    unique = (
        valid.docs
        | "KeyById" >> beam.Map(lambda d: (d["id"], d))
        | "GroupById" >> beam.GroupByKey()
        | "Dedupe" >> beam.FlatMap(_dedupe).with_outputs(REJECTS, main="docs")
    )
    n_docs = beam.pvalue.AsSingleton(unique.docs | "CountDocs" >> beam.combiners.Count.Globally())
    handle = shared.Shared()
    annotated = (
        unique.docs
        | "KeyByBatch" >> beam.Map(_batch_key, n_docs, cfg.docs_per_batch)
        | "GroupIntoBatches" >> beam.GroupByKey()
        | "Annotate" >> beam.ParDo(AnnotateDoFn(cfg, handle)).with_outputs(REJECTS, main="recs")
    )
    scored = annotated.recs | "Score" >> beam.ParDo(ScoreDoFn(cfg, handle)).with_outputs(
        REJECTS, main="recs"
    )
    thresholds = (
        scored.recs
        | "Population" >> beam.Map(population, rule)
        | "PopulationSketch" >> beam.CombineGlobally(stats.LossSketchFn(cfg.threshold_sketch_size))
        | "Threshold" >> beam.Map(_thresholds, rule)
    )
    labelled = scored.recs | "Label" >> beam.Map(
        label_record, beam.pvalue.AsSingleton(thresholds), rule
    )
    rejects = (valid[REJECTS], unique[REJECTS], annotated[REJECTS], scored[REJECTS]) | (
        "AllRejects" >> beam.Flatten()
    )
    _write(cfg, meta, raw, labelled, rejects, thresholds)
    return {"raw": raw, "labelled": labelled, "rejects": rejects, "thresholds": thresholds}


def _write(cfg, meta, raw, labelled, rejects, thresholds):
    out = cfg.output.rstrip("/")
    n_out = beam.pvalue.AsSingleton(labelled | "CountOut" >> beam.combiners.Count.Globally())
    n_shards = lambda n: max(1, math.ceil(n / cfg.shard_rows))  # noqa: E731
    (
        labelled
        | "KeyByShard" >> beam.Map(lambda r, n: (stable_bucket(r["id"], n_shards(n)), r), n_out)
        | "GroupShards" >> beam.GroupByKey()
        | "WriteShards"
        >> beam.Map(
            lambda kv, n: outputs.write_shard(
                out, kv[0], n_shards(n), list(kv[1]), meta, cfg.row_group_rows
            ),
            n_out,
        )
    )
    all_rejects = rejects | "RejectList" >> beam.combiners.ToList()
    all_rejects | "WriteRejects" >> beam.Map(lambda rs: outputs.write_rejects(out, rs))
    summary = labelled | "Stats" >> beam.CombineGlobally(stats.StatsFn())
    loss_grid = (
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
            beam.pvalue.AsSingleton(all_rejects),
            beam.pvalue.AsSingleton(thresholds),
            beam.pvalue.AsSingleton(loss_grid),
            cfg,
        )
        | "WriteStats" >> beam.Map(lambda s: outputs.write_json(f"{out}/stats.json", s))
    )


def _assemble_stats(summary, n_in, rejects, thresholds, loss_grid, cfg):
    by_reason = {}
    for r in rejects:
        by_reason[r["reason"]] = by_reason.get(r["reason"], 0) + 1
    return {
        "documents_in": n_in,
        **summary,
        "documents_rejected": len(rejects),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rule": cfg.rule,
        "threshold_scope": cfg.threshold_scope,
        "threshold": thresholds["threshold"],
        "threshold_population_quantiles": thresholds["population_quantiles"],
        "threshold_sketch_level": thresholds["sketch_level"],
        "loss_quantiles": loss_grid.summary(4),
    }


def beam_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options, with the default (and DirectRunner) mapped to the FnApiRunner: the
    DirectRunner first tries to download the Prism binary, which offline machines cannot."""
    opts = PipelineOptions(beam_args)
    std = opts.view_as(StandardOptions)
    if std.runner in (None, "DirectRunner", "SwitchingDirectRunner"):
        std.runner = "FnApiRunner"
    return opts


def run(argv: list[str] | None = None) -> dict:
    """Run the job; returns the final stats (plus the output directory)."""
    cfg, beam_args = resolve(argv)
    out = cfg.output.rstrip("/")
    outputs.prepare_output(out, cfg.overwrite)
    meta = provenance(cfg)
    outputs.write_json(
        f"{out}/config.json",
        {"settings": cfg.to_dict(), "provenance": meta, "beam_args": beam_args},
    )
    t0 = time.time()
    with beam.Pipeline(options=beam_options(beam_args)) as p:
        build(p, cfg, meta)
    wall = time.time() - t0
    return finish(cfg, meta, wall) | {"output": out, "report": cfg.report}


def finish(cfg: LabelConfig, meta: dict, wall: float) -> dict:
    """Driver-side epilogue: wall time into stats.json, an empty shard when nothing was
    labelled, then the dataset card and the report."""
    out = cfg.output.rstrip("/")
    summary = outputs.read_json(f"{out}/stats.json")
    summary["wall_time_s"] = round(wall, 2)
    summary["tokens_per_s"] = round(summary["tokens"] / wall, 1) if wall > 0 else None
    outputs.write_json(f"{out}/stats.json", summary)
    if summary["documents_out"] == 0:
        outputs.write_shard(out, 0, 1, [], meta, cfg.row_group_rows)
    card = render_card(cfg.to_dict(), meta, summary)
    outputs.write_bytes(f"{out}/README.md", card.encode("utf-8"))
    if cfg.report:
        from pipelines.report import write_report

        write_report(out, cfg.samples_in_report)
    return summary


def main(argv: list[str] | None = None) -> int:
    # Beam configures the root logger at import (WARNING): give lacy's progress its own handler.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s lacy: %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        s = run(argv)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = s["output"]
    print(
        f"labelled {s['documents_out']} of {s['documents_in']} documents "
        f"({s['documents_rejected']} rejected), {s['tokens']} tokens, "
        f"{s['fact_tokens']} facts ({s['fact_share']:.1%}), {s['delegated_tokens']} delegated "
        f"({s['delegated_share']:.1%}), threshold {s['threshold']}, in {s['wall_time_s']} s\n"
        f"wrote {out}/data/*.parquet, {out}/rejects/rejects.jsonl, {out}/stats.json, "
        f"{out}/config.json, {out}/README.md (dataset card)"
        + (f", {out}/report.html" if s["report"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
