"""What lacy writes in an output folder, and the rules that keep a mistaken path from costing
data: lacy replaces only a folder that is a lacy output, deletes only its own files there
(listed one by one, on any filesystem), and refuses outright an output that is an input, holds
one or lies inside an input folder, and the working directory, home, a filesystem root or a
bucket root.

    DIR/data/train-XXXXX-of-YYYYY.parquet   DIR/rejects/rejects-XXXXX-of-YYYYY.jsonl
    DIR/stats.json  DIR/config.json  DIR/run.json  DIR/README.md  DIR/report.html
    DIR/dataflow_job.json (a dry run)       temporaries: .tmp-* files, beam-temp-* folders"""

from __future__ import annotations

import json
import os
import re

from apache_beam.io.filesystems import FileSystems

from pipelines.listing import Listed, is_local

DATA_DIR = "data"
REJECTS_PREFIX = "rejects/rejects"
TMP_PREFIX = ".tmp-"  # our own temporary files (outputs.write_bytes)
BEAM_TMP = "beam-temp-"  # Beam's file sinks' temporary folders
TOP_FILES = ("stats.json", "config.json", "run.json", "README.md", "report.html",
             "dataflow_job.json")  # fmt: skip
_SHARD = re.compile(r"data/train-\d{5}-of-\d{5}\.parquet")
_REJECTS = re.compile(r"rejects/rejects-\d{5}-of-\d{5}\.jsonl")
MAX_CONFIG_BYTES = 64 << 20


def shard_name(i: int, n: int) -> str:
    return f"{DATA_DIR}/train-{i:05d}-of-{n:05d}.parquet"


def _list(out_dir: str) -> list[str]:
    """Every file under the folder, as paths relative to it."""
    root = out_dir.rstrip("/")
    try:
        found = [m.path for r in FileSystems.match([f"{root}/**"]) for m in r.metadata_list]
    except Exception:  # noqa: BLE001 - a folder that does not exist yet
        return []
    return sorted(p[len(root) + 1 :] for p in found if p.startswith(root + "/"))


def temporary(rel: str) -> str | None:
    """The temporary file or Beam temporary folder that `rel` (a path relative to the output
    folder) is or lies in, relative too; None for anything else."""
    parts = rel.split("/")
    if parts[-1].startswith(TMP_PREFIX) and len(parts) <= 2:
        return rel
    for i, part in enumerate(parts[:2]):
        if part.startswith(BEAM_TMP) and i < len(parts) - 1:
            return "/".join(parts[: i + 1])
    return None


def is_lacy_file(rel: str) -> bool:
    """A file lacy writes, by its path relative to the output folder."""
    return (
        rel in TOP_FILES
        or bool(_SHARD.fullmatch(rel) or _REJECTS.fullmatch(rel))
        or temporary(rel) is not None
    )


def lacy_files(out_dir: str) -> list[str]:
    """lacy's finished files in an output folder (relative paths, no temporaries)."""
    return [r for r in _list(out_dir) if is_lacy_file(r) and temporary(r) is None]


def leftovers(out_dir: str) -> list[str]:
    """Temporary files in an output, as absolute paths: ours from attempts that died mid-write
    (.tmp-*), and the folders of Beam's file sinks (beam-temp-*) from a job that failed. A
    finished lacy run leaves none (`remove_leftovers`)."""
    root = out_dir.rstrip("/")
    return sorted({f"{root}/{t}" for t in map(temporary, _list(out_dir)) if t is not None})


def _delete(root: str, rels: list[str]) -> None:
    """Delete files one by one (an object store has no folders to delete), then, locally, the
    folders lacy made that they leave empty."""
    if rels:
        FileSystems.delete([f"{root}/{r}" for r in rels])
    if is_local(root):
        dirs = {"/".join(r.split("/")[:i]) for r in rels for i in range(1, r.count("/") + 1)}
        for d in sorted(dirs, key=len, reverse=True):
            try:
                os.rmdir(f"{root}/{d}")
            except OSError:
                pass  # not empty: something else is in it


