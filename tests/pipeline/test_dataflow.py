"""Dataflow's offline job translation: the docs' Dataflow command lines, built with --dry_run,
give the job a user means (the accelerator hint on the scoring step alone, the given image and
experiments) and the launcher writes it beside config.json without waiting for output."""

import json
import re
import shlex
from pathlib import Path

import pytest

from pipelines import label
from pipelines.dataflow import JOB_FILE, hinted_steps

ROOT = Path(__file__).resolve().parents[2]


def docs_commands() -> list[list[str]]:
    """The `lacy-label ... --runner=DataflowRunner` command lines of docs/runners.md."""
    text = (ROOT / "docs/runners.md").read_text()
    blocks = re.findall(r"```bash\n(lacy-label .*?DataflowRunner.*?)```", text, re.S)
    return [shlex.split(b.replace("\\\n", " "))[1:] for b in blocks]


def offline(argv: list[str], out: Path) -> list[str]:
    """The docs' command with a local output, the shipped input and valid project names."""
    swap = {"--output": str(out), "--project=PROJECT": "--project=lacy-test",
            "--region=REGION": "--region=europe-west4"}  # fmt: skip
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--input", "--output"):
            skip = True
            if a == "--output":
                args += [a, str(out)]
        else:
            args.append(swap.get(a, a.replace("gs://BUCKET", "gs://lacy-test-bucket")))
    return [*args, "--limit", "20", "--dry_run=True"]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "cpu+gpu"])
def test_docs_dataflow_command_builds_offline(gpu, tmp_path, capsys):
    (argv,) = [c for c in docs_commands() if ("--score_accelerator" in c) == gpu]
    out = tmp_path / "out"
    assert label.main(offline(argv, out)) == 0
    assert f"wrote the Dataflow job description to {out}/{JOB_FILE}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", JOB_FILE]  # nothing ran
    job = json.loads((out / JOB_FILE).read_text())
    env = job["job"]["environment"]
    image = argv[argv.index(next(a for a in argv if a.startswith("--sdk_container_image")))]
    images = {p["containerImage"] for p in env["workerPools"][0]["sdkHarnessContainerImages"]}
    assert images == {image.split("=", 1)[1]}
    assert "use_runner_v2" in env["experiments"]
    hinted = hinted_steps(job)
    if gpu:
        given = argv[argv.index("--score_accelerator") + 1]
        assert set(hinted.values()) == {given}
        assert "Score" in hinted and all(n.split("/")[0] == "Score" for n in hinted)
    else:
        assert hinted == {}
    names = {t["uniqueName"] for t in job["pipeline"]["components"]["transforms"].values()}
    assert {"Annotate", "Score", "Label", "WriteShards"} <= names
