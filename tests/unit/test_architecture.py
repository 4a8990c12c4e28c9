"""The rooms' import rules of docs/architecture.md: the library has no Beam and knows nothing of
the pipeline or the trainer, the trainer no Beam and no pipeline, deploy only the pipeline."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("lacy_labels", "pipelines", "trainer", "deploy", "bench")
ALLOWED = {
    "lacy_labels": {"lacy_labels"},
    "pipelines": {"lacy_labels", "pipelines"},
    "trainer": {"lacy_labels", "trainer"},
    "deploy": {"pipelines", "deploy"},
    "bench": {"lacy_labels", "pipelines", "trainer", "deploy", "bench"},
}
NO_BEAM = ("lacy_labels", "trainer")


def imports(path: Path) -> set[str]:
    """Top-level package names a module imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("room", ROOMS)
def test_each_room_imports_only_what_the_architecture_allows(room):
    wrong = []
    for path in sorted((ROOT / room).rglob("*.py")):
        used = imports(path)
        lacy = used & set(ROOMS) | ({"tests"} & used)
        bad = sorted(lacy - ALLOWED[room])
        if room in NO_BEAM and "apache_beam" in used:
            bad.append("apache_beam")
        if bad:
            wrong.append(f"{path.relative_to(ROOT)}: {bad}")
    assert not wrong, "\n".join(wrong)


def test_the_library_is_one_import():
    import lacy_labels

    missing = [n for n in lacy_labels.__all__ if getattr(lacy_labels, n, None) is None]
    assert not missing
    for name in ("Annotator", "Scorer", "LabelRule", "load_reference", "rows_to_table"):
        assert name in lacy_labels.__all__
