"""Every command and code example in README.md and docs/ runs as a user types it."""

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs():
    readme = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert 'load_reference("smollm2")' in code  # the shipped model, as a user would run it
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)
    delegated = eval(out.getvalue())
    assert delegated and all(isinstance(t, str) for t in delegated)
    table = scope["table"]
    assert table.num_rows == 1 and sum(table.column("delegate")[0].as_py()) == len(delegated)


import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from lacy_labels.corpus import iter_wiki_docs  # noqa: E402

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Every documented command runs below, in this order, exactly as written, in a workspace that
# holds what the docs assume a user has (corpus/, heldout.jsonl, labels.toml, the checkout's
# Makefile and .venv). A command that writes out/labels starts from no out/labels: the docs
# show them as alternatives, not as a sequence.
RUN = [
    'lacy-label --input "corpus/*.jsonl.gz" --output out/labels',
    "lacy-label --input corpus/ --output out/labels --rule loss --overwrite",
    "lacy-label --config labels.toml --output out/labels --direct_running_mode=multi_processing",
    'lacy-label --input "corpus/*.jsonl.gz" --output out/labels '
    "--direct_running_mode=multi_processing --direct_num_workers=4",
    "lacy-publish out/labels --repo_id ORG/NAME --dry_run",
    "make label",
    "lacy-label --output out/wiki --limit 300 --overwrite",
    "lacy-publish out/wiki --repo_id ORG/NAME --dry_run",
    "lacy-train --data out/wiki --output ckpt/lacy --objective lacy --preset tiny "
    "--token_budget 40000",
    "lacy-label --input heldout.jsonl --output out/heldout --threshold_from out/wiki",
    "lacy-eval --model ckpt/lacy --data out/heldout",
    'lacy-cascade --small ckpt/lacy --prompt "Marie Curie was born in"',
    "lacy-cascade --small ckpt/lacy --eval out/heldout --call_budget 0.22",
]
FRESH = {"out/labels"}  # removed before a lacy-label command that writes it

# What does not run here, and what runs it instead (a pattern on the command -> why).
ELSEWHERE = {
    r"^make test$": "the test suite itself (.ci/run)",
    r"DataflowRunner": "needs Google Cloud; tests/pipeline/test_dataflow.py builds these jobs "
    "offline with --dry_run=True",
    r"^HF_TOKEN=": "uploads to the Hugging Face Hub; the --dry_run form runs here",
    r"--data (ORG/NAME|gs://)|--input \"gs://|^for |^done$": "reads a dataset from the Hub or "
    "a bucket (tests/pipeline/test_output_safety.py runs lacy on an S3 server in the test)",
    r"FlinkRunner|^make flink-|^lacy-flink-counters": "tests/cluster/test_flink.py runs the "
    "same commands against its own cluster, on free ports",
    r"local_job_service_main|^lacy-worker-pool|PortableRunner": "tests/pipeline/test_pipeline.py "
    "runs the portable runner with lacy's worker pool, on free ports",
    r"^python -m bench\.|^bench/": "a benchmark (minutes to an hour): docs/performance.md",
    r"\[--": "a synopsis: the bracketed flags are optional (the plain forms run here)",
    r"ckpt/smol-lacy": "300 steps of the 135M SmolLM2 take tens of minutes on 2 cores; "
    "tests/pipeline/test_trainer_api.py continues pretraining it for a step and loads it",
}


def doc_commands() -> list[tuple[str, str]]:
    """(page, command) for every command of a ```bash block: comments cut, continuations joined."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"(^|\s+)#(\s.*)?$", "", line).strip()
                if command:
                    found.append((page.name, re.sub(r"\s+", " ", command)))
    return found


def test_every_documented_command_runs_here_or_elsewhere():
    """A new command in the docs must be added to RUN (or to ELSEWHERE, with the reason)."""
    undecided = []
    for page, command in doc_commands():
        elsewhere = [p for p in ELSEWHERE if re.search(p, command)]
        if (command in RUN) == bool(elsewhere):
            undecided.append(f"{page}: {command}")
    assert not undecided, "\n".join(undecided)
    documented = {c for _, c in doc_commands()}
    assert [c for c in RUN if c not in documented] == []  # RUN holds only documented commands


def write_corpus(ws: Path) -> None:
    """What the docs assume the user has: a corpus folder of .jsonl.gz, a held-out .jsonl and a
    config file, beside the checkout's Makefile and set-up .venv."""
    (ws / "corpus").mkdir()
    docs = list(iter_wiki_docs(limit=24, offset=5000))
    for i in range(2):
        with gzip.open(ws / f"corpus/part-{i}.jsonl.gz", "wt", encoding="utf-8") as f:
            f.writelines(json.dumps(d) + "\n" for d in docs[i * 6 : i * 6 + 6])
    (ws / "heldout.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[12:]))
    (ws / "labels.toml").write_text('input = "corpus/"\nrule = "lacy"\nfact_quantile = 0.4\n')
    installed = (ROOT / ".venv/.lacy-installed").stat().st_mtime
    for name in ("Makefile", "requirements.txt", "requirements-assets.txt", "pyproject.toml"):
        shutil.copy2(ROOT / name, ws / name)  # older than the set-up: make does not redo it
        os.utime(ws / name, (installed - 1, installed - 1))
    (ws / ".venv").symlink_to(ROOT / ".venv")


def test_documented_commands_run_as_written(tmp_path):
    if not (ROOT / ".venv/.lacy-installed").exists():
        pytest.skip("needs the checkout's set-up .venv (make setup)")
    ws = tmp_path / "ws"
    ws.mkdir()
    write_corpus(ws)
    env = dict(os.environ, PATH=f"{ROOT / '.venv/bin'}{os.pathsep}{os.environ['PATH']}")
    outputs = {}
    for command in RUN:
        for path in FRESH:
            if command.startswith("lacy-label") and path in command.split():
                shutil.rmtree(ws / path, ignore_errors=True)
        done = subprocess.run(
            ["bash", "-c", command], cwd=ws, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs[command] = done.stdout
    trained = json.loads(outputs[RUN[8]].splitlines()[-1])
    assert trained["gt_tokens"] >= 40_000 and (ws / "ckpt/lacy/model.safetensors").exists()
    stats = json.loads((ws / "out/wiki/stats.json").read_text())
    assert stats["documents_in"] == stats["documents_out"] == 300
    evaluated = json.loads(outputs[RUN[10]].splitlines()[-1])
    assert evaluated["targets"] > 0
    assert outputs[RUN[11]].startswith("Marie Curie was born in")
    assert "delegated_spans" in outputs[RUN[11]].splitlines()[-1]
