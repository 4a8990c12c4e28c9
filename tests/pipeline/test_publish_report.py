"""Hub-ready output: the dataset card, datasets.load_dataset, the publish CLI (network-free), and
the HTML report rendered in headless Chromium."""

import json
import os
import shutil
import subprocess

import pytest

from pipelines import publish
from pipelines.report import write_report


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, label_leads):
    return label_leads(tmp_path_factory.mktemp("pub") / "out", 12, "--shard_chars", "4096")


def test_dataset_card_and_load_dataset(labelled):
    import datasets
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(labelled / "README.md")
    assert card.data.license == "cc-by-sa-4.0" and card.data.language == ["en"]
    assert card.data.configs[0]["data_files"][0]["path"] == "data/*.parquet"
    assert "`delegate`" in card.text and "spacy_model_version" in card.text
    ds = datasets.load_dataset(str(labelled), split="train")
    assert ds.num_rows == 12
    assert len(list((labelled / "data").glob("*.parquet"))) == 3
    assert ds.features["input_ids"].feature.dtype == "int32"
    assert ds.features["delegate"].feature.dtype == "bool"
    assert ds.features["ref_loss"].feature.dtype == "float32"


def test_dry_run_lists_every_file_without_network(labelled, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_that_must_not_print")
    assert (
        publish.main([str(labelled), "--repo-id", "org/lacy-wiki", "--dry-run", "--revision", "v1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "datasets/org/lacy-wiki" in out and "revision: v1" in out and "token: found" in out
    for name in (
        "README.md",
        "stats.json",
        "config.json",
        "report.html",
        "data/train-00000-of-00003.parquet",
    ):
        assert name in out
    assert "hf_secret" not in out


@pytest.mark.parametrize("repo_id", ["no-slash", "a/b/c", "bad id/x", "org/"])
def test_invalid_repo_id(labelled, repo_id, capsys):
    assert publish.main([str(labelled), "--repo-id", repo_id, "--dry-run"]) == 2
    assert "invalid repo id" in capsys.readouterr().err


def test_not_a_labelled_dataset(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hi")
    assert publish.main([str(tmp_path), "--repo-id", "org/name"]) == 2
    assert "not a labelled dataset" in capsys.readouterr().err
    assert publish.main([str(tmp_path / "nope"), "--repo-id", "org/name"]) == 2


def test_missing_token(labelled, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setattr(publish, "find_token", lambda: None)
    assert publish.main([str(labelled), "--repo-id", "org/name"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def test_report_is_self_contained(labelled):
    page = (labelled / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'class="t delegate"' in page and 'class="t fact"' in page and "loss " in page
    assert "http://" not in page and "https://" not in page
    stats = json.loads((labelled / "stats.json").read_text())
    assert f"<td>{stats['documents_in']}</td>" in page
    assert write_report(str(labelled), 2).endswith("report.html")


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Debian package chromium is not installed")
def test_report_renders_in_headless_chromium(labelled, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        (labelled / "report.html").as_uri(),
    ]
    subprocess.run(cmd, check=True, timeout=120, capture_output=True)
    dom = subprocess.run(
        cmd[:-2] + ["--dump-dom", (labelled / "report.html").as_uri()],
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert dom.count("<img") == 3 and 'class="t delegate"' in dom
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size[0] >= 1000
    colors = img.getcolors(maxcolors=1 << 20)
    # The highlighted delegated tokens (#ff9f80) and the plots' bars (#e0502a) are painted.
    painted = {c for _, c in colors}
    assert (255, 159, 128) in painted
    assert any(abs(r - 0xE0) < 8 and abs(g - 0x50) < 8 and abs(b - 0x2A) < 8 for r, g, b in painted)


def test_card_features_are_written_from_public_types():
    import datasets

    from lacy_labels.schema import SCHEMA
    from pipelines.card import yaml_features

    got = yaml_features(datasets.Features.from_arrow_schema(SCHEMA))
    assert got[:3] == [
        {"name": "id", "dtype": "string"},
        {"name": "text", "dtype": "string"},
        {"name": "input_ids", "list": "int32"},
    ]
    assert {"name": "ref_loss", "list": "float32"} in got and len(got) == len(SCHEMA)
    # The Hub's own writer (private in datasets) agrees while it exists.
    private = getattr(datasets.Features, "_to_yaml_list", None)
    if private is not None:
        assert got == private(datasets.Features.from_arrow_schema(SCHEMA))


def copy_output(labelled, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(labelled, out)
    return out


def test_only_lacys_files_are_uploaded(labelled, tmp_path, capsys):
    """A user's notes, a .env and a symlink in the folder are listed as not uploaded; the paths
    given to upload_folder select exactly lacy's files (checked with the Hub client's own
    filter)."""
    from huggingface_hub.utils import filter_repo_objects

    out = copy_output(labelled, tmp_path)
    (out / "notes.txt").write_text("mine")
    (out / ".env").write_text("HF_TOKEN=hf_mine")
    (tmp_path / "secret.pem").write_text("key")
    (out / "data" / "extra.pem").symlink_to(tmp_path / "secret.pem")
    contents = publish.check_dataset_dir(str(out))
    rels = sorted(p.relative_to(out).as_posix() for p in contents.files)
    assert {".env", "notes.txt", "data/extra.pem"} == {
        p.relative_to(out).as_posix() for p in contents.skipped
    }
    every = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    patterns = publish.upload_patterns(str(out), contents)
    chosen = sorted(filter_repo_objects(every, allow_patterns=patterns))
    assert chosen == rels and "stats.json" in rels and len(rels) == 8
    assert publish.main([str(out), "--repo_id", "org/x", "--dry_run"]) == 0
    printed = capsys.readouterr().out
    assert "not uploaded (3: not lacy's output files)" in printed and "hf_mine" not in printed


@pytest.mark.parametrize(
    "damage", ["missing shard", "foreign shard", "row count", "rejects", "credential"]
)
def test_a_folder_that_disagrees_with_its_stats_is_refused(labelled, tmp_path, damage, capsys):
    out = copy_output(labelled, tmp_path)
    stats = json.loads((out / "stats.json").read_text())
    if damage == "missing shard":
        (out / "data/train-00001-of-00003.parquet").unlink()
    elif damage == "foreign shard":
        shutil.copy(
            out / "data/train-00000-of-00003.parquet", out / "data/train-00000-of-00009.parquet"
        )
    elif damage == "row count":
        stats["documents_out"] += 1
        stats["documents_in"] += 1
    elif damage == "rejects":
        (out / "rejects").mkdir(exist_ok=True)
        (out / "rejects/rejects-00000-of-00001.jsonl").write_text('{"id": "x"}\n')
    else:
        cfg = json.loads((out / "config.json").read_text())
        cfg["beam_args"].append("--s3_secret_access_key=AKIAVERYSECRET")
        (out / "config.json").write_text(json.dumps(cfg))
    (out / "stats.json").write_text(json.dumps(stats))
    assert publish.main([str(out), "--repo_id", "org/x", "--dry_run"]) == 2
    err = capsys.readouterr().err
    want = {"credential": "credentials", "foreign shard": "not one set of train-"}
    assert want.get(damage, "disagree with stats.json") in err
    assert "AKIAVERYSECRET" not in err


def test_a_hub_that_cannot_be_reached_is_one_clear_error(labelled, tmp_path):
    """The real upload path (create_repo, upload_folder) against a Hub address where nothing
    listens: exit 2, one line, no traceback, the token never printed."""
    import sys

    from pipelines.loopback import free_port

    env = dict(os.environ, HF_ENDPOINT=f"http://127.0.0.1:{free_port()}", HF_HUB_OFFLINE="0")
    env["HF_TOKEN"] = "hf_do_not_print"
    done = subprocess.run([sys.executable, "-m", "pipelines.publish", str(labelled),
                           "--repo_id", "org/x"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "publishing to datasets/org/x failed" in done.stderr
    assert "Traceback" not in done.stderr and "hf_do_not_print" not in done.stderr + done.stdout
