"""Line endings: whatever ends a file's lines (LF, CRLF, a bare CR, a mix), every record is
read exactly once, and a line ending out of place quarantines its record only.

Generated users files go through the public path (``open_project(...).ingest()``); the
copy with uniform line endings is also checked chunk by chunk against one whole pass.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.helpers import make_project

import segmint

# --- line endings: every record read, whatever ends the lines (issue 15) ----------------------

_PIECES = ["a", "é", " ", ",", '"', "\r", "\n", "\r\n"]


@st.composite
def _csv_with_any_line_endings(draw: st.DrawFn) -> tuple[bytes, dict[str, str | None], list[int]]:
    """A users file (``id,town``) whose towns may hold quotes, commas and line breaks
    (quoted), whose lines end with LF and CRLF mixed, or all with a bare CR, and in which
    some unquoted towns hold a stray CR (or LF in a CR file). Returns the bytes, the town
    each user must end up with, and the record numbers to be quarantined."""
    ending = draw(st.sampled_from(["lf", "cr"]))
    n = draw(st.integers(1, 12))
    expected: dict[str, str | None] = {}
    strays: list[int] = []
    lines = [b"id,town"]
    for i in range(n):
        user = f"u{i}"
        if draw(st.integers(0, 5)) == 0:  # a stray line ending in an unquoted value
            stray = "\n" if ending == "cr" else "\r"
            lines.append(f"{user},x{stray}y".encode())
            strays.append(i + 2)
            continue
        town = "".join(draw(st.lists(st.sampled_from(_PIECES), max_size=6)))
        quoted = any(c in town for c in ',"\r\n') or draw(st.booleans())
        field = '"' + town.replace('"', '""') + '"' if quoted else town
        lines.append(f"{user},{field}".encode())
        expected[user] = town.strip(" ") or None
    ends = [b"\r" if ending == "cr" else draw(st.sampled_from([b"\n", b"\r\n"])) for _ in lines]
    if draw(st.booleans()):
        ends[-1] = b""  # no line ending after the last line
    return b"".join(line + end for line, end in zip(lines, ends, strict=True)), expected, strays


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_csv_with_any_line_endings())
# found by this test: DuckDB read a CRLF header then LF lines as one record (garbage id)
@example((b'id,town\r\nu0,","\nu1,","\nu2,\n', {"u0": ",", "u1": ",", "u2": None}, []))
# a CR file whose one record holds a stray LF: a tie of CR and LF, the header's CR decides
@example((b"id,town\ru0,x\ny", {}, [2]))
def test_any_line_endings_read_every_record(
    case: tuple[bytes, dict[str, str | None], list[int]],
) -> None:
    content, expected, strays = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "users.csv").write_bytes(content)
        sources = {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {"user_id": "id", "city": "town"},
            }
        }
        make_project(root, files={}, sources=sources)
        with segmint.open_project(root) as p:
            (r,) = p.ingest()
            assert (r.rows_read, r.rows_accepted) == (len(expected) + len(strays), len(expected))
            towns = p.store.query("SELECT user_id, city FROM users")
            got = {
                u: (None if c is None or c != c else c)
                for u, c in zip(towns["user_id"], towns["city"], strict=True)
            }
            assert got == expected
            q = p.store.query('SELECT "row", rule FROM quarantine ORDER BY 1')
            assert q["row"].tolist() == strays
            assert set(q["rule"]) <= {"unparseable_row"}


@settings(max_examples=60, deadline=None)
@given(
    _csv_with_any_line_endings(),
    st.sampled_from([1, 2, 3, 7, 64]),
    st.sampled_from([None, 5, 12]),
)
@example((b"id,town\ru0,x\ny\r", {}, [2]), 7, None)  # the ending was told from a chunk
def test_line_endings_copy_is_the_same_in_any_chunks(
    case: tuple[bytes, dict[str, str | None], list[int]], chunk: int, decide: int | None
) -> None:
    """The copy with uniform line endings does not depend on where the file is cut into
    chunks (a CRLF, a run of quotes or a record across a cut), nor does the line ending it
    finds (told from the file's first DECIDE bytes, shrunk here so that files larger than
    it are tried too)."""
    from segmint.sources import _line_endings  # private: the chunking has no public path

    def copy() -> tuple[object, ...]:
        out = io.BytesIO()
        try:
            found = _line_endings.rewrite_line_endings(io.BytesIO(case[0]), out, skip_first=True)
        except ValueError as exc:  # a stray line ending in the header: refused either way
            return ("refused", str(exc))
        return (
            out.getvalue(),
            found.n_records,
            found.blank.tolist(),
            found.stray.tolist(),
            found.ending,
        )

    defaults = _line_endings.CHUNK, _line_endings.DECIDE
    try:
        _line_endings.DECIDE = decide or defaults[1]
        whole = copy()
        _line_endings.CHUNK = chunk
        assert copy() == whole
    finally:
        _line_endings.CHUNK, _line_endings.DECIDE = defaults
