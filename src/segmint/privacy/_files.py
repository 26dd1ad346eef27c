"""Files a project wrote, rewritten without one person: exports, channel files, journals,
the tracking spool.

A *row* of a table file (csv, xlsx, parquet, json, jsonl) is the person's when one of its
cells equals one of their identifiers exactly (user id, pseudonym, anonymous id, e-mail
case-insensitively, phone by its digits): a substring never matches (``u12`` is not in
``u123``'s row). Each file is rewritten to a temporary file beside it and moved over it in
one step (``os.replace``), so a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Identifiers",
    "SpoolHit",
    "blank_spool_lines",
    "flat",
    "rekey_journal",
    "rewrite_table_file",
    "spool_files",
    "spool_hits",
]


@dataclass(frozen=True)
class Identifiers:
    """What names one person in a file: exact values, e-mails (any case), phone digits."""

    exact: frozenset[str]
    emails: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()

    def matches(self, value: Any) -> bool:
        """Whether one cell value is one of the identifiers."""
        if value is None or isinstance(value, bool | int | float):
            return False
        text = str(value).strip()
        if not text:
            return False
        if text in self.exact or text.lower() in self.emails:
            return True
        if self.phones and len(text) >= 6 and not re.search(r"[A-Za-z@]", text):
            return _digits(text) in self.phones
        return False

    def any_in(self, values: Iterable[Any]) -> bool:
        return any(self.matches(v) for v in values)

    def needles(self) -> list[bytes]:
        """Byte strings to look for before parsing (cheap first pass)."""
        texts = set(self.exact) | set(self.emails)
        return [t.encode() for t in texts if t]


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _replace(path: Path, write: Callable[[Path], object]) -> None:
    """Write a new version of ``path`` with ``write(tmp)`` and move it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with contextlib.suppress(OSError):
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rewrite_table_file(path: Path, ids: Identifiers) -> int:
    """Remove the person's rows from the table file ``path`` (by its extension); returns
    how many rows were removed (0: the file is left untouched). Unknown extensions and
    missing files are left alone (-1)."""
    if not path.is_file():
        return -1
    suffix = path.suffix.lower()
    rewrite = _REWRITERS.get(suffix)
    if rewrite is None:
        return -1
    if suffix in (".csv", ".jsonl", ".json"):  # cheap: no identifier in the bytes, no row
        data = path.read_bytes()
        lower = data.lower()
        if not any(n in data or n in lower for n in ids.needles()):
            return 0
    return rewrite(path, ids)


def _rewrite_csv(path: Path, ids: Identifiers) -> int:
    raw = path.read_bytes()
    bom = raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig", errors="surrogateescape")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return 0
    kept = [rows[0]] + [r for r in rows[1:] if not ids.any_in(r)]
    removed = len(rows) - len(kept)
    if removed:
        out = io.StringIO(newline="")
        csv.writer(out).writerows(kept)

        def write(tmp: Path) -> None:
            body = out.getvalue().encode("utf-8", errors="surrogateescape")
            tmp.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)

        _replace(path, write)
    return removed


def _values(record: Any) -> list[Any]:
    """The values of a JSON record, one level of nesting opened (a properties object)."""
    if isinstance(record, dict):
        out: list[Any] = []
        for v in record.values():
            out.extend(v.values() if isinstance(v, dict) else [v])
        return out
    if isinstance(record, list):
        return list(record)
    return [record]


def _rewrite_jsonl(path: Path, ids: Identifiers) -> int:
    lines = path.read_bytes().splitlines(keepends=True)
    kept: list[bytes] = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            kept.append(line)
            continue
        if not ids.any_in(_values(record)):
            kept.append(line)
    removed = len(lines) - len(kept)
    if removed:
        _replace(path, lambda tmp: tmp.write_bytes(b"".join(kept)))
    return removed


def _rewrite_json(path: Path, ids: Identifiers) -> int:
    doc = json.loads(path.read_text(encoding="utf-8"))

    def keep(records: Any) -> tuple[Any, int]:
        if not isinstance(records, list):
            return records, 0
        out = [r for r in records if not ids.any_in(_values(r))]
        return out, len(records) - len(out)

    if isinstance(doc, dict):
        removed = 0
        for name in list(doc):
            doc[name], n = keep(doc[name])
            removed += n
    else:
        doc, removed = keep(doc)
    if removed:
        text = json.dumps(doc, ensure_ascii=False, indent=1)
        _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return removed


def _rewrite_parquet(path: Path, ids: Identifiers) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    hit = pa.array([False] * table.num_rows)
    exact = pa.array(sorted(ids.exact | ids.emails), pa.string())
    for name in table.column_names:
        col = table[name]
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        text = pc.utf8_lower(pc.utf8_trim_whitespace(col.cast(pa.string())))
        found = pc.or_(pc.is_in(col.cast(pa.string()), value_set=exact),
                       pc.is_in(text, value_set=exact))  # fmt: skip
        if ids.phones:  # a phone written another way: by its digits
            digits = pc.replace_substring_regex(text, pattern=r"\D", replacement="")
            found = pc.or_(found, pc.is_in(digits, value_set=pa.array(sorted(ids.phones))))
        hit = pc.or_(hit, pc.fill_null(found, False))
    removed = int(pc.sum(hit).as_py() or 0)
    if removed:
        kept = table.filter(pc.invert(hit))
        _replace(path, lambda tmp: pq.write_table(kept, tmp))
    return removed


