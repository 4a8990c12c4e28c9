import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import LabelConfig, resolve
from pipelines.listing import expand_inputs
from pipelines.local_workers import beam_options, local_env, worker_env
from pipelines.plan import plan_sizes, planned_workers, resolve_threads
from pipelines.transforms import isolate, stable_bucket, unique_by_id


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"rule": "loss", "loss_fraction": 0.2, "fact_pos": ["NUM"]}))
    toml = tmp_path / "c.toml"
    toml.write_text('rule = "none"\nwindow = 256\n')
    cfg, beam_args = resolve(
        [
            "--output",
            "o",
            "--config",
            str(cfg_file),
            "--loss_fraction",
            "0.3",
            "--runner=FnApiRunner",
            "--direct_num_workers=2",
        ]
    )
    assert (cfg.rule, cfg.loss_fraction, cfg.fact_pos) == ("loss", 0.3, ["NUM"])
    assert cfg.window == LabelConfig.window
    assert beam_args == ["--runner=FnApiRunner", "--direct_num_workers=2"]
    cfg, _ = resolve(["--output", "o", "--config", str(toml), "--overwrite"])
    assert (cfg.rule, cfg.window, cfg.overwrite) == ("none", 256, True)
    assert cfg.label_rule().rule == "none" and cfg.score_config().context() == 32  # window / 8


@pytest.mark.parametrize(
    "argv,match",
    [
        ([], "--output is required"),
        (["--output", "o", "--window", "8", "--min_context", "8"], "min_context"),
        (["--output", "o", "--fact_quantile", "2"], "fact_quantile"),
        (["--output", "o", "--shard_chars", "0"], "shard_chars"),
        (["--output", "o", "--threshold", "1", "--threshold_from", "x"], "not both"),
        (["--output", "o", "--threshold", "1", "--threshold_scope", "document"], "dataset-scope"),
    ],
)
def test_bad_settings_are_clear_errors(argv, match):
    with pytest.raises(ValueError, match=match):
        resolve(argv)


def test_unknown_config_key(tmp_path):
    f = tmp_path / "c.json"
    f.write_text('{"rulez": "lacy"}')
    with pytest.raises(ValueError, match="unknown keys"):
        resolve(["--output", "o", "--config", str(f)])


def test_default_runner_never_needs_prism():
    assert beam_options([]).get_all_options()["runner"] == "FnApiRunner"
    assert beam_options(["--runner=DirectRunner"]).get_all_options()["runner"] == "FnApiRunner"
    assert beam_options(["--runner=PortableRunner"]).get_all_options()["runner"] == (
        "PortableRunner"
    )


def test_planned_workers_read_from_the_runner_options():
    assert planned_workers(PipelineOptions([])) == 1
    local = ["--direct_running_mode=multi_processing", "--direct_num_workers=3"]
    assert planned_workers(PipelineOptions(local)) == 3
    assert planned_workers(PipelineOptions(["--max_num_workers=40", "--num_workers=4"])) == 40
    assert planned_workers(PipelineOptions(["--parallelism=16"])) == 16


def test_torch_threads_share_the_cores_between_worker_processes(monkeypatch):
    """Torch's default (every core in every process) would oversubscribe the cores wherever a
    runner starts several SDK processes per machine; --threads always wins."""
    monkeypatch.setattr("pipelines.plan.usable_cores", lambda: 8)

    def threads(*flags, environ=None, **settings):
        opts = PipelineOptions(list(flags))
        return resolve_threads(LabelConfig(output="o", **settings), opts, environ or {})

    assert threads() == (None, "torch default")
    local = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert threads(*local) == (8, "8 cores in each of 2 local workers, waiting passively")
    spinning = {"OMP_WAIT_POLICY": "active"}  # the user's policy: cores shared out
    assert threads(*local, environ=spinning) == (4, "8 cores / 2 local workers")
    assert threads(*local, threads=3) == (3, "--threads")
    assert threads(*local, device="cuda")[0] is None
    assert threads("--direct_running_mode=multi_threading", "--direct_num_workers=16")[0] == 1
    dataflow = ["--runner=DataflowRunner"]
    assert threads(*dataflow) == (1, "Dataflow runs one SDK process per vCPU")
    one = [*dataflow, "--experiments=no_use_multiple_sdk_containers"]
    assert threads(*one)[0] is None
    assert threads("--runner=FlinkRunner") == (None, "torch default")


