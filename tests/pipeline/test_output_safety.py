"""Mistakes that must never destroy data: --overwrite replaces only a lacy output and deletes only
lacy's files in it; an output that is (or holds, or lies in) an input, the working directory,
home or a root is refused before anything is deleted; leftovers match inside the output only."""

import json
import os

import pytest
from inputs import write_jsonl

from pipelines import label, layout
from pipelines.layout import UnsafeOutput, check_location, prepare_output
from pipelines.listing import expand_inputs


def lacy_output(folder):
    """A folder laid out as a lacy output, with a user's file beside lacy's."""
    (folder / "data").mkdir(parents=True)
    (folder / "rejects").mkdir()
    (folder / "data/train-00000-of-00001.parquet").write_bytes(b"old shard")
    (folder / "rejects/rejects-00000-of-00001.jsonl").write_text("{}\n")
    for name in ("stats.json", "run.json", "README.md", "report.html"):
        (folder / name).write_text("old")
    config = {"settings": {}, "provenance": {"lacy_version": "0.1.0"}}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "notes.md").write_text("the user's own notes")
    (folder / "data/mine.parquet").write_bytes(b"the user's own shard")
    return folder


def test_overwrite_deletes_only_lacy_files(tmp_path):
    out = lacy_output(tmp_path / "out")
    prepare_output(str(out), True, [], None)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["data/mine.parquet", "notes.md"]
    assert (out / "data").is_dir() and not (out / "rejects").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_lacy_output(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"precious")
    (out / "config.json").write_text('{"theme": "dark"}')  # a config.json, not lacy's
    with pytest.raises(FileExistsError, match="not a lacy output"):
        prepare_output(str(out), True, [], None)
    assert (out / "holiday.jpg").read_bytes() == b"precious"


def test_the_issue_case_an_output_that_holds_its_input(tmp_path, monkeypatch, capsys):
    """`lacy-label --input d/corpus --output d --overwrite` deleted the corpus: now it is one
    line of refusal and nothing is touched, even when d is a previous lacy output."""
    d = lacy_output(tmp_path / "d")
    corpus = d / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", [{"id": "a", "text": "Kept."}])
    before = sorted(p for p in d.rglob("*"))
    rc = label.main(["--input", str(corpus), "--output", str(d), "--overwrite"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the input file" in err
    assert sorted(p for p in d.rglob("*")) == before


@pytest.mark.parametrize("case", ["is the input", "inside the input", "holds an input"])
def test_outputs_that_meet_their_inputs_are_refused(tmp_path, case):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", [{"id": "a", "text": "x"}])
    spec, out = {
        "is the input": (corpus, corpus),
        "inside the input": (corpus, corpus / "labels"),
        "holds an input": (corpus / "a.jsonl", tmp_path),
    }[case]
    with pytest.raises(UnsafeOutput):
        check_location(str(out), expand_inputs(str(spec)), str(spec))


def test_a_glob_beside_the_output_is_fine(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", [{"id": "a", "text": "x"}])
    spec = str(corpus / "*.jsonl")
    check_location(str(corpus / "labels"), expand_inputs(spec), spec)


def test_the_working_directory_home_and_roots_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out, why in ((".", "working directory"), (str(tmp_path) + "/", "working directory"),
                     ("~", "home"), ("/", "filesystem root"), ("gs://bucket", "bucket root"),
                     ("s3://bucket/", "bucket root")):  # fmt: skip
        with pytest.raises(UnsafeOutput, match=why):
            check_location(out, [], None)
    check_location("gs://bucket/labels", [], None)


def test_leftovers_match_inside_the_output_only(tmp_path):
    """An output under a folder named beam-temp-*: only the output's own temporaries are its
    leftovers (the old absolute-path match deleted the parent)."""
    out = tmp_path / "beam-temp-runs" / "out"
    (out / "rejects/beam-temp-rejects-1234").mkdir(parents=True)
    (out / "rejects/beam-temp-rejects-1234/part").write_text("x")
    (out / ".tmp-ab12-stats.json").write_text("x")
    (out / "stats.json").write_text("{}")
    assert layout.leftovers(str(out)) == sorted(
        [f"{out}/.tmp-ab12-stats.json", f"{out}/rejects/beam-temp-rejects-1234"]
    )
    layout.remove_leftovers(str(out))
    assert sorted(p.name for p in out.rglob("*")) == ["stats.json"]
    assert (tmp_path / "beam-temp-runs").is_dir()


def test_a_symlinked_output_is_checked_where_it_points(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", [{"id": "a", "text": "x"}])
    os.symlink(tmp_path, tmp_path / "alias")
    with pytest.raises(UnsafeOutput, match="holds the input"):
        check_location(str(tmp_path / "alias"), expand_inputs(str(corpus)), str(corpus))


def objects(s3, prefix):
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"], Prefix=prefix).get("Contents", [])
    return sorted(o["Key"][len(prefix) :] for o in listed)


def put(s3, key, body: bytes):
    s3["client"].put_object(Bucket=s3["bucket"], Key=key, Body=body)


def test_overwrite_on_s3_deletes_lacys_objects_one_by_one(s3):
    """An object store has no folders: --overwrite lists lacy's objects and deletes each (the
    old code deleted an object named like the folder and left the old shards)."""
    config = json.dumps({"settings": {}, "provenance": {"lacy_version": "0"}}).encode()
    for name in ("data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                 "stats.json", "user.txt", "rejects/beam-temp-x/part"):  # fmt: skip
        put(s3, f"old/{name}", b"x")
    put(s3, "old/config.json", config)
    prepare_output("s3://lacy/old", True, [], None)
    assert objects(s3, "old/") == ["user.txt"]


def test_a_job_on_s3_replaces_its_previous_output_and_writes_no_secret(s3, tiny_model_dir):
    """Input and output on S3 (a real S3 API), the credentials as Beam flags: the second run with
    --overwrite and fewer shards leaves none of the first run's shards, and no object holds the
    secret key."""
    docs = b"".join(json.dumps({"id": f"d{i}", "text": f"Doc {i} is about Paris."}).encode()
                    + b"\n" for i in range(6))  # fmt: skip
    put(s3, "in/docs.jsonl", docs)
    common = ["--input", "s3://lacy/in/docs.jsonl", "--output", "s3://lacy/job"]
    common += ["--reference_model", str(tiny_model_dir), "--report", "false", *s3["flags"]]
    label.run([*common, "--shard_chars", "40"])
    first = objects(s3, "job/")
    assert sum(k.startswith("data/train-") for k in first) > 1
    stats = label.run([*common, "--overwrite"])
    assert stats["documents_out"] == 6
    keys = objects(s3, "job/")
    assert [k for k in keys if k.startswith("data/")] == ["data/train-00000-of-00001.parquet"]
    for key in keys:
        body = s3["client"].get_object(Bucket="lacy", Key=f"job/{key}")["Body"].read()
        assert b"moto-secret-value" not in body, key
    saved = json.loads(s3["client"].get_object(Bucket="lacy", Key="job/config.json")["Body"].read())
    assert "--s3_secret_access_key=<redacted>" in saved["beam_args"]
