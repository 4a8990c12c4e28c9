"""Publish a labelled output directory to the Hugging Face Hub as a dataset repository.

    python -m pipelines.publish DIR --repo_id ORG/NAME [--private] [--revision BRANCH] [--dry_run]

Uses the standard token sources (HF_TOKEN, a saved `hf auth login`) and never prints the token.
Uploads with `upload_large_folder` (resumable, multi-commit) after creating the repo if needed.
`--dry_run` prints the plan (every file and its size, the repo and revision) without network.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from lacy_labels import cli
from lacy_labels.cli import setting
from pipelines.outputs import leftovers

REQUIRED = ("README.md", "stats.json", "config.json")


class PublishError(Exception):
    """A problem the user can fix; printed without a traceback."""


def check_dataset_dir(folder: str) -> list[Path]:
    """Files to upload; raises PublishError unless `folder` is a labelled output directory."""
    root = Path(folder)
    if not root.is_dir():
        raise PublishError(f"{folder!r} is not a directory")
    missing = [name for name in REQUIRED if not (root / name).is_file()]
    shards = sorted((root / "data").glob("*.parquet"))
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
    return sorted(p for p in root.rglob("*") if p.is_file())


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
    files: list[Path],
    repo_id: str,
    revision: str | None,
    private: bool,
    has_token: bool,
) -> str:
    root = Path(folder)
    lines = [
        f"repo: datasets/{repo_id} (private={private}) revision: {revision or 'main'}",
        f"token: {'found' if has_token else 'MISSING (set HF_TOKEN or hf auth login)'}",
        f"{len(files)} files:",
    ]
    total = 0
    for p in files:
        size = p.stat().st_size
        total += size
        lines.append(f"  {size:>12,d}  {p.relative_to(root)}")
    lines.append(f"  {total:>12,d}  total bytes")
    return "\n".join(lines)


def publish(
    folder: str,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
) -> str:
    check_repo_id(repo_id)
    files = check_dataset_dir(folder)
    token = find_token()
    summary = plan(folder, files, repo_id, revision, private, token is not None)
    if dry_run:
        return summary
    if token is None:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    api.upload_large_folder(
        repo_id=repo_id,
        folder_path=folder,
        repo_type="dataset",
        revision=revision,
        private=private,
    )
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
