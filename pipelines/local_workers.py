"""Runner options and the environment that Beam's local worker processes inherit.

The FnApiRunner starts `--direct_running_mode=multi_processing` workers with this process's
environment and no pipeline options, so the only way to reach them is the environment: OpenMP
threads that wait passively (see `plan.resolve_threads`) and a PIPELINE_OPTIONS_FILE that sets
the SDK harness log level (workers otherwise log at INFO and bury lacy's progress). The
launcher applies both for the length of one run and restores the caller's environment after."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines.plan import OMP_WAIT, PASSIVE

OPTIONS_FILE = "PIPELINE_OPTIONS_FILE"


def beam_options(beam_args: list[str]) -> PipelineOptions:
    """Beam options, with the default (and DirectRunner) mapped to the FnApiRunner: the
    DirectRunner first tries to download the Prism binary, which offline machines cannot."""
    opts = PipelineOptions(beam_args)
    std = opts.view_as(StandardOptions)
    if std.runner in (None, "DirectRunner", "SwitchingDirectRunner"):
        std.runner = "FnApiRunner"
    return opts


def worker_env(opts: PipelineOptions, environ: dict | None = None) -> dict[str, str]:
    """The variables local worker processes need that `environ` lacks (values already there
    win); {} for other runners. The options file is named here and written by `local_env`."""
    environ = os.environ if environ is None else environ
    o = opts.get_all_options()
    if o.get("direct_running_mode") != "multi_processing":
        return {}
    env = {} if OMP_WAIT in environ else {OMP_WAIT: PASSIVE}
    local = opts.view_as(StandardOptions).runner in ("FnApiRunner", "DirectRunner")
    if local and OPTIONS_FILE not in environ:
        env[OPTIONS_FILE] = ""  # to be written
    return env


def _options_file(opts: PipelineOptions, directory: str) -> str:
    """A worker options file that sets only the SDK harness log level (WARNING unless
    --default_sdk_harness_log_level says; lacy's progress stays at INFO)."""
    level = opts.get_all_options().get("default_sdk_harness_log_level") or "WARNING"
    path = os.path.join(directory, "worker-options.json")
    options = {
        "default_sdk_harness_log_level": level,
        "sdk_harness_log_level_overrides": {"lacy": "INFO"},
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"options": options}, f)
    return path


@contextlib.contextmanager
def local_env(opts: PipelineOptions, env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Set `env` (default `worker_env(opts)`) in this process for the length of the block (the
    workers it starts inherit it), then restore the environment and remove the options file."""
    env = dict(worker_env(opts) if env is None else env)
    with tempfile.TemporaryDirectory(prefix="lacy-workers-") as tmp:
        if OPTIONS_FILE in env:
            env[OPTIONS_FILE] = _options_file(opts, tmp)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
