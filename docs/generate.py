"""Rewrite the generated blocks of README.md and docs/*.md from the code, so that reference
tables cannot drift: `make docs` (or `python docs/generate.py`); `--check` exits 1 if a block is
stale (tests/test_docs.py runs it). A block is the text between `<!-- generated: NAME -->` and
`<!-- end generated -->`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def schema_table() -> str:
    from lacy_labels.schema import COLUMN_DOCS, SCHEMA

    rows = ["| column | type | meaning |", "|---|---|---|"]
    rows += [f"| `{f.name}` | {f.type} | {COLUMN_DOCS[f.name]} |" for f in SCHEMA]
    return "\n".join(rows) + "\n"


def reasons_table() -> str:
    from lacy_labels.validate import REASON_DOCS

    rows = ["| reason | meaning |", "|---|---|"]
    rows += [f"| `{k}` | {v} |" for k, v in REASON_DOCS.items()]
    return "\n".join(rows) + "\n"


def cli_table(name: str) -> str:
    from lacy_labels.cli import reference_table

    return reference_table(_settings()[name])


def _settings() -> dict:
    from pipelines.config import LabelConfig
    from pipelines.flink import CountersConfig
    from pipelines.publish import PublishConfig
    from pipelines.report import ReportConfig
    from pipelines.worker_pool import PoolConfig
    from trainer.cascade import CascadeConfig
    from trainer.evaluate import EvalConfig
    from trainer.train import TrainConfig

    return {
        "label": LabelConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "cascade": CascadeConfig,
        "publish": PublishConfig,
        "report": ReportConfig,
        "worker-pool": PoolConfig,
        "flink-counters": CountersConfig,
    }


def block(name: str) -> str:
    if name == "schema":
        return schema_table()
    if name == "reject-reasons":
        return reasons_table()
    if name == "probe-tolerance":
        from lacy_labels.scoring import PROBE_TOLERANCE, PROBE_TOLERANCE_REDUCED

        return (
            f"{PROBE_TOLERANCE['float32']:g} nats in fp32, {PROBE_TOLERANCE_REDUCED:g} in reduced "
            "precision, whose own forward rounds its logits\n"
        )
    if name.startswith("cli-"):
        return cli_table(name.removeprefix("cli-"))
    raise KeyError(f"unknown generated block {name!r}")


def regenerate(text: str) -> str:
    return BLOCK.sub(lambda m: m[1] + block(m[2]) + m[4], text)


def files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str]) -> int:
    stale = []
    for path in files():
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if "--check" not in argv:
                path.write_text(new, encoding="utf-8")
    if stale and "--check" in argv:
        print("stale generated blocks in " + ", ".join(map(str, stale)) + ": run `make docs`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
