"""Dataflow without the cloud: with `--runner=DataflowRunner --dry_run=True` Beam builds the whole
job offline (the portable pipeline, its environments and resource hints, the worker pools) and
submits nothing. The launcher then writes that job description as DIR/dataflow_job.json, so a
command line can be checked before a paid run."""

from __future__ import annotations

import hashlib
import json

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from pipelines import outputs
from pipelines.redact import redact

JOB_FILE = "dataflow_job.json"
ACCELERATOR_HINT = "beam:resources:accelerator:v1"


def is_dry_run(opts: PipelineOptions) -> bool:
    runner = str(opts.view_as(StandardOptions).runner or "")
    return runner.endswith("DataflowRunner") and bool(opts.view_as(TestOptions).dry_run)


def job_description(result) -> dict:
    """{"job": the Dataflow Job request, "pipeline": the portable pipeline} of a dry run's result.
    Beam leaves the job's environment (experiments, SDK container images, worker pools) to be
    filled while staging files to GCS; it is filled here the same way, without staging."""
    from apache_beam.runners.dataflow.internal import apiclient
    from google.protobuf.json_format import MessageToDict

    job = result.job
    pipeline = job.proto_pipeline
    staging = job.options.view_as(GoogleCloudOptions).staging_location
    job.proto.environment = apiclient.Environment(
        packages=[],
        options=job.options,
        environment_version=apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION,
        proto_pipeline_staged_url=f"{staging.rstrip('/')}/pipeline.pb",
        proto_pipeline=pipeline,
        pipeline_proto_hash=hashlib.sha256(pipeline.SerializeToString()).hexdigest(),
    ).proto
    return {"job": json.loads(job.json()), "pipeline": MessageToDict(pipeline)}


def write_job_description(result, out_dir: str) -> str:
    path = f"{out_dir.rstrip('/')}/{JOB_FILE}"
    outputs.write_json(path, redact(job_description(result)))  # its options hold no credential
    return path


def hinted_steps(description: dict, hint: str = ACCELERATOR_HINT) -> dict[str, str]:
    """Unique names of the steps whose environment carries `hint`, with its value."""
    import base64

    comps = description["pipeline"]["components"]
    envs = comps["environments"]
    out = {}
    for t in comps["transforms"].values():
        hints = envs.get(t.get("environmentId", ""), {}).get("resourceHints", {})
        if hint in hints:
            out[t["uniqueName"]] = base64.b64decode(hints[hint]).decode()
    return out
