"""Publish a labelled output directory to the Hugging Face Hub as a dataset repository.

    python -m pipelines.publish DIR --repo_id ORG/NAME [--private] [--revision BRANCH] [--dry_run]

Uses the standard token sources (HF_TOKEN, a saved `hf auth login`) and never prints the token.
Checks first that the folder is a complete lacy output whose shards and rejects agree with its
stats.json and whose config.json holds no credential; uploads lacy's files only (`upload_folder`
with their exact paths), after creating the repo if needed.
`--dry_run` prints the plan (every file and its size, the repo and revision) without network.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lacy_labels import cli
from lacy_labels.cli import setting
from pipelines.layout import is_lacy_file, leftovers
from pipelines.redact import redact

REQUIRED = ("README.md", "stats.json", "config.json")


class PublishError(Exception):
    """A problem the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Contents:
    """What a labelled folder uploads (lacy's layout only) and what it leaves behind."""

    files: list[Path]
    skipped: list[Path]


def check_dataset_dir(folder: str) -> Contents:
    """lacy's files in a labelled output folder, checked to agree with its stats.json; raises
    PublishError unless `folder` is a complete lacy output."""
    root = Path(folder)
    if not root.is_dir():
        raise PublishError(f"{folder!r} is not a directory")
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    shards = sorted((root / "data").glob("train-*.parquet"))
    if missing or not shards:
        what = missing + ([] if shards else ["data/*.parquet"])
        raise PublishError(
            f"{folder!r} is not a labelled dataset (missing {', '.join(what)}); "
            "write one with python -m pipelines.label"
        )
    partial = leftovers(str(root))
    if partial:
        raise PublishError(
            f"{folder!r} holds temporary files of a run that did not finish ({partial[0]}"
            f"{f' and {len(partial) - 1} more' if len(partial) > 1 else ''}); "
            "label it again with --overwrite"
        )
    every = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
    files = [p for p in every if is_lacy_file(p.relative_to(root).as_posix()) and _plain(p)]
    check_consistent(root, [p for p in files if p.parent.name == "data"],
                     [p for p in files if p.parent.name == "rejects"])  # fmt: skip
    return Contents(files, [p for p in every if p not in files])


def _plain(path: Path) -> bool:
    """A regular file, not a symlink (which could point anywhere)."""
    return path.is_file() and not path.is_symlink()


def check_consistent(root: Path, shards: list[Path], rejects: list[Path]) -> None:
    """The shards are one set (train-i-of-N, i < N) whose rows are stats.json's documents_out,
    the rejects' lines are its documents_rejected, and config.json holds no credential."""
    import pyarrow.parquet as pq

    stats = json.loads((root / "stats.json").read_text())
    sets = {p.name.rsplit("-of-", 1)[1] for p in shards}  # an empty hash bucket has no shard
    if len(sets) != 1 or any(int(p.name[6:11]) >= int(next(iter(sets))[:5]) for p in shards):
        raise PublishError(f"{root}: the shards are not one set of train-XXXXX-of-YYYYY files "
                           f"({', '.join(p.name for p in shards[:3])}...)")  # fmt: skip
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in shards)
    lines = sum(sum(1 for line in p.open("rb") if line.strip()) for p in rejects)
    counts = (stats.get("documents_out"), stats.get("documents_rejected"))
    if (rows, lines) != counts or stats.get("documents_in") != sum(counts):
        raise PublishError(
            f"{root}: the files disagree with stats.json ({rows} rows and {lines} rejects; "
            f"stats.json says {counts[0]} and {counts[1]} of {stats.get('documents_in')}): "
            "label it again with --overwrite"
        )
    config = json.loads((root / "config.json").read_text())
    if redact(config) != config:
        raise PublishError(f"{root}/config.json holds credentials (written by an older lacy?): "
                           "label it again, or remove them, before publishing")  # fmt: skip


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise PublishError(f"invalid repo id {repo_id!r}: {e}") from None
    if repo_id.count("/") != 1:
        raise PublishError(f"invalid repo id {repo_id!r}: expected ORG/NAME")


def find_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def plan(
    folder: str,
    contents: Contents,
    repo_id: str,
    revision: str | None,
    private: bool,
    has_token: bool,
) -> str:
    root = Path(folder)
    lines = [
        f"repo: datasets/{repo_id} (private={private}) revision: {revision or 'main'}",
        f"token: {'found' if has_token else 'MISSING (set HF_TOKEN or hf auth login)'}",
        f"{len(contents.files)} files:",
    ]
    total = 0
    for p in contents.files:
        size = p.stat().st_size
        total += size
        lines.append(f"  {size:>12,d}  {p.relative_to(root)}")
    lines.append(f"  {total:>12,d}  total bytes")
    if contents.skipped:
        lines.append(f"not uploaded ({len(contents.skipped)}: not lacy's output files):")
        lines += [f"  {p.relative_to(root)}" for p in contents.skipped]
    return "\n".join(lines)


def upload_patterns(folder: str, contents: Contents) -> list[str]:
    """The exact paths to upload, as `upload_folder`'s allow patterns: lacy's files only."""
    return [p.relative_to(folder).as_posix() for p in contents.files]


def publish(
    folder: str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
) -> str:
    check_repo_id(repo_id)
    contents = check_dataset_dir(folder)
    token = find_token()
    summary = plan(folder, contents, repo_id, revision, private, token is not None)
    if dry_run:
        return summary
    if token is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="dataset",
            revision=revision,
            allow_patterns=upload_patterns(folder, contents),
            commit_message="Upload a lacy labelled dataset",
        )
    except Exception as e:  # noqa: BLE001 - the Hub client's HTTP and transport errors
        why = f"{type(e).__name__}: {e}"
        raise PublishError(f"publishing to datasets/{repo_id} failed: {why}") from None
    return summary + f"\nuploaded to https://huggingface.co/datasets/{repo_id}"


@dataclass
class PublishConfig:
    folder: str = setting(help="a labelled output folder", positional=True)
    repo_id: str = setting(help="the Hub dataset repository, ORG/NAME")
    private: bool = setting(False, "create the repository private")
    revision: str | None = setting(None, "branch to upload to")
    dry_run: bool = setting(False, "check the folder and print the plan; no network")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args, _ = cli.parse(PublishConfig, argv, "lacy-publish", __doc__)
    try:
        print(publish(args.folder, args.repo_id, args.private, args.revision, args.dry_run))
    except PublishError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
