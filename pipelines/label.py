"""The launcher: `python -m pipelines.label --output DIR [...]` labels text with LaCy delegation
labels and writes Parquet shards, rejects, stats.json, config.json, a dataset card and a report.

    python -m pipelines.label --output DIR [--input PATH_OR_GLOB] [--limit N] [--overwrite]
        [--config FILE] [pipeline flags] [Beam options]

It reads like Beam's examples: resolve the settings, plan, write config.json, build the graph
(`pipelines.graph`), run it, then the driver-side epilogue. Which stage does what is in
`pipelines.graph`; what is fixed before the run in `pipelines.plan`."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from lacy_labels.cpu import bound_primitive_caches
from pipelines import dataflow, flink, layout, outputs
from pipelines.card import render_card
from pipelines.config import LabelConfig, resolve
from pipelines.graph import build
from pipelines.listing import expand_inputs
from pipelines.local_workers import beam_options, local_env, worker_env
from pipelines.loopback import loopback_only
from pipelines.metrics import beam_counters
from pipelines.plan import fixed_threshold, plan_sizes, planned_workers, resolve_threads
from pipelines.provenance import provenance
from pipelines.redact import mask_in_logs, redact, redact_text, secret_values

log = logging.getLogger("lacy")


@dataclasses.dataclass(frozen=True)
class Runtime:
    """How this run executes, resolved once from the settings and Beam's arguments: the
    arguments as run and saved, their options, what local worker processes add to their
    environment, and torch threads per scoring process with the reason."""

    beam_args: list[str]
    opts: PipelineOptions
    worker_env: dict[str, str]
    threads: int | None
    threads_from: str


def runtime(cfg: LabelConfig, beam_args: list[str]) -> Runtime:
    """The run's `Runtime`: Beam's options (lacy's Flink job server added), the cluster checked,
    the local workers' environment and the torch threads they will see."""
    opts = beam_options(beam_args)
    beam_args = beam_args + flink.add_job_server(opts)  # saved in config.json too
    flink.check_master(opts)
    env = worker_env(opts)
    # threads as the local workers will see their environment (the caller's plus env)
    threads, why = resolve_threads(cfg, opts, environ={**os.environ, **env})
    if threads != cfg.threads:
        log.info("torch threads per worker: %s (%s)", threads, why)
    return Runtime(beam_args, opts, env, threads, why)


def run(argv: list[str] | None = None) -> dict:
    """Run the job; returns the final stats (plus the output directory, wall time, and the job's
    Beam metrics)."""
    bound_primitive_caches()  # the in-process runner scores here: before any oneDNN op
    cfg, beam_args = resolve(argv)
    mask_in_logs(secret_values(beam_args))  # before anything logs them
    rt = runtime(cfg, beam_args)
    out = cfg.output.rstrip("/")
    FileSystems.set_options(rt.opts)  # the launcher's own reads and writes see --s3_endpoint_url
    files = expand_inputs(cfg.input)  # before anything is deleted
    fixed = fixed_threshold(cfg)  # read before --overwrite could remove its stats.json
    layout.prepare_output(out, cfg.overwrite, files, cfg.input)
    plan = plan_sizes(cfg, files, planned_workers(rt.opts), rt.threads, rt.threads_from)
    meta = provenance(cfg) | {"threshold_source": fixed["source"] if fixed else "this run"}
    saved = {
        "settings": cfg.to_dict(),
        "provenance": meta,
        "plan": plan.to_dict(),
        "fixed_threshold": fixed,
        "beam_args": rt.beam_args,
    }
    outputs.write_json(f"{out}/config.json", redact(saved))  # no credential is ever written
    t0 = time.time()
    result = run_job(rt, cfg.listen_all, out, lambda p: build(p, cfg, meta, files, plan, fixed))
    wall = time.time() - t0
    if dataflow.is_dry_run(rt.opts):  # nothing ran: no stats, card or report to make
        path = dataflow.write_job_description(result, cfg.output)
        return {"output": out, "dry_run": path}
    return finish(cfg, meta, wall) | {
        "output": out,
        "report": cfg.report,
        "metrics": beam_counters(result),
    }


def run_job(rt: Runtime, listen_all: bool, out: str, build_graph) -> PipelineResult:
    """Build the graph on a pipeline of `rt`'s options and run it to the end, local workers with
    their environment and every server this process starts on loopback (unless `listen_all`)."""
    with local_env(rt.opts, rt.worker_env), loopback_only(not listen_all):
        p = beam.Pipeline(options=rt.opts)
        build_graph(p)
        result = p.run()
        try:
            state = result.wait_until_finish()
        except Exception as e:  # noqa: BLE001 - runners raise their own types; say what failed
            raise JobFailed(f"{type(e).__name__}: {e}", out) from e
    if state in ("FAILED", "CANCELLED", "STOPPED"):  # a runner that reports without raising
        raise JobFailed(f"the job ended {state}", out)
    return result


class JobFailed(RuntimeError):
    """The runner failed the job: the output folder has no stats.json (lacy-publish refuses it)."""

    def __init__(self, why: str, out: str):
        super().__init__(
            f"the job failed on the runner: {why}\n{out} is incomplete (no stats.json, so "
            "lacy-publish refuses it); fix the cause and label again with --overwrite"
        )


def finish(cfg: LabelConfig, meta: dict, wall: float) -> dict:
    """Driver-side epilogue: removes what killed attempts left, reads the job's stats.json (never
    rewrites it), writes run.json (wall time), the dataset card and the report."""
    out = cfg.output.rstrip("/")
    removed = layout.remove_leftovers(out)  # of attempts a runner retried (a lost worker)
    if removed:
        log.info("removed %d temporary files left by retried attempts", len(removed))
    summary = outputs.read_json(f"{out}/stats.json")
    run_info = {
        "wall_time_s": round(wall, 2),
        "tokens_per_s": round(summary["tokens"] / wall, 1) if wall > 0 else None,
        "temporaries_removed": len(removed),
    }
    outputs.write_json(f"{out}/run.json", run_info)  # the job's own stats.json stays as written
    card = render_card(redact(cfg.to_dict()), redact(meta), summary | run_info)
    outputs.write_bytes(f"{out}/README.md", card.encode("utf-8"))
    if cfg.report:
        from pipelines.report import write_report

        write_report(out, cfg.samples_in_report)
    return summary | run_info


def _log_to_stderr() -> None:
    """Give lacy's progress its own handler (Beam sets the root logger to WARNING at import);
    once per process, however often `main` is called."""
    if any(getattr(h, "lacy", False) for h in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s lacy: %(message)s", "%H:%M:%S"))
    handler.lacy = True
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models load from local paths only
    _log_to_stderr()
    try:
        s = run(argv)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {redact_text(str(e))}", file=sys.stderr)
        return 2
    except JobFailed as e:
        print(f"error: {redact_text(str(e))}", file=sys.stderr)
        return 1
    out = s["output"]
    if "dry_run" in s:
        print(f"dry run: nothing ran; wrote the Dataflow job description to {s['dry_run']}")
        return 0
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