def remove_leftovers(out_dir: str) -> list[str]:
    """Delete what `leftovers` finds; call it only once the job has finished (nothing writes any
    more). Returns what it removed."""
    root = out_dir.rstrip("/")
    rels = [r for r in _list(root) if temporary(r) is not None]
    _delete(root, rels)
    return sorted({f"{root}/{temporary(r)}" for r in rels})


def is_lacy_output(out_dir: str) -> bool:
    """The folder holds lacy's config.json (settings and provenance with a lacy version)."""
    path = f"{out_dir.rstrip('/')}/config.json"
    try:
        with FileSystems.open(path) as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        cfg = json.loads(data)
        return (
            isinstance(cfg, dict)
            and "lacy_version" in cfg.get("provenance", {})
            and ("settings" in cfg)
        )
    except Exception:  # noqa: BLE001 - missing, unreadable or not lacy's
        return False


def prepare_output(out_dir: str, overwrite: bool, inputs: list[Listed], spec: str | None) -> None:
    """Check the output's place, then refuse a non-empty output unless `overwrite`, which
    deletes lacy's own files of a previous lacy output there (and nothing else)."""
    check_location(out_dir, inputs, spec)
    root = out_dir.rstrip("/")
    existing = _list(root)
    if existing and not overwrite:
        raise FileExistsError(
            f"output directory {out_dir!r} is not empty ({len(existing)} files); "
            "pass --overwrite to replace a previous lacy output there"
        )
    if existing:
        if not is_lacy_output(root):
            raise FileExistsError(
                f"--overwrite refused: {out_dir!r} is not a lacy output (no lacy config.json); "
                "lacy replaces only its own outputs: name an empty or new folder"
            )
        _delete(root, [r for r in existing if is_lacy_file(r)])
    try:
        FileSystems.mkdirs(root)
    except OSError:
        pass  # exists, or an object store without directories


class UnsafeOutput(ValueError):
    """An output path lacy will not write to or delete in (one clear line)."""


def check_location(out_dir: str, inputs: list[Listed], spec: str | None) -> None:
    """Refuse an output that is an input, holds an input, or lies inside an input folder, and
    the working directory, home, a filesystem root or a bucket root."""
    out = _canonical(out_dir)
    if is_local(out_dir):
        places = {"the working directory": os.getcwd(), "your home folder": os.path.expanduser("~")}
        for name, place in places.items():
            if out == os.path.realpath(place):
                raise UnsafeOutput(f"--output {out_dir!r} is {name}: name a folder of its own")
        if out == "/" or os.path.ismount(out):
            raise UnsafeOutput(f"--output {out_dir!r} is a filesystem root: name a folder in it")
    elif out.split("://", 1)[-1].strip("/").count("/") == 0:
        raise UnsafeOutput(f"--output {out_dir!r} is a bucket root: name a folder in it")
    if spec is not None and _canonical(spec) == out:
        raise UnsafeOutput(f"--output {out_dir!r} is the input: name another folder")
    if spec is not None and _is_folder(spec) and _inside(out, _canonical(spec)):
        raise UnsafeOutput(f"--output {out_dir!r} lies inside the input folder {spec!r}: a later "
                           "run would read its own output; name a folder outside it")  # fmt: skip
    outs = {out, _plain(out_dir)}
    for entry in inputs:
        paths = {_canonical(entry.path), _plain(entry.path)} if entry.reason is None else set()
        if any(p == o or _inside(p, o) for p in paths for o in outs):
            raise UnsafeOutput(f"--output {out_dir!r} holds the input file {entry.path!r}: "
                               "name a folder that holds no input")  # fmt: skip


def _canonical(path: str) -> str:
    if is_local(path):
        return os.path.realpath(os.path.expanduser(path))
    return path.rstrip("/")


def _plain(path: str) -> str:
    """The path made absolute without resolving symlinks."""
    return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path.rstrip("/")


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _is_folder(spec: str) -> bool:
    if is_local(spec):
        return os.path.isdir(spec)
    return not re.search(r"[*?\[]", spec) and not FileSystems.exists(spec)  # a prefix
