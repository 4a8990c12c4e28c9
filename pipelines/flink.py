"""Flink: the job server that Beam's FlinkRunner starts, and a check that the cluster answers.

Beam's FlinkRunner starts a job server from `--flink_job_server_jar`, or downloads Beam's own
from Maven Central, which serves none for recent Beam releases. lacy assembles one from the parts
Maven Central does serve (`deploy/flink/flink.sh jobserver`, cached in ~/.cache/lacy/flink and
built on first use) and passes it, so the plain `--runner=FlinkRunner --flink_master=HOST:PORT`
command line works offline. Nothing here runs for other runners."""

from __future__ import annotations

import json
import logging
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from apache_beam.options.pipeline_options import (
    FlinkRunnerOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
)

log = logging.getLogger("lacy")
SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "flink" / "flink.sh"
JAR_NAME = "lacy-flink-job-server.jar"
LOCAL_MASTERS = ("[local]", "[auto]")  # Beam's names for a mini-cluster inside the job server


def is_flink(opts: PipelineOptions) -> bool:
    return str(opts.view_as(StandardOptions).runner or "").endswith("FlinkRunner")


def cached_jar() -> Path:
    from lacy_labels.reference import default_cache_dir

    return default_cache_dir() / "flink" / "jobserver" / JAR_NAME


def job_server_jar() -> Path:
    """The launcher jar of lacy's Flink job server: built by deploy/flink/flink.sh (Maven, once;
    a rebuild only when its pom changes), or the cached one where the checkout's script is
    absent."""
    if SCRIPT.exists():
        done = subprocess.run(
            ["bash", str(SCRIPT), "jobserver"], stdout=subprocess.PIPE, text=True, check=False
        )
        if done.returncode != 0:
            raise ValueError(f"could not build the Flink job server ({SCRIPT} jobserver failed)")
        return Path(done.stdout.strip().splitlines()[-1])
    if cached_jar().exists():
        return cached_jar()
    raise ValueError(
        f"no Flink job server: {cached_jar()} is missing; run deploy/flink/flink.sh jobserver from "
        "a checkout of lacy, or pass --flink_job_server_jar"
    )


def job_server_args(opts: PipelineOptions) -> list[str]:
    """Beam arguments lacy adds for a FlinkRunner job: the job server jar, unless the command
    names one, a job endpoint or an uber-jar submission. [] for other runners."""
    if not is_flink(opts):
        return []
    fo = opts.view_as(FlinkRunnerOptions)
    if fo.flink_job_server_jar or fo.flink_submit_uber_jar:
        return []
    if opts.view_as(PortableOptions).job_endpoint:
        return []
    return [f"--flink_job_server_jar={job_server_jar()}"]


def check_master(opts: PipelineOptions, timeout: float = 10.0) -> dict | None:
    """The cluster's REST overview at --flink_master (None for a mini-cluster); a ValueError that
    says how to start one when nothing answers, instead of a job that waits."""
    if not is_flink(opts):
        return None
    master = (opts.view_as(FlinkRunnerOptions).flink_master or "[auto]").strip()
    if master in LOCAL_MASTERS:
        return None
    url = master if master.startswith(("http://", "https://")) else f"http://{master}"
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/overview", timeout=timeout) as r:
            overview = json.load(r)
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
