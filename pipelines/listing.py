"""What `--input` names, as a list of entries: the files to read, and the files and names that
are not read, each with a reason (they become rejects, so that nothing the user named goes
unaccounted for).

Local inputs are walked here, not through Beam's match (which drops broken symlinks and cannot
say why): only regular files are read, symlinks to regular files are followed, symlinks to
folders are not, and devices, FIFOs, sockets, symlink loops and names that are not UTF-8 are
listed with a reason. Remote inputs (`gs://`, `s3://`, ...) go through Beam's FileSystems. A
`datasets` folder is read only through the `.arrow` files its state.json names plainly inside
it."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import re
import stat
from dataclasses import dataclass

from apache_beam.io.filesystem import FileSystem
from apache_beam.io.filesystems import FileSystems

from lacy_labels.corpus import wiki_json_path

SHIPPED = "shipped:wikipedia"
# suffix -> reader; the order matters where one suffix ends another (.jsonl.gz before .gz)
READERS = {
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".txt": "txt",
    ".txt.gz": "txt",
}
SUFFIXES = tuple(READERS)
MAX_STATE_BYTES = 16 << 20  # a datasets folder's state.json or dataset_dict.json
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Listed:
    """One entry of the input: `path` to read (printable: a name that is not UTF-8 is shown
    escaped), `rel` its path relative to what the user named (a `.txt` document's id), its size;
    `reason` and `detail` when it is not read (then it becomes one reject)."""

    path: str
    rel: str
    size: int = 0
    reason: str | None = None
    detail: str = ""

    @property
    def reader(self) -> str | None:
        return reader_of(self.path)


def reader_of(path: str) -> str | None:
    """The reader for a file name, by its suffix; None for a type lacy does not read."""
    if path == SHIPPED:
        return "shipped"
    return next((READERS[s] for s in sorted(READERS, key=len, reverse=True) if path.endswith(s)),
                None)  # fmt: skip


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def printable(name: str) -> str:
    """A file name as text that any coder can write: bytes that are not UTF-8 (which Python
    keeps as lone surrogates) shown as \\x escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace") if is_local(name) else name


def expand_inputs(spec: str | None) -> list[Listed]:
    """The entries of an input spec (a file, a folder, a `datasets` folder or a glob; the shipped
    sample when None), sorted by path. Raises FileNotFoundError when it names nothing lacy
    reads, ValueError for a single named file of a type lacy does not read."""
    if spec is None:
        return [Listed(SHIPPED, "wikipedia", wiki_json_path().stat().st_size)]
    spec = spec.rstrip("/") or "/"
    entries = _datasets_folder(spec)
    if entries is None:
        entries = _local(spec) if is_local(spec) else _remote(spec)
    entries = sorted(entries, key=lambda e: e.path)
    if not any(e.reason is None for e in entries):
        seen = (f"; found {len(entries)} entries lacy does not read, e.g. {entries[0].rel} "
                f"({entries[0].reason}: {entries[0].detail})" if entries else "")  # fmt: skip
        raise FileNotFoundError(f"no input files ({', '.join(SUFFIXES)}) match {spec!r}{seen}")
    return entries


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except Exception:  # noqa: BLE001 - a filesystem that cannot answer
        return False


def _read_small_json(path: str):
    with FileSystems.open(path) as f:
        data = f.read(MAX_STATE_BYTES + 1)
    if len(data) > MAX_STATE_BYTES:
        raise ValueError(f"{path} is over {MAX_STATE_BYTES:,} bytes: not a datasets file")
    try:
        return json.loads(data)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def plain_name(name) -> bool:
    """A file or folder name inside its folder: no separator, not '.', '..' or empty."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\x00" not in name
    )


def _datasets_folder(spec: str) -> list[Listed] | None:
    """A `datasets` save_to_disk folder (state.json) or dataset dict (dataset_dict.json); None
    when `spec` is neither. Only plain `.arrow` names inside the folder are read."""
    state = FileSystems.join(spec, "state.json")
    if _exists(state):
        try:
            names = [d["filename"] for d in _read_small_json(state)["_data_files"]]
        except (KeyError, TypeError) as e:
            raise ValueError(
                f"{state} is not a datasets state file (no _data_files: {e})"
            ) from None
        return [_data_file(spec, name, i) for i, name in enumerate(names)]
    splits_file = FileSystems.join(spec, "dataset_dict.json")
    if not _exists(splits_file):
        return None
    splits = _read_small_json(splits_file).get("splits", [])
    out = []
    for split in splits:
        if not plain_name(split):
            out.append(Listed(f"{spec}/{split!r}", str(split)[:200], 0, "outside_input",
                              f"dataset_dict.json names the split {split!r}: lacy reads only "
                              "splits named plainly inside the folder"))  # fmt: skip
            continue
        sub = _datasets_folder(FileSystems.join(spec, split))
        if sub is None:
            raise FileNotFoundError(f"{spec}: split {split!r} has no state.json")
        out += [Listed(e.path, f"{split}/{e.rel}", e.size, e.reason, e.detail) for e in sub]
    return out


def _data_file(folder: str, name, i: int) -> Listed:
    if not plain_name(name) or not name.endswith(".arrow"):
        shown = printable(name) if isinstance(name, str) else repr(name)
        return Listed(f"{folder}/state.json#{i}", shown[:200], 0, "outside_input",
                      f"state.json names {shown[:200]!r} as a data file: lacy reads only .arrow "
                      "files named plainly inside the datasets folder")  # fmt: skip
    path = FileSystems.join(folder, name)
    if is_local(path):
        return _check_local(path, name)
    size = sum(m.size_in_bytes for r in FileSystems.match([path]) for m in r.metadata_list)
    return Listed(path, name, size)


def _local(spec: str) -> list[Listed]:
    if os.path.isdir(spec):
        return _walk(spec, spec)
    if not _GLOB.search(spec):
        if not os.path.lexists(spec):
            raise FileNotFoundError(f"no input files ({', '.join(SUFFIXES)}) match {spec!r}")
        entry = _check_local(spec, posixpath.basename(spec))
        if entry.reason == "unsupported_file":
            raise ValueError(f"{spec}: {entry.detail}")
        return [entry]
    root = _GLOB.split(spec, 1)[0].rsplit("/", 1)[0] if "/" in spec else "."
    root = root or "/"
    if not os.path.isdir(root):
        return []
    rest = spec if root == "." else spec[len(root) :].lstrip("/")
    depth = None if "**" in spec else rest.count("/") + 1
    return _walk(root, root, re.compile(FileSystem.translate_pattern(spec)), depth)


def _walk(top: str, root: str, pattern=None, depth: int | None = None) -> list[Listed]:
    """Every entry under `top` (those matching `pattern`, at most `depth` folders down, when
    given); symlinks to folders listed but not followed; folders that cannot be listed listed."""
    out = []

    def unreadable(err: OSError) -> None:
        path = err.filename or top
        out.append(Listed(printable(path), _rel(path, root), 0, "unreadable_file",
                          f"a folder lacy cannot list ({err.strerror})"))  # fmt: skip

    for dirpath, dirs, files in os.walk(top, onerror=unreadable):
        here = os.path.relpath(dirpath, top)
        links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]
        if depth is not None and (0 if here == "." else here.count(os.sep) + 1) >= depth - 1:
            dirs[:] = []  # the pattern cannot match deeper
        names = files + links
        for name in sorted(set(names)):
            path = os.path.join(dirpath, name)
            path = path[2:] if top == "." and path.startswith("./") else path
            if pattern is None or pattern.match(path):
                out.append(_check_local(path, _rel(path, root)))
    return out


def _rel(path: str, root: str) -> str:
    return printable(os.path.relpath(path, root))


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder (lacy does not follow symlinks to folders: name the folder itself)",
}


def _check_local(path: str, rel: str) -> Listed:
    """A local path as an entry: read when it is a regular file (or a symlink to one) of a type
    lacy reads; else the reason it is not."""
    shown = printable(path)
    if shown != path:
        return Listed(shown, printable(rel), 0, "bad_file_name",
                      "the file name is not UTF-8; rename it to read it")  # fmt: skip
    link = f": it links to {printable(os.readlink(path))}" if os.path.islink(path) else ""
    try:
        st = os.stat(path)
    except OSError as e:
        why = {errno.ELOOP: "a symlink loop", errno.ENOENT: "a broken symlink"}.get(
            e.errno, f"cannot be read ({e.strerror})"
        )
        return Listed(path, rel, 0, "unreadable_file", why + link)
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return Listed(path, rel, 0, "not_a_regular_file", kind + link)
    return _typed(Listed(path, rel, st.st_size))


def _typed(entry: Listed) -> Listed:
    if entry.reader is not None:
        return entry
    return Listed(entry.path, entry.rel, entry.size, "unsupported_file",
                  f"lacy reads {', '.join(SUFFIXES)} files, not this one (a .json.gz of JSON lines "
                  "reads once renamed .jsonl.gz)")  # fmt: skip


def _remote(spec: str) -> list[Listed]:
    if _GLOB.search(spec):
        pattern, root = spec, _GLOB.split(spec, 1)[0].rsplit("/", 1)[0]
    elif reader_of(spec) is not None and _exists(spec):
        pattern, root = spec, spec.rsplit("/", 1)[0]
    else:
        pattern, root = FileSystems.join(spec, "**"), spec
    matched = [m for r in FileSystems.match([pattern]) for m in r.metadata_list]
    return [
        _typed(Listed(m.path, m.path[len(root) :].lstrip("/"), m.size_in_bytes))
        for m in matched
        if not m.path.endswith("/")  # a folder marker object
    ]


def readable(entries: list[Listed]) -> list[Listed]:
    return [e for e in entries if e.reason is None]


def input_bytes(entries: list[Listed]) -> int:
    """Total size of the files to read (from the listing: nothing is read)."""
    return sum(e.size for e in readable(entries))
