"""The main job: raw text -> LaCy delegation labels in Parquet shards.

    python -m pipelines.label --output DIR [--input PATH_OR_GLOB] [--limit N] [--overwrite]
        [--config FILE] [pipeline flags] [Beam options]

Stages: read -> validate -> group by a hash of the id (the one shuffle of texts: batching and
id-dedupe together) -> spaCy + subwords + alignment (CPU) -> Reshuffle -> reference losses
(RunInference; GPU workers via a resource hint) -> threshold (a dataset-wide order-independent
loss sketch as a side input, or a fixed one: then every stage streams) -> labels -> shards keyed
by a hash of the id (the one shuffle of labelled arrays) -> Parquet; rejects as JSONL shards,
stats.json written by the job; config.json before it, the dataset card and report.html after.

Records cross stage boundaries packed (lacy_labels.codec: one zstd-compressed `bytes` each, about
21 bytes per token against 56 with Beam's default coder), so shuffles move less and a runner that
buffers a stage's output in memory holds less. Group and shard counts are fixed before the run
from the input files' sizes, so no stage waits for a global count."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.utils import shared

from lacy_labels import __version__, codec
from lacy_labels.validate import validate
from pipelines import outputs, stats
from pipelines.card import render_card
from pipelines.config import LabelConfig, resolve
from pipelines.sources import expand_inputs, input_bytes, read_file
from pipelines.transforms import (
    NAMESPACE,
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

log = logging.getLogger("lacy")
LIMIT_BYTES_PER_RECORD = 1024  # with --limit, the size estimate assumes this much per record
MIN_GROUP_CHARS = 8192  # a group smaller than about two CPU batches pads more than it spreads
OMP_WAIT, PASSIVE = "OMP_WAIT_POLICY", "PASSIVE"  # OpenMP threads sleep while they wait


def provenance(cfg: LabelConfig) -> dict:
    """Versions and settings that made the labels (stored in Parquet metadata and config.json)."""
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


def fixed_threshold(cfg: LabelConfig) -> dict | None:
    """{"value", "source"} of a fixed threshold (--threshold or --threshold_from), else None.
    A previous output must have used the same rule and quantile."""
    if cfg.threshold is not None:
        return {"value": float(cfg.threshold), "source": "--threshold"}
    if not cfg.threshold_from:
        return None
    prev = cfg.threshold_from.rstrip("/")
    try:
        s = outputs.read_json(f"{prev}/stats.json")
        settings = outputs.read_json(f"{prev}/config.json")["settings"]
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"--threshold_from {prev}: not a labelled output ({e})") from None
    same = ("rule", "fact_quantile", "loss_fraction", "threshold_scope", "reference_model")
    differ = [k for k in same if settings.get(k) != getattr(cfg, k)]
    if differ or s.get("threshold") is None:
        raise ValueError(
            f"--threshold_from {prev}: its labels used other settings ({', '.join(differ)})"
            if differ
            else f"--threshold_from {prev}: it has no dataset threshold"
        )
    return {"value": float(s["threshold"]), "source": f"{prev}/stats.json"}


def plan_sizes(cfg: LabelConfig, files: list[str], workers: int = 1) -> dict:
    """Group and shard counts from the input's size, fixed before the run. The worker count is
    recorded but never changes the plan: groups decide the padded batches, hence the bits of
    `ref_loss`, so rows stay identical whatever the number of workers. A plan with fewer than
    two groups per worker says how to spread the input."""
    size = input_bytes(files)
    if cfg.limit is not None:
        size = min(size, cfg.limit * LIMIT_BYTES_PER_RECORD)
    groups = max(1, math.ceil(size / cfg.group_chars))
    if 1 < workers and groups < 2 * workers:
        log.warning(
            "%d groups of --group_chars %d for %d workers: work spreads unevenly; "
            "--group_chars %d would give each worker two",
            groups, cfg.group_chars, workers, max(MIN_GROUP_CHARS, size // (2 * workers)),
        )  # fmt: skip
    return {
        "input_bytes": size,
        "workers": workers,
        "groups": groups,
        "shards": max(1, math.ceil(size / cfg.shard_chars)),
    }


def planned_workers(opts: PipelineOptions) -> int:
    """How many workers the runner will use, as far as its options say: local processes
    (--direct_num_workers), Dataflow's --max_num_workers/--num_workers, Flink's --parallelism;
    1 when none is set."""
    o = opts.get_all_options()
    if o.get("direct_running_mode") in ("multi_processing", "multi_threading"):
        return o.get("direct_num_workers") or os.cpu_count() or 1
    for name in ("max_num_workers", "num_workers", "parallelism"):
        if (o.get(name) or 0) > 0:
            return int(o[name])
    return 1


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_threads(cfg: LabelConfig, opts: PipelineOptions) -> tuple[int | None, str]:
    """Torch threads per scoring process, and why. Torch's default is every core in every
    process, and OpenMP threads spin while they wait: two local worker processes with two
    spinning threads each on 2 cores took 138 s for 300 leads against 34 s in one process.
    Local worker processes keep every core but wait passively (OMP_WAIT_POLICY=PASSIVE, set
    for them by `local_worker_env`), so a worker whose peer is idle still uses both cores (39 s
    against 44 s with one thread each when 3 groups meet 2 workers); with another wait policy
    they get cores / workers. On CUDA the host threads matter little; runners whose processes
    per machine lacy cannot know (Flink, portable) keep torch's default, and say so."""
    if cfg.threads is not None:
        return cfg.threads, "--threads"
    if cfg.device.split(":")[0] != "cpu":
        return None, "torch default (accelerator)"
    o = opts.get_all_options()
    mode, cores, workers = o.get("direct_running_mode"), usable_cores(), planned_workers(opts)
    if mode == "multi_processing" and os.environ.get(OMP_WAIT, PASSIVE).upper() == PASSIVE:
        return cores, f"{cores} cores in each of {workers} local workers, waiting passively"
    if mode in ("multi_processing", "multi_threading"):
        return max(1, cores // workers), f"{cores} cores / {workers} local workers"
    runner = str(opts.view_as(StandardOptions).runner or "")
    if runner.endswith("DataflowRunner"):
        if "no_use_multiple_sdk_containers" in (o.get("experiments") or []):
            return None, "torch default (one SDK process per Dataflow worker)"
        return 1, "Dataflow runs one SDK process per vCPU"
    return None, "torch default"


class ReadRecords(beam.PTransform):
    """Files -> raw records. With --limit, files are read in order in one step until the limit."""

    def __init__(self, cfg: LabelConfig, files: list[str]):
        super().__init__()
        self.cfg, self.files = cfg, files

    def expand(self, p):
        cfg, files = self.cfg, self.files
        read = lambda path: read_file(path, cfg.text_field, cfg.id_field, cfg.txt_mode)  # noqa: E731
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


def build(p, cfg: LabelConfig, meta: dict, files: list[str], sizes: dict, fixed=None) -> dict:
    """Wire the pipeline; returns the main PCollections (for tests and the writer)."""
    rule = cfg.label_rule()
    raw = p | "Read" >> ReadRecords(cfg, files)
    valid = raw | "Validate" >> beam.FlatMap(_validate, cfg).with_outputs(REJECTS, main="docs")
    annotated = (
        valid.docs
        | "KeyByGroup" >> beam.Map(_group_key, sizes["groups"], cfg.dedupe_ids)
        | "GroupDocs" >> beam.GroupByKey()
        | "Annotate"
        >> beam.ParDo(AnnotateDoFn(cfg, shared.Shared())).with_outputs(REJECTS, main="groups")
    )
    scored = (
        annotated.groups
        | "ToScorers" >> beam.Reshuffle()
        | "Unpack" >> beam.Map(codec.unpack_many)
        | "Score" >> score_transform(cfg)
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
    _write(cfg, meta, sizes, raw, labelled, rejects, thresholds)
    return {"raw": raw, "labelled": labelled, "rejects": rejects, "thresholds": thresholds}


def _write(cfg, meta, sizes, raw, labelled, rejects, thresholds):
    out, n_shards = cfg.output.rstrip("/"), sizes["shards"]
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
    counted = rejects | "CountRejects" >> beam.Map(count_rejects)
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
            sizes,
        )
        | "WriteStats" >> beam.Map(outputs.write_stats, out, meta, cfg.row_group_rows)
    )


