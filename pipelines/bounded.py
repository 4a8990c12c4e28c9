"""Reads that never hold more than a cap, whatever a file holds: lines, whole small files and the
members of a JSON array or object, streamed from any binary file object. What is longer than
the cap is measured while it streams past and reported as an `Overlong`, never kept.

Also the one check of a JSON record's shape before it is parsed: parsing turns a few bytes into
much more memory (`[{},{},...]` is about 24 times its size in Python objects), so a big record
with very many containers is refused instead of parsed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 1 << 20  # bytes read at a time while skipping or splitting
SMALL_RECORD = 1 << 16  # below this, a record parses into little memory whatever its shape
DEFAULT_ROW_GROUP_BYTES = 512 << 20  # a Parquet row group decodes whole: larger ones are refused
MAX_CONTAINERS = 100_000  # arrays and objects outside strings in one record
BOM = b"\xef\xbb\xbf"
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


@dataclass(frozen=True)
class Overlong:
    """A line or member longer than the cap: its size in bytes (counted to its end) and its
    first bytes, for the reject's detail."""

    size: int
    head: bytes

    def describe(self, cap: int, what: str = "line") -> str:
        head = self.head[:60]
        return f"a {what} of {self.size:,} bytes, over the {cap:,} lacy reads at once ({head!r}...)"


def record_cap(max_chars: int) -> int:
    """Bytes one JSON record may take: enough for a text of `max_chars` characters however it is
    escaped (at most 12 bytes a character, for an escaped surrogate pair), plus 1 MiB of other
    fields."""
    return 12 * max_chars + (1 << 20)


def text_cap(max_chars: int) -> int:
    """Bytes of UTF-8 that may still be `max_chars` characters (at most 4 bytes a character)."""
    return 4 * max_chars + len(BOM)


def read_capped(f, cap: int) -> bytes | Overlong:
    """The rest of `f` if it is at most `cap` bytes, else its size (read to the end, not kept)."""
    data = f.read(cap + 1)
    if len(data) <= cap:
        return data
    size = len(data)
    while chunk := f.read(CHUNK):
        size += len(chunk)
    return Overlong(size, data[:80])


def read_lines(f, cap: int) -> Iterator[tuple[int, bytes | Overlong]]:
    """(line number from 1, the line without its newline or an Overlong) for every line of `f`;
    a UTF-8 byte order mark at the start of the file is dropped."""
    number = 0
    while True:
        line = f.readline(cap + 1)
        if not line:
            return
        number += 1
        if number == 1 and line.startswith(BOM):
            line = line[len(BOM) :]
        if line.endswith(b"\n"):
            yield number, line[:-1]
        elif len(line) <= cap:  # the last line, without a newline
            yield number, line
        else:
            yield number, _skip_line(f, line)


def _skip_line(f, start: bytes) -> Overlong:
    size = len(start)
    while True:
        piece = f.readline(CHUNK)
        size += len(piece)
        if not piece or piece.endswith(b"\n"):
            return Overlong(size - piece.endswith(b"\n"), start[:80])


def too_complex(record: bytes) -> str | None:
    """Why a JSON record is refused before parsing (too many containers outside its strings),
    or None. Records under SMALL_RECORD bytes are never refused: they parse into little memory,
    and a nesting too deep to parse is caught as the RecursionError it raises."""
    if len(record) < SMALL_RECORD:
        return None
    bare = _STRING.sub(b'""', record)
    containers = bare.count(b"[") + bare.count(b"{")
    if containers > MAX_CONTAINERS:
        return (
            f"{containers:,} arrays and objects in {len(record):,} bytes (at most "
            f"{MAX_CONTAINERS:,}): parsing it would take many times its size in memory"
        )
    return None


class JsonSplitError(ValueError):
    """The file is not one JSON array or object: what was read before it stays read."""


class JsonCutOff(JsonSplitError):
    """The file ends inside its top-level array or object (a cut-off download)."""


_OUTSIDE = re.compile(rb'["\[\]{},]')
_INSIDE = re.compile(rb'["\\]')
_SPACE = b" \t\r\n"


