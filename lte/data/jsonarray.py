"""Stream the elements of a top-level JSON array (or the lines of a JSON Lines file) one at a time.

Benchmark files are JSON arrays; the synthetic world can hold a million records (gigabytes of
text), so reading element by element keeps memory flat. Elements are decoded by the C scanner of
the standard `json` module; only the brackets and commas between them are handled here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from lte.errors import UserError

_CHUNK_CHARS = 1 << 20
# No record of any supported format comes near this; past it a decode failure is not a record
# split across chunks but a malformed one, and reading on would only load the rest of the file.
_MAX_PENDING_CHARS = 64 << 20
_WS = " \t\n\r"


class _Reader:
    """A growing text buffer over a file, with the line number of any position."""

    def __init__(self, f, path: str):
        self.f, self.path = f, path
        self.buf, self.pos, self.eof = "", 0, False
        self.lines_before = 0  # newlines in text already dropped from the buffer

    def more(self) -> bool:
        """Append a chunk, dropping consumed text first; False at end of file."""
        if self.eof:
            return False
        try:
            chunk = self.f.read(_CHUNK_CHARS)
        except UnicodeDecodeError as e:
            raise UserError(f"not UTF-8 text ({e.reason} at byte {e.start} of a chunk)",
                            file=self.path) from None
        if not chunk:
            self.eof = True
            return False
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def skip_ws(self) -> str:
        """Skip whitespace; return the next character ('' at end of file) without consuming it."""
        while True:
            n = len(self.buf)
            while self.pos < n and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < n:
                return self.buf[self.pos]
            if not self.more():
                return ""

    def line(self, pos: int | None = None) -> int:
        pos = self.pos if pos is None else pos
        return self.lines_before + self.buf.count("\n", 0, pos) + 1


def iter_json_array(path: str | Path) -> Iterator[object]:
    """Yield the elements of the JSON array in `path`; malformed input raises `UserError`.

    A file that starts with `{` is JSON Lines: one record per line (records may not span lines
    there, but the decoder does not insist: it reads one JSON value after another).

    The error names the file, the index of the element being read and the line, e.g. for a file
    cut off in the middle of a record.
    """
    path_s = str(path)
    p = Path(path)
    if not p.exists():
        raise UserError("file not found", file=path_s)
    if not p.is_file():
        raise UserError("not a file", file=path_s)
    decoder = json.JSONDecoder()
    with open(p, encoding="utf-8") as f:
        r = _Reader(f, path_s)
        first = r.skip_ws()
        if first == "\ufeff":  # a byte-order mark some editors write
            r.pos += 1
            first = r.skip_ws()
        if first == "{":
            yield from _iter_json_lines(r, decoder)
            return
        if first != "[":
            what = "the file is empty" if first == "" else f"it starts with {first!r}"
            raise UserError(f"expected a JSON list of records, but {what} (JSON Lines start "
                            f"with '{{')", file=path_s)
        r.pos += 1
        index = 0
        if r.skip_ws() == "]":
            r.pos += 1
        else:
            while True:
                yield _decode_one(r, decoder, index)
                index += 1
                sep = r.skip_ws()
                if sep == ",":
                    r.pos += 1
                    if r.skip_ws() == "]":
                        raise UserError(f"not valid JSON: trailing comma before ']' at line "
                                        f"{r.line()}", file=path_s, record=index)
                    continue
                if sep == "]":
                    r.pos += 1
                    break
                if sep == "":
                    raise UserError(f"truncated JSON: the file ends after {index} records, "
                                    "inside the list (no closing ']')", file=path_s,
                                    record=index)
                raise UserError(f"not valid JSON: expected ',' or ']' after record {index - 1}, "
                                f"found {sep!r} at line {r.line()}", file=path_s, record=index)
        if r.skip_ws() != "":
            raise UserError(f"not valid JSON: extra data after the list at line {r.line()}",
                            file=path_s)


def _iter_json_lines(r: _Reader, decoder: json.JSONDecoder) -> Iterator[object]:
    index = 0
    while r.skip_ws() != "":
        yield _decode_one(r, decoder, index)
        index += 1


def _decode_one(r: _Reader, decoder: json.JSONDecoder, index: int) -> object:
    if r.skip_ws() == "":
        raise UserError("truncated JSON: the file ends inside the list", file=r.path,
                        record=index)
    while True:
        try:
            value, end = decoder.raw_decode(r.buf, r.pos)
        except json.JSONDecodeError as e:
            pending = len(r.buf) - r.pos
            if pending < _MAX_PENDING_CHARS and r.more():
                continue  # the record may just be split across chunks
            if r.eof and _is_truncation(e, r.buf):
                raise UserError(f"truncated JSON: the file ends inside this record "
                                f"(it starts at line {r.line()})", file=r.path,
                                record=index) from None
            raise UserError(f"not valid JSON: {e.msg} at line {r.line(e.pos)}", file=r.path,
                            record=index) from None
        # A bare number split across chunks decodes as a shorter number; records are objects,
        # so only ever a non-object can be cut this way, and the caller rejects non-objects.
        r.pos = end
        return value


def _is_truncation(e: json.JSONDecodeError, buf: str) -> bool:
    """Did decoding fail because the text ran out (rather than because of a bad character)?"""
    if e.msg.startswith("Unterminated string"):
        return True
    return buf[e.pos:].strip() == ""