def _assemble_stats(summary, n_in, by_reason, thresholds, loss_sketch, cfg, sizes):
    return {
        "documents_in": n_in,
        **summary,
        "documents_rejected": sum(by_reason.values()),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "rule": cfg.rule,
        "threshold_scope": cfg.threshold_scope,
        "threshold": thresholds["threshold"],
        "threshold_source": thresholds["threshold_source"],
        "threshold_population_quantiles": thresholds.get("population_quantiles"),
        "threshold_sketch_level": thresholds.get("sketch_level"),
        "loss_quantiles": loss_sketch.summary(4),
        "planned_groups": sizes["groups"],
        "planned_shards": sizes["shards"],
    }


def beam_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options, with the default (and DirectRunner) mapped to the FnApiRunner: the
    DirectRunner first tries to download the Prism binary, which offline machines cannot."""
    opts = PipelineOptions(beam_args)
    std = opts.view_as(StandardOptions)
    if std.runner in (None, "DirectRunner", "SwitchingDirectRunner"):
        std.runner = "FnApiRunner"
    local_worker_env(opts)
    return opts


def local_worker_env(opts: PipelineOptions) -> None:
    """The environment local worker processes inherit (this process keeps it after the run):
    OpenMP threads that wait passively (see resolve_threads), and a log level. The FnApiRunner
    starts local multi-process workers with no pipeline options, so they log at INFO and bury
    lacy's progress. A worker reads PIPELINE_OPTIONS_FILE from its environment: point it at a
    file that sets only the SDK harness log level (WARNING unless
    --default_sdk_harness_log_level says; lacy's own progress stays at INFO; the workers had no
    other options to lose). Values already in the environment win."""
    all_opts = opts.get_all_options()
    if all_opts.get("direct_running_mode") != "multi_processing":
        return
    os.environ.setdefault(OMP_WAIT, PASSIVE)  # see resolve_threads; a value already set wins
    if "PIPELINE_OPTIONS_FILE" in os.environ:  # the user's, or one written by an earlier run
        return
    if opts.view_as(StandardOptions).runner not in ("FnApiRunner", "DirectRunner"):
        return
    level = all_opts.get("default_sdk_harness_log_level") or "WARNING"
    fd, path = tempfile.mkstemp(prefix="lacy-worker-options-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        options = {
            "default_sdk_harness_log_level": level,
            "sdk_harness_log_level_overrides": {"lacy": "INFO"},
        }
        json.dump({"options": options}, f)
    os.environ["PIPELINE_OPTIONS_FILE"] = path


def run(argv: list[str] | None = None) -> dict:
    """Run the job; returns the final stats (plus the output directory, wall time, and the job's
    Beam metrics)."""
    cfg, beam_args = resolve(argv)
    opts = beam_options(beam_args)
    threads, why = resolve_threads(cfg, opts)
    if threads != cfg.threads:
        log.info("torch threads per worker: %d (%s)", threads, why)
        cfg = dataclasses.replace(cfg, threads=threads)
    result, wall = run_job(cfg, beam_args, opts, why)
    return finish(cfg, wall) | {
        "output": cfg.output.rstrip("/"),
        "report": cfg.report,
        "metrics": beam_counters(result),
    }


def run_job(cfg: LabelConfig, beam_args: list[str], opts: PipelineOptions, threads_from: str):
    """Write config.json, run the pipeline to the end; (PipelineResult, wall seconds)."""
    out = cfg.output.rstrip("/")
    outputs.prepare_output(out, cfg.overwrite)
    files = expand_inputs(cfg.input)
    sizes, fixed = plan_sizes(cfg, files, planned_workers(opts)), fixed_threshold(cfg)
    sizes["threads_from"] = threads_from
    meta = provenance(cfg) | {"threshold_source": fixed["source"] if fixed else "this run"}
    outputs.write_json(
        f"{out}/config.json",
        {
            "settings": cfg.to_dict(),
            "provenance": meta,
            "plan": sizes,
            "fixed_threshold": fixed,
            "beam_args": beam_args,
        },
    )
    t0 = time.time()
    p = beam.Pipeline(options=opts)
    build(p, cfg, meta, files, sizes, fixed)
    result = p.run()
    result.wait_until_finish()
    return result, time.time() - t0


def beam_counters(result) -> dict:
    """lacy's Beam counters and distributions (committed values), by name ({} for a runner
    without metrics)."""
    from apache_beam.metrics.metric import MetricsFilter

    try:
        q = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    except NotImplementedError:  # e.g. Beam's DaskRunner keeps no metrics
        return {}
    out = {c.key.metric.name: c.committed for c in q["counters"]}
    for d in q["distributions"]:
        v = d.committed
        out[d.key.metric.name] = {"count": v.count, "sum": v.sum, "min": v.min, "max": v.max}
    return dict(sorted(out.items()))


def finish(cfg: LabelConfig, wall: float) -> dict:
    """Driver-side epilogue: reads the job's stats.json (never rewrites it), writes run.json (wall
    time), the dataset card and the report."""
    out = cfg.output.rstrip("/")
    summary = outputs.read_json(f"{out}/stats.json")
    meta = outputs.read_json(f"{out}/config.json")["provenance"]
    run_info = {
        "wall_time_s": round(wall, 2),
        "tokens_per_s": round(summary["tokens"] / wall, 1) if wall > 0 else None,
    }
    outputs.write_json(f"{out}/run.json", run_info)  # the job's own stats.json stays as written
    card = render_card(cfg.to_dict(), meta, summary | run_info)
    outputs.write_bytes(f"{out}/README.md", card.encode("utf-8"))
    if cfg.report:
        from pipelines.report import write_report

        write_report(out, cfg.samples_in_report)
    return summary | run_info


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
        f"wrote {out}/data/*.parquet, {out}/rejects/*.jsonl, {out}/stats.json, "
        f"{out}/config.json, {out}/README.md (dataset card)"
        + (f", {out}/report.html" if s["report"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
