"""The Beam pipeline end to end: real spaCy, the real tokenizer, the real (or a tiny local)
reference model, real runners, real Parquet."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from hostile import LABEL_ARGS, check_output, make_hostile
from inputs import write_jsonl

from deploy.flink.cluster import Pool
from lacy_labels.schema import SCHEMA, read_metadata, validate_table
from pipelines import label
from pipelines.loopback import free_port, wait_for_port
from pipelines.outputs import read_rejects
from pipelines.plan import usable_cores


def run(out, *args):
    stats = label.run(["--output", str(out), *map(str, args)])
    table = pq.read_table(out / "data")
    return stats, table, read_rejects(str(out))


@pytest.fixture(scope="module")
def small_input(tmp_path_factory, wiki_docs):
    path = tmp_path_factory.mktemp("in") / "docs.jsonl"
    return write_jsonl(path, [{"id": d["id"], "text": d["text"][:300]} for d in wiki_docs[:4]])


def test_end_to_end_with_the_real_reference_model(tmp_path, small_input):
    out = tmp_path / "out"
    stats, table, rejects = run(out, "--input", small_input)
    assert table.num_rows == 4 and rejects == []
    assert table.schema.equals(SCHEMA, check_metadata=False)
    validate_table(table)
    meta = read_metadata(pq.read_schema(next((out / "data").glob("*.parquet"))))
    assert meta["spacy_model_version"].startswith("3.8")
    assert meta["reference_gguf_sha256"] and meta["label_rule"]["rule"] == "lacy"
    assert stats["documents_in"] == stats["documents_out"] == 4
    assert stats["tokens"] == sum(len(x) for x in table["input_ids"].to_pylist())
    rows = table.to_pylist()
    for r in rows:
        assert all(f for f, d in zip(r["is_fact"], r["delegate"]) if d)  # delegate => fact
        assert all(loss is not None for loss in r["ref_loss"])
    assert_delegated_at_threshold_and_floor(rows, stats)
    assert stats["min_loss"] == 1.0  # the default floor
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["settings"]["rule"] == "lacy" and cfg["provenance"]["spacy_model"]


def assert_delegated_at_threshold_and_floor(rows, stats):
    """Read from the `delegate` column: exactly the facts whose loss reaches both the dataset
    threshold and the floor; without a floor, 60% of facts (to one token)."""
    n_fact = sum(sum(r["is_fact"]) for r in rows)
    n_dele = sum(sum(r["delegate"]) for r in rows)
    assert n_dele == stats["delegated_tokens"] and n_fact == stats["fact_tokens"]
    if stats["min_loss"] == 0:
        assert abs(n_dele - 0.6 * n_fact) <= 1
    t = max(stats["threshold"], stats["min_loss"])
    for r in rows:
        want = [f and loss >= t for f, loss in zip(r["is_fact"], r["ref_loss"])]
        assert r["delegate"] == want


def test_repeated_paragraph_does_not_collapse_the_threshold(tmp_path, wiki_docs):
    """A corpus dominated by one document that repeats a paragraph: the model memorises the
    repeats (losses near 0). Without a floor the dataset threshold still delegates 60% of facts;
    the default floor (1 nat) keeps the memorised repeats learnable instead."""
    para = "Ada Lovelace was born in London on 10 December 1815 and died in 1852."
    docs = [{"id": "repeat", "text": " ".join([para] * 150)}]
    docs += [{"id": d["id"], "text": d["text"][:300]} for d in wiki_docs[1:3]]
    src = write_jsonl(tmp_path / "r.jsonl", docs)
    stats, table, _ = run(tmp_path / "out", "--input", src, "--min_loss", 0)
    rows = table.to_pylist()
    fact_losses = sorted(x for r in rows for x, f in zip(r["ref_loss"], r["is_fact"]) if f)
    assert fact_losses[int(0.4 * len(fact_losses))] < 1e-3  # the case is really adversarial
    assert 0 < stats["threshold"] < 1e-3
    assert_delegated_at_threshold_and_floor(rows, stats)
    floored, table, _ = run(tmp_path / "floored", "--input", src)
    assert floored["threshold"] == stats["threshold"]
    assert_delegated_at_threshold_and_floor(table.to_pylist(), floored)
    repeat = next(r for r in table.to_pylist() if r["id"] == "repeat")
    tail = len(repeat["delegate"]) // 2  # the memorised second half of the repeats
    assert sum(repeat["delegate"][tail:]) < 0.05 * sum(repeat["is_fact"][tail:])


def test_existing_output_is_refused_without_overwrite(tmp_path, small_input):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="--overwrite"):
        label.run(["--output", str(out), "--input", str(small_input)])
    assert (out / "keep.txt").read_text() == "precious"
    assert label.main(["--output", str(out), "--input", str(small_input)]) == 2


def test_hostile_input_every_record_is_accounted_for(tmp_path, tiny_model_dir):
    """Every kind of tests/hostile.py through the whole job: each record a row or a reject with
    its reason, per file and in total, in the output and in stats.json."""
    expected = make_hostile(tmp_path)
    stats, table, rejects = run(
        tmp_path / "out", "--input", tmp_path / "in", "--reference_model", tiny_model_dir,
        *LABEL_ARGS,
    )  # fmt: skip
    rows = {r["id"]: r for r in table.to_pylist()}
    check_output(tmp_path, expected, list(rows.values()), rejects, stats)
    assert sum(stats["rejected_by_reason"].values()) == len(rejects)
    assert rows["dup"]["text"] == "First copy in Paris."
    assert rows["ctrl"]["text"] == "NUL  and  bell in Oslo"
    odd = rows["odd"]
    assert odd["text"].startswith("\ufeff👩")
    assert "\U00040000" not in odd["text"] and "\ufffd" in odd["text"]
    for r in rows.values():  # every non-space character is covered by a subword
        covered = set()
        for s, e in zip(r["char_start"], r["char_end"]):
            covered.update(range(s, e))
        assert all(i in covered for i, c in enumerate(r["text"]) if not c.isspace())


def test_long_documents_are_labelled_whole(tmp_path, tiny_model_dir):
    docs = [
        {"id": "token20k", "text": "x" * 20_000},
        {"id": "doc300k", "text": "Rome is in Italy. " * 16_667},
    ]
    _, table, rejects = run(tmp_path / "out", "--input", write_jsonl(tmp_path / "l.jsonl", docs),
                            "--reference_model", tiny_model_dir)  # fmt: skip
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rejects == [] and len(rows["doc300k"]["input_ids"]) > 60_000
    assert rows["token20k"]["text"] == "x" * 20_000


def test_same_rows_across_runs_runners_and_worker_counts(
    tmp_path, small_input, tiny_model_dir, monkeypatch
):
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset below, restored after the test")
    monkeypatch.delenv("OMP_WAIT_POLICY")
    common = ["--input", small_input, "--reference_model", tiny_model_dir, "--group_chars", 300]
    _, a, _ = run(tmp_path / "a", *common)
    _, b, _ = run(tmp_path / "b", *common)
    _, c, _ = run(  # no --threads: each worker process gets every core, waiting passively
        tmp_path / "c", *common, "--direct_running_mode=multi_processing", "--direct_num_workers=2"
    )
    saved = json.loads((tmp_path / "c/config.json").read_text())
    assert "OMP_WAIT_POLICY" not in os.environ  # the workers' environment was for the run only
    assert saved["plan"]["threads"] == usable_cores()
    assert saved["plan"]["threads_from"].endswith("2 local workers, waiting passively")
    _, d, _ = run(  # worker threads share one spaCy (under a lock) and one model
        tmp_path / "d",
        *common,
        "--direct_running_mode=multi_threading",
        "--direct_num_workers=2",
        "--threads",
        1,
    )
    assert a.num_rows == 4
    assert a.to_pylist() == b.to_pylist() == c.to_pylist() == d.to_pylist()
    names = sorted(p.name for p in (tmp_path / "a/data").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "c/data").iterdir())
    assert names == ["train-00000-of-00001.parquet"]


def test_portable_runner_with_external_worker_pool(tmp_path, small_input, tiny_model_dir):
    """What Flink runs: Beam's job service plus lacy's worker pool, separate processes."""
    job_port = free_port()
    job = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
         "-p", str(job_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    pool = None
    try:
        wait_for_port(job_port, job)
        pool = Pool(tmp_path / "pool-logs")
        stats, table, rejects = run(
            tmp_path / "out", "--input", small_input, "--reference_model", tiny_model_dir,
            "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}", *pool.flags(),
        )  # fmt: skip
    finally:
        if pool is not None:
            pool.close()
        job.terminate()
        job.wait(timeout=30)
    assert table.num_rows == 4 and stats["documents_out"] == 4 and rejects == []
    assert list((tmp_path / "pool-logs").glob("worker-*.log"))  # the pool's processes ran it
    validate_table(table)


def test_beam_metrics_count_documents_tokens_and_rejects(tmp_path, tiny_model_dir):
    docs = [
        {"id": "a", "text": "Ada Lovelace was born in London in 1815."},
        {"id": "b", "text": "Rome is the capital of Italy."},
        {"id": "a", "text": "A second document with the same id."},
        {"id": "e", "text": "   "},
    ]
    stats, table, rejects = run(
        tmp_path / "out",
        "--input",
        write_jsonl(tmp_path / "m.jsonl", docs),
        "--reference_model",
        tiny_model_dir,
    )
    m = stats["metrics"]  # read from the PipelineResult's metrics()
    rows = table.to_pylist()
    assert m["documents_in"] == 4 and m["documents_out"] == table.num_rows == 2
    assert m["documents_rejected"] == 2 == len(rejects)
    assert m["rejected_duplicate_id"] == 1 and m["rejected_empty_text"] == 1
    assert m["tokens"] == sum(len(r["input_ids"]) for r in rows) == stats["tokens"]
    assert m["fact_tokens"] == sum(sum(r["is_fact"]) for r in rows)
    assert m["delegated_tokens"] == sum(sum(r["delegate"]) for r in rows)
    per_doc = m["tokens_per_document"]
    assert per_doc["count"] == 2 and per_doc["sum"] == m["tokens"]
    assert per_doc["max"] == max(len(r["input_ids"]) for r in rows)
    assert m["tokens_per_batch"]["sum"] == m["tokens"] and m["tokens_per_batch"]["count"] >= 1


def test_two_jobs_with_a_fixed_threshold_equal_one_job(tmp_path, wiki_docs, tiny_model_dir):
    """The internet-scale recipe: label a sample, then label parts with its threshold; the parts'
    rows are exactly those of one job over everything with the same threshold."""
    docs = [{"id": d["id"], "text": d["text"][:400]} for d in wiki_docs[:10]]
    model = ["--reference_model", tiny_model_dir]
    sample, _, _ = run(
        tmp_path / "sample", "--input", write_jsonl(tmp_path / "s.jsonl", docs[:4]), *model
    )
    fixed = ["--threshold_from", tmp_path / "sample", *model]
    whole = write_jsonl(tmp_path / "all.jsonl", docs)
    s_all, t_all, _ = run(tmp_path / "all", "--input", whole, *fixed)
    halves = [write_jsonl(tmp_path / f"h{i}.jsonl", docs[i * 5 : i * 5 + 5]) for i in (0, 1)]
    parts = [run(tmp_path / f"part{i}", "--input", h, *fixed) for i, h in enumerate(halves)]
    rows = sorted((r for _, t, _ in parts for r in t.to_pylist()), key=lambda r: r["id"])
    want = sorted(t_all.to_pylist(), key=lambda r: r["id"])
    assert len(rows) == len(want) == 10
    # Other groups mean other padded batches: losses agree to float rounding, labels exactly.
    for got, ref in zip(rows, want):
        assert np.allclose(got.pop("ref_loss"), ref.pop("ref_loss"), rtol=0, atol=1e-5)
        assert got == ref
    assert s_all["threshold"] == sample["threshold"] == parts[0][0]["threshold"]
    assert s_all["threshold_source"].endswith("sample/stats.json")
    cfg = json.loads((tmp_path / "all/config.json").read_text())
    assert cfg["fixed_threshold"]["value"] == sample["threshold"]
    assert "sample/stats.json" in (tmp_path / "all/README.md").read_text()
    with pytest.raises(ValueError, match="other settings"):
        label.run(["--output", str(tmp_path / "x"), "--input", str(whole), *map(str, fixed),
                   "--fact_quantile", "0.5"])  # fmt: skip


def test_document_scope_labels_each_document_by_its_own_threshold(
    tmp_path, wiki_docs, tiny_model_dir
):
    docs = [{"id": d["id"], "text": d["text"][:500]} for d in wiki_docs[:4]]
    stats, table, _ = run(
        tmp_path / "out",
        "--input",
        write_jsonl(tmp_path / "d.jsonl", docs),
        "--reference_model",
        tiny_model_dir,
        "--threshold_scope",
        "document",
    )
    assert stats["threshold"] is None and table.num_rows == 4
    for r in table.to_pylist():
        n_fact, n_dele = sum(r["is_fact"]), sum(r["delegate"])
        assert abs(n_dele - 0.6 * n_fact) <= 1  # ties aside, each document's own 60%


def test_loss_floor_on_the_dataset_threshold_and_on_a_fixed_one(
    tmp_path, small_input, tiny_model_dir
):
    """--min_loss is recorded in config.json and stats.json and applied the same way over this
    run's threshold and over one taken from a previous output."""
    common = ["--input", small_input, "--reference_model", tiny_model_dir]
    plain, table, _ = run(tmp_path / "plain", *common)
    losses = sorted(x for r in table.to_pylist() for x, f in zip(r["ref_loss"], r["is_fact"]) if f)
    floor = losses[int(0.8 * len(losses))]  # above the 40% quantile threshold: it bites
    assert floor > plain["threshold"]
    for name, extra in (("own", []), ("fixed", ["--threshold_from", tmp_path / "plain"])):
        stats, t, _ = run(tmp_path / name, *common, *extra, "--min_loss", floor)
        assert stats["min_loss"] == floor and stats["threshold"] == plain["threshold"]
        saved = json.loads((tmp_path / name / "config.json").read_text())
        assert saved["settings"]["min_loss"] == floor
        for r in t.to_pylist():
            want = [f and x >= floor for f, x in zip(r["is_fact"], r["ref_loss"])]
            assert r["delegate"] == want
        assert 0 < stats["delegated_tokens"] < plain["delegated_tokens"]
