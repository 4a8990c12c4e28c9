"""Flink: the job server that Beam's FlinkRunner starts, and a check that the cluster answers.

Beam's FlinkRunner starts a job server from `--flink_job_server_jar`, or downloads Beam's own
from Maven Central, which serves none for recent Beam releases. `make flink-install` assembles
one from the parts Maven Central does serve (deploy/flink/, cached in ~/.cache/lacy/flink); lacy
finds it and passes it, so the plain `--runner=FlinkRunner --flink_master=HOST:PORT` command line
works offline. Nothing here runs for other runners.

`lacy-flink-counters --flink_master HOST:PORT [--job JOB_ID]` prints lacy's counters of a running
or finished job, decoded from the Beam metrics that Flink keeps as the job's accumulator."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

from lacy_labels import cli
from lacy_labels.cli import setting
from pipelines.metrics import add_counter, add_distribution

log = logging.getLogger("lacy")
DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "flink"  # in a checkout only
SCRIPT, POM = DEPLOY / "flink.sh", DEPLOY / "jobserver" / "pom.xml"
JAR_NAME = "lacy-flink-job-server.jar"
LOCAL_MASTERS = ("[local]", "[auto]")  # Beam's names for a mini-cluster inside the job server


def is_flink(opts: PipelineOptions) -> bool:
    return str(opts.view_as(StandardOptions).runner or "").endswith("FlinkRunner")


def cached_jar() -> Path:
    from lacy_labels.reference import default_cache_dir

    return default_cache_dir() / "flink" / "jobserver" / JAR_NAME


def job_server_jar() -> Path:
    """The launcher jar of lacy's Flink job server, where `make flink-install` cached it. lacy
    never builds it at launch: a missing jar, or one built from another version of the
    checkout's deploy/flink/jobserver/pom.xml, is a ValueError that names the command. From an
    installed wheel (no checkout beside it) the cached jar is taken as it is."""
    jar = cached_jar()
    if not jar.exists():
        raise ValueError(
            f"no Flink job server at {jar}: `make flink-install` (deploy/flink/flink.sh install) "
            "builds it once, or pass --flink_job_server_jar"
        )
    if POM.exists():
        built = jar.parent / "pom.sha256"
        want = hashlib.sha256(POM.read_bytes()).hexdigest()
        if not built.exists() or built.read_text().strip() != want:
            raise ValueError(
                f"{jar} was built from another {POM.relative_to(POM.parents[3])}: "
                "`make flink-install` rebuilds it"
            )
    return jar


def add_job_server(opts: PipelineOptions) -> list[str]:
    """For a FlinkRunner job, set lacy's job server jar on `opts` (unless the command names one,
    a job endpoint or an uber-jar submission) and return the Beam argument that says so, for
    config.json. [] for other runners."""
    if not is_flink(opts):
        return []
    fo = opts.view_as(FlinkRunnerOptions)
    if fo.flink_job_server_jar or fo.flink_submit_uber_jar:
        return []
    if opts.view_as(PortableOptions).job_endpoint:
        return []
    fo.flink_job_server_jar = str(job_server_jar())
    return [f"--flink_job_server_jar={fo.flink_job_server_jar}"]


def rest_url(master: str) -> str:
    return (master if master.startswith(("http://", "https://")) else f"http://{master}").rstrip(
        "/"
    )


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def check_master(opts: PipelineOptions, timeout: float = 10.0) -> dict | None:
    """The cluster's REST overview at --flink_master (None for a mini-cluster); a ValueError that
    says how to start one when nothing answers, instead of a job that waits."""
    if not is_flink(opts):
        return None
    master = (opts.view_as(FlinkRunnerOptions).flink_master or "[auto]").strip()
    if master in LOCAL_MASTERS:
        return None
    url = rest_url(master)
    try:
        overview = _get(f"{url}/overview", timeout)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"--flink_master={master}: no Flink REST API answers there ({e}); start a local "
            "cluster with `make flink-up`, or name a running JobManager's REST address"
        ) from None
    log.info(
        "Flink %s at %s: %d TaskManagers, %d of %d slots free",
        overview.get("flink-version"), url, overview.get("taskmanagers", 0),
        overview.get("slots-available", 0), overview.get("slots-total", 0),
    )  # fmt: skip
    return overview


def _varints(data: bytes) -> list[int]:
    out, value, shift = [], 0, 0
    for b in data:
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(value - (1 << 64) if value >= 1 << 63 else value)
            value, shift = 0, 0
    return out


def job_counters(master: str, job: str | None = None, namespace: str = "lacy") -> dict:
    """lacy's Beam counters (and distributions: count, sum, min, max) of a Flink job, summed over
    steps, from the `__metricscontainers` accumulator that Beam's Flink runner keeps; the newest
    job when `job` is None. Flink updates it as tasks report, so a running job shows progress."""
    url = rest_url(master)
    if job is None:
        jobs = _get(f"{url}/jobs/overview")["jobs"]
        if not jobs:
            raise ValueError(f"no jobs on the Flink cluster at {url}")
        job = max(jobs, key=lambda j: j["start-time"])["jid"]
    accs = _get(f"{url}/jobs/{job}/accumulators")["user-task-accumulators"]
    out: dict = {}
    for acc in accs:
        if acc["name"] != "__metricscontainers":
            continue
        for info in json.loads(acc["value"])["metrics"]["attempted"]:
            labels = info["labels"]
            if labels.get("NAMESPACE") != namespace:
                continue
            values, name = _varints(base64.b64decode(info["payload"])), labels["NAME"]
            if info["type"].endswith("sum_int64:v1"):
                add_counter(out, name, values[0])
            elif info["type"].endswith("distribution_int64:v1"):
                add_distribution(out, name, *values[:4])
    return dict(sorted(out.items()))


@dataclass
class CountersConfig:
    flink_master: str = setting("localhost:8081", "the JobManager's REST address")
    job: str | None = setting(None, "job id (default: the newest job)")


def main(argv: list[str] | None = None) -> int:
    args, _ = cli.parse(
        CountersConfig, argv, "lacy-flink-counters", "lacy's counters of a Flink job, as JSON."
    )
    try:
        print(json.dumps(job_counters(args.flink_master, args.job), indent=1))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