def _rewrite_xlsx(path: Path, ids: Identifiers) -> int:
    import openpyxl

    book = openpyxl.load_workbook(path)
    removed = 0
    for sheet in book.worksheets:
        doomed = [
            row[0].row
            for row in sheet.iter_rows(min_row=2)
            if row and ids.any_in(c.value for c in row)
        ]
        for number in reversed(doomed):
            sheet.delete_rows(number)
        removed += len(doomed)
    if removed:
        _replace(path, lambda tmp: book.save(tmp))
    return removed


_REWRITERS: dict[str, Callable[[Path, Identifiers], int]] = {
    ".csv": _rewrite_csv,
    ".jsonl": _rewrite_jsonl,
    ".json": _rewrite_json,
    ".parquet": _rewrite_parquet,
    ".xlsx": _rewrite_xlsx,
}


# -- the tracking spool ------------------------------------------------------------------


def spool_files(folder: Path) -> list[Path]:
    """The tracking spool files in ``folder`` (``spool-*.jsonl``, see segmint.serve's spool;
    this layer sits below the service and does not import it)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.name.startswith("spool-") and p.suffix == ".jsonl"
    )


def flat(value: Any) -> Iterable[Any]:
    """Every scalar inside a JSON value (objects and arrays opened)."""
    if isinstance(value, dict):
        for v in value.values():
            yield from flat(v)
    elif isinstance(value, list):
        for v in value:
            yield from flat(v)
    else:
        yield value


@dataclass(frozen=True)
class SpoolHit:
    """One spool line of the person: where it is and the message id it carries."""

    path: Path
    offset: int
    length: int
    source: str | None
    message_id: str | None
    # anonymous ids the message links to the person (identify/alias with their user id)
    links: tuple[str, ...] = ()


def spool_hits(
    files: Iterable[Path], ids: Identifiers, opener: Callable[[Any], Any] | None = None
) -> list[SpoolHit]:
    """The complete lines of the spool ``files`` that hold one of ``ids`` (a sealed value
    is opened with ``opener`` first: it returns the clear value or None)."""
    hits: list[SpoolHit] = []
    needles = ids.needles()
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # loaded and deleted meanwhile
            continue
        offset = 0
        for line in data.splitlines(keepends=True):
            start, offset = offset, offset + len(line)
            if not line.endswith(b"\n"):
                break  # a torn tail: never acknowledged, never read
            sealed = b"enc1:" in line
            if not sealed and not any(n in line or n in line.lower() for n in needles):
                continue
            text: Any = line
            if line.startswith(b"enc1:") and opener is not None:  # a sealed line (spool.line)
                text = opener(line.decode("ascii", "replace").rstrip("\n"))
                if text is None:
                    continue
            try:
                message = json.loads(text)
            except ValueError:
                continue
            values = list(flat(message))
            if opener is not None:  # sealed values inside the message
                values += [opener(v) for v in values if isinstance(v, str) and "enc1:" in v]
            if ids.any_in(values):
                m = message if isinstance(message, dict) else {}
                src, mid = m.get("_source"), m.get("messageId")
                linked = (m.get("anonymousId"), m.get("previousId"))
                links = tuple(str(a) for a in linked if isinstance(a, str | int) and a != "")
                hit = SpoolHit(path, start, len(line), _text(src), _text(mid), links)
                hits.append(hit)
    return hits


def _text(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)


def filler(hit: SpoolHit) -> bytes:
    """The line that takes the place of ``hit``: the same length (no offset moves), a JSON
    object with the message's source and id only (so the loader counts it a duplicate once
    its id is in ``tracked_messages``), padded with spaces."""
    body = json.dumps(
        {"_source": hit.source, "messageId": hit.message_id, "_erased": 1}, separators=(",", ":")
    ).encode()
    if len(body) + 1 > hit.length:
        body = b"{}"
    return body + b" " * (hit.length - 1 - len(body)) + b"\n"


def blank_spool_lines(hits: Iterable[SpoolHit]) -> dict[Path, int]:
    """Overwrite each hit in place with its :func:`filler` (``pwrite`` at its offset: a live
    writer only appends at the end, so this is safe beside it); returns lines per file."""
    done: dict[Path, int] = {}
    by_file: dict[Path, list[SpoolHit]] = {}
    for h in hits:
        by_file.setdefault(h.path, []).append(h)
    for path, items in by_file.items():
        try:
            fd = os.open(path, os.O_WRONLY)
        except FileNotFoundError:  # loaded and deleted meanwhile: nothing left to blank
            continue
        try:
            for h in items:
                os.pwrite(fd, filler(h), h.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        done[path] = len(items)
    return done


# -- hand-over journals -------------------------------------------------------------------


def rekey_journal(path: Path, keys: dict[str, str]) -> int:
    """Replace the idempotency keys ``keys`` (old -> new) in the hand-over journal ``path``
    (a killed run's record stays usable, without the user id); returns the lines changed.
    Raises :class:`~segmint.errors.JournalBusy` while a send holds the journal."""
    from segmint.errors import JournalBusy

    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        fcntl = None  # type: ignore[assignment]

    if not path.is_file() or not keys:
        return 0
    with open(path, "rb+") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise JournalBusy(str(path)) from None
        out: list[bytes] = []
        changed = 0
        for line in f.read().splitlines(keepends=True):
            try:
                record = json.loads(line)
            except ValueError:
                out.append(line)
                continue
            if isinstance(record, list) and len(record) > 1 and record[1] in keys:
                record[1] = keys[record[1]]
                line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
                changed += 1
            out.append(line)
        if changed:
            f.seek(0)
            f.truncate()
            f.write(b"".join(out))
            f.flush()
            os.fsync(f.fileno())
    return changed
