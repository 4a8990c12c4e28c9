"""Hostile input read by the real readers: every record of every kind in tests/hostile.py is
accounted for exactly once; a property test of the JSON-lines reader over random bytes; memory
stays bounded with a 2 GiB line. (The same input through whole pipelines: test_pipeline.py and
test_flink.py.)"""

import gzip
import json
import subprocess
import sys

from hostile import KINDS, MAX_CHARS, ROW_GROUP_BYTES, check_output, make_hostile
from hypothesis import given, settings
from hypothesis import strategies as st

from lacy_labels.validate import Reject, validate
from pipelines.bounded import BOM
from pipelines.listing import expand_inputs
from pipelines.sources import ReadOptions, read_file
from pipelines.transforms import unique_by_id

OPTS = ReadOptions(max_chars=MAX_CHARS, max_row_group_bytes=ROW_GROUP_BYTES)


def read_and_validate(spec, opts=OPTS):
    """What the job's read -> validate -> dedupe steps make of an input, in one process."""
    docs, rejects = [], []
    for entry in expand_inputs(spec):
        for raw in read_file(entry, opts):
            out = validate(raw, max_chars=opts.max_chars)
            (rejects.append(out.to_dict()) if isinstance(out, Reject) else docs.append(out))
    rows, dups = unique_by_id(docs)
    return rows, rejects + dups


def test_every_kind_of_hostile_input_is_accounted_for(tmp_path):
    assert len(KINDS) >= 25
    expected = make_hostile(tmp_path)
    rows, rejects = read_and_validate(str(tmp_path / "in"))
    n = len(rows) + len(rejects)
    stats = {"documents_in": n, "documents_out": len(rows), "documents_rejected": len(rejects)}
    check_output(tmp_path, expected, rows, rejects, stats)
    by_id = {r["id"]: r for r in rows}
    assert by_id["ctrl"]["text"] == "NUL  and  bell in Oslo"
    assert by_id["bom.txt"]["text"] == "A text file with a byte order mark."
    assert by_id["bom"]["text"] == "A file that starts with a BOM."
    detail = {(r["source"].rsplit("/", 1)[-1], r["index"]): r["detail"] for r in rejects}
    assert "a symlink to /dev/zero" not in detail[("zero.jsonl", -1)]
    assert "character device: it links to /dev/zero" in detail[("zero.jsonl", -1)]
    assert "nested too deeply" in detail[("deep.jsonl", 3)]
    assert "row group 0 (4 rows)" in detail[("groups.parquet", 0)]


def test_a_glob_lists_unsupported_and_special_files_it_matches(tmp_path):
    make_hostile(tmp_path)
    got = {e.rel: e.reason for e in expand_inputs(str(tmp_path / "in/*.jsonl*"))}
    assert got["fifo.jsonl"] == "not_a_regular_file" and got["loop.jsonl"] == "unreadable_file"
    assert got["dump.jsonl.zst"] == "unsupported_file" and got["deep.jsonl"] is None
    assert "a/notes.txt" not in got and "array.json" not in got


def lines_file(tmp_path, lines: list[bytes]):
    path = tmp_path / "random.jsonl"
    path.write_bytes(b"\n".join(lines))
    return path


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=60),
            st.builds(
                lambda d: json.dumps(d).encode(),
                st.dictionaries(
                    st.sampled_from(["id", "text", "x"]),
                    st.one_of(
                        st.text(max_size=20), st.integers(), st.none(), st.lists(st.integers())
                    ),
                ),
            ),  # fmt: skip
        ).map(lambda b: b.replace(b"\n", b" ")),
        max_size=25,
    )
)
def test_jsonl_reader_accounts_for_every_non_blank_line_once(tmp_path_factory, lines):
    path = lines_file(tmp_path_factory.mktemp("prop"), lines)
    entry = expand_inputs(str(path))[0]
    raws = list(read_file(entry, ReadOptions(max_chars=50)))
    content = [b.removeprefix(BOM) if i == 0 else b for i, b in enumerate(lines)]  # not content
    blank = [i + 1 for i, b in enumerate(content) if not b.strip()]
    want = [i + 1 for i in range(len(lines)) if i + 1 not in blank]
    if not want:
        assert [r["reason"] for r in raws] == ["empty_file"]
        return
    assert [r["index"] for r in raws] == want  # each non-blank line once, in order
    for r in raws:
        assert ("reason" in r) != ("text" in r)
        out = validate(r, max_chars=50)
        assert isinstance(out, (dict, Reject))


BOMB = r"""
import gzip, resource, sys
from pipelines.listing import expand_inputs
from pipelines.sources import read_file
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = [(r["index"], r.get("reason"), r.get("id")) for e in expand_inputs(sys.argv[1])
       for r in read_file(e)]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(out, peak // 1024)
"""


def write_bomb(path, gib: int = 2) -> int:
    """A .jsonl.gz whose second line is `gib` GiB of 'x' (a few MB on disk: gzip members of 64
    MiB each, repeated), between two good lines; returns the line's length."""
    chunk = gzip.compress(b"x" * (64 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(b'{"id": "a", "text": "before"}\n{"id": "bomb", "text": "'))
        for _ in range(gib * 16):
            f.write(chunk)
        f.write(gzip.compress(b'"}\n{"id": "b", "text": "after"}\n'))
    return gib * (64 << 20) * 16


def test_a_2_gib_line_is_measured_as_it_streams_never_held(tmp_path):
    write_bomb(tmp_path / "bomb.jsonl.gz")
    assert (tmp_path / "bomb.jsonl.gz").stat().st_size < 10 << 20
    done = subprocess.run([sys.executable, "-c", BOMB, str(tmp_path / "bomb.jsonl.gz")],
                          capture_output=True, text=True, check=True)  # fmt: skip
    records, peak_mb = done.stdout.rsplit(" ", 1)
    assert records == "[(1, None, 'a'), (2, 'too_long', None), (3, None, 'b')]"
    assert int(peak_mb) < 200  # the default cap is 61 MB a line; the line is 2,048 MB