def test_local_workers_get_their_environment_for_one_run_only(monkeypatch):
    """What local worker processes inherit is set for the run and the caller's environment is
    restored after it; values the caller set win; other runners get nothing."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("PIPELINE_OPTIONS_FILE", raising=False)
    local = beam_options(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert worker_env(local, {}) == {"OMP_WAIT_POLICY": "PASSIVE", "PIPELINE_OPTIONS_FILE": ""}
    assert worker_env(local, {"OMP_WAIT_POLICY": "active", "PIPELINE_OPTIONS_FILE": "x"}) == {}
    assert worker_env(beam_options([]), {}) == {}
    assert worker_env(beam_options(["--runner=PortableRunner"]), {}) == {}
    with local_env(local) as env:
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        options = json.loads(Path(os.environ["PIPELINE_OPTIONS_FILE"]).read_text())["options"]
        assert options["default_sdk_harness_log_level"] == "WARNING"
        path = env["PIPELINE_OPTIONS_FILE"]
    assert "OMP_WAIT_POLICY" not in os.environ and "PIPELINE_OPTIONS_FILE" not in os.environ
    assert not Path(path).exists()
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    with local_env(local):
        assert os.environ["OMP_WAIT_POLICY"] == "active"
    assert os.environ["OMP_WAIT_POLICY"] == "active"


def test_groups_follow_the_input_size_never_the_worker_count(tmp_path):
    """Groups decide padded batches (hence the bits of ref_loss), so the worker count only
    brings a warning with a --group_chars that would spread the input."""
    f = tmp_path / "in.jsonl"
    f.write_text("x" * 300_000)
    cfg = LabelConfig(output=str(tmp_path / "out"), group_chars=131072)
    warned = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("lacy").addHandler(handler)
    try:
        assert plan_sizes(cfg, expand_inputs(str(f))).groups == 3
        assert not warned
        assert plan_sizes(cfg, expand_inputs(str(f)), workers=2).groups == 3
        assert "--group_chars 75000 would give each worker two" in warned[0]
        assert plan_sizes(cfg, expand_inputs(str(f)), workers=100).groups == 3
        assert "--group_chars 8192 " in warned[1]
        f.write_text("x" * 1000)
        assert plan_sizes(cfg, expand_inputs(str(f))).groups == 1
        assert len(warned) == 2  # one process: nothing to spread
    finally:
        logging.getLogger("lacy").removeHandler(handler)


def test_stable_bucket_is_process_independent():
    """Buckets agree across processes with different hash seeds (Python's hash() would not)."""
    keys = ["Ada Lovelace", "東京", "", "doc-17"]
    here = [stable_bucket(k, 1000) for k in keys]
    code = (
        "from pipelines.transforms import stable_bucket; "
        f"print([stable_bucket(k, 1000) for k in {keys!r}])"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == here
    assert {stable_bucket(str(i), 4) for i in range(100)} == {0, 1, 2, 3}


def halve(items):
    if any(i["id"] == "bad" for i in items):
        raise ZeroDivisionError("cannot halve")
    return [i["n"] / 2 for i in items]


def test_a_failing_document_is_isolated_and_rejected():
    items = [
        {"id": "a", "n": 2},
        {"id": "bad", "n": 0, "source": "f", "index": 7},
        {"id": "c", "n": 8},
    ]
    good, bad = isolate(halve, items, "halve")
    assert good == [1.0, 4.0]
    assert len(bad) == 1 and bad[0]["reason"] == "processing_error"
    assert bad[0]["detail"].startswith("halve: ZeroDivisionError")
    assert (bad[0]["id"], bad[0]["index"]) == ("bad", 7)


def test_duplicate_ids_resolve_the_same_whatever_the_order():
    docs = [
        {"id": "x", "source": "b", "index": 1, "text": "later"},
        {"id": "y", "source": "a", "index": 5, "text": "y"},
        {"id": "x", "source": "a", "index": 9, "text": "first"},
    ]
    for order in (docs, docs[::-1]):
        keep, rejects = unique_by_id(order)
        assert [(d["id"], d["text"]) for d in keep] == [("x", "first"), ("y", "y")]
        assert [(r["reason"], r["source"], r["index"]) for r in rejects] == [
            ("duplicate_id", "b", 1)
        ]
