"""What the launcher decides before the job starts, and never changes after: group and shard
counts from the input's size, torch threads per scoring process, and a fixed threshold taken
from the flags or a previous output. `config.json` records the plan."""

from __future__ import annotations

import dataclasses
import logging
import math
import os

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import outputs
from pipelines.config import LabelConfig
from pipelines.listing import Listed, input_bytes
from pipelines.redact import redact

log = logging.getLogger("lacy")
LIMIT_BYTES_PER_RECORD = 1024  # with --limit, the size estimate assumes this much per record
MIN_GROUP_CHARS = 8192  # a group smaller than about two CPU batches pads more than it spreads
OMP_WAIT, PASSIVE = "OMP_WAIT_POLICY", "PASSIVE"  # OpenMP threads sleep while they wait


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes fixed before the run. The worker count is recorded but never changes the groups:
    groups decide the padded batches, hence the bits of `ref_loss`, so rows stay identical
    whatever the number of workers."""

    input_bytes: int
    workers: int
    groups: int
    shards: int
    threads: int | None = None  # torch threads per scoring process (None: torch's default)
    threads_from: str = ""  # why the scoring processes get the threads they get

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_sizes(
    cfg: LabelConfig,
    files: list[Listed],
    workers: int = 1,
    threads: int | None = None,
    threads_from: str = "",
) -> Plan:
    """Group and shard counts from the input's size. A plan with fewer than two groups per
    worker says which --group_chars would spread the input."""
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
    shards = max(1, math.ceil(size / cfg.shard_chars))
    return Plan(size, workers, groups, shards, threads, threads_from)


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


def resolve_threads(
    cfg: LabelConfig, opts: PipelineOptions, environ: dict | None = None
) -> tuple[int | None, str]:
    """Torch threads per scoring process, and why. Torch's default is every core in every
    process, and OpenMP threads spin while they wait, so local worker processes would fight
    over the cores. Local worker processes keep every core but wait passively (the launcher
    sets OMP_WAIT_POLICY=PASSIVE for them, unless `environ` already has a policy: then cores /
    workers). Dataflow runs one SDK process per vCPU: 1 thread each. Runners whose processes
    per machine lacy cannot know (Flink, portable) and accelerators keep torch's default."""
    if cfg.threads is not None:
        return cfg.threads, "--threads"
    if cfg.device.split(":")[0] != "cpu":
        return None, "torch default (accelerator)"
    environ = os.environ if environ is None else environ
    o = opts.get_all_options()
    mode, cores, workers = o.get("direct_running_mode"), usable_cores(), planned_workers(opts)
    if mode == "multi_processing" and environ.get(OMP_WAIT, PASSIVE).upper() == PASSIVE:
        return cores, f"{cores} cores in each of {workers} local workers, waiting passively"
    if mode in ("multi_processing", "multi_threading"):
        return max(1, cores // workers), f"{cores} cores / {workers} local workers"
    runner = str(opts.view_as(StandardOptions).runner or "")
    if runner.endswith("DataflowRunner"):
        if "no_use_multiple_sdk_containers" in (o.get("experiments") or []):
            return None, "torch default (one SDK process per Dataflow worker)"
        return 1, "Dataflow runs one SDK process per vCPU"
    return None, "torch default"


def fixed_threshold(cfg: LabelConfig) -> dict | None:
    """{"value", "source"} of a fixed threshold (--threshold or --threshold_from), else None.
    A previous output must have used the same rule, quantile, fact proxy and reference model."""
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
    same += ("fact_entity_types", "fact_use_entities", "fact_pos", "fact_deps", "fact_exclude_pos")
    # min_loss may differ: it is applied here, on top of the previous output's threshold
    mine = redact(cfg.to_dict())  # lists, as config.json holds them
    differ = [k for k in same if settings.get(k) != mine[k]]
    if differ:
        raise ValueError(
            f"--threshold_from {prev}: its labels used other settings ({', '.join(differ)})"
        )
    if s.get("threshold") is None:
        raise ValueError(f"--threshold_from {prev}: it has no dataset threshold")
    return {"value": float(s["threshold"]), "source": f"{prev}/stats.json"}