class _Scanner:
    """Byte-level state of a JSON text read chunk by chunk: position, string and escape state,
    nesting depth. Only what splitting a top-level container needs."""

    def __init__(self, f):
        self.f, self.buf, self.pos = f, b"", 0
        self.in_string = self.escape = False
        self.depth = 0

    def fill(self) -> bool:
        if self.pos < len(self.buf):
            return True
        self.buf, self.pos = self.f.read(CHUNK), 0
        return bool(self.buf)

    def skip_space(self) -> bytes:
        """The next byte that is not white space (not consumed), b'' at the end."""
        while self.fill():
            while self.pos < len(self.buf) and self.buf[self.pos] in _SPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos : self.pos + 1]
        return b""

    def member(self, cap: int) -> tuple[bytes | Overlong, bytes]:
        """One member, up to the comma or bracket that ends it at depth 0: (its bytes, or an
        Overlong past `cap`; the byte that ended it: b',', b']', b'}', or b'' at the end)."""
        kept, size, stop, head = [], 0, b"", b""
        while not stop and self.fill():
            end, stop = self._advance()
            piece = self.buf[self.pos : end]
            size += len(piece)
            if len(head) < 80:
                head += piece[: 80 - len(head)]
            if size <= cap:
                kept.append(piece)
            self.pos = end + len(stop)
        return (b"".join(kept) if size <= cap else Overlong(size, head.lstrip())), stop

    def _advance(self) -> tuple[int, bytes]:
        """Scan the buffer from pos to the byte that ends the member (a comma at depth 0, or
        the bracket that closes the top level): (its position, it); else (end of buffer, b'')."""
        buf, i = self.buf, self.pos
        while i < len(buf):
            if self.escape:
                self.escape, i = False, i + 1
            elif self.in_string:
                m = _INSIDE.search(buf, i)
                if m is None:
                    return len(buf), b""
                i = m.end()
                self.escape, self.in_string = m.group() == b"\\", m.group() == b"\\"
            else:
                m = _OUTSIDE.search(buf, i)
                if m is None:
                    return len(buf), b""
                c, i = m.group(), m.end()
                if c == b'"':
                    self.in_string = True
                elif c in b"[{":
                    self.depth += 1
                elif c in b"]}":
                    self.depth -= 1
                    if self.depth < 0:
                        self.depth = 0
                        return m.start(), c
                elif self.depth == 0:  # a comma between members
                    return m.start(), c
        return len(buf), b""


def json_members(f, cap: int) -> Iterator[tuple[bytes | Overlong, str]]:
    """Members of the top-level JSON array (each value) or object (each `"key": value`), one at
    a time, each at most `cap` bytes (else an Overlong), with the container's kind ("array" or
    "object"). Raises JsonSplitError where the file is not one array or object; members already
    yielded stay yielded. A member that is not valid JSON is yielded as it is: parsing it is
    the caller's (so one bad member is one reject)."""
    s = _Scanner(f)
    first = s.skip_space()
    if first == b"\xef":  # a UTF-8 byte order mark
        if s.buf[s.pos : s.pos + 3] == BOM:
            s.pos += 3
            first = s.skip_space()
    if first not in (b"[", b"{"):
        raise JsonSplitError(f"a .json file must hold one JSON array or object, not {first!r}")
    kind, s.pos = ("array" if first == b"[" else "object"), s.pos + 1
    closer = b"]" if kind == "array" else b"}"
    if s.skip_space() == closer:
        s.pos += 1
    else:
        while True:
            data, stop = s.member(cap)
            if stop == closer and isinstance(data, bytes) and not data.strip():
                break  # a trailing comma before the closing bracket: no member there
            yield data, kind
            if stop == b",":
                continue
            if not stop:
                raise JsonCutOff(f"the file ends inside its top-level {kind}")
            if stop != closer:
                raise JsonSplitError(f"the top-level {kind} is closed by {stop!r}")
            break
    if s.skip_space():
        raise JsonSplitError(f"data after the end of the top-level {kind}")
