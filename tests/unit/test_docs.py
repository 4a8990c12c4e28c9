"""The documentation a user reads stays true to the code: generated reference tables are
current, the README's Python example runs, links resolve, every console script starts."""

import contextlib
import importlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lacy_labels.cli import tomllib

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_reference_tables_are_current():
    done = subprocess.run(
        [sys.executable, "docs/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_setting_is_in_the_cli_reference():
    from pipelines.config import LabelConfig
    from trainer.train import TrainConfig

    text = (ROOT / "docs/cli.md").read_text()
    for cls in (LabelConfig, TrainConfig):
        for name in cls.__dataclass_fields__:
            assert f"| `--{name}` |" in text, name


def test_links_between_pages_resolve():
    for page in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text) < 12_500
    for heading in ("## The two commands", "## Output", "## Read more", "## License"):
        assert heading in text


SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_scripts_answer_help(name):
    module, func = SCRIPTS[name].split(":")
    main = getattr(importlib.import_module(module), func)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and f"usage: {name}" in out.getvalue()


def test_code_is_formatted_and_lint_free():
    """`make lint` as a test, so that CI catches what ruff would."""
    for cmd in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *cmd], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
