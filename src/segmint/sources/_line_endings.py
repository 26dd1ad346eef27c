"""Line endings of a text file, found as the CSV reader finds records, and made uniform.

DuckDB reads a file whose records all end alike (LF, CRLF or a bare CR, as old Mac
exports do), whatever the quoted values hold. It stops, refusing the whole file, at a
carriage return it does not expect outside quotes: a file mixing LF and CRLF lines (two
exports concatenated), or a bare CR inside an unquoted value. Only then (or when it read
no row of a file that has some) the readers call :func:`rewrite_line_endings`, which
copies the file once, in chunks, with vectorised numpy scans:

* the file's line ending is LF (CRLF included) unless, outside quotes, bare CRs
  outnumber LFs in its first 64 KiB (an old Mac export): CR; on a tie, the first line's
  ending decides;
* outside quotes, CRLF becomes LF; in a file whose lines end with a bare CR, each CR
  becomes LF; inside quotes nothing changes;
* a line ending of the other kind outside quotes (a bare CR in a file of LF lines, an LF
  in a file of CR lines) cannot be told from a stray character inside an unquoted value,
  so its record is kept whole but marked: the character becomes the byte 0xFF, which is
  never valid UTF-8, so the CSV reader rejects that record (and only it) and the caller
  quarantines it with the reason :func:`stray_reason`;
* the first record is left out when it is the header.

Quotes are followed as DuckDB's strict CSV parser follows them (``quote`` and ``escape``
both ``"``): a quote opens a quoted value only at the start of a field, ``""`` inside
one is a quote, and a quote inside an unquoted value is an ordinary character. The
copy has as many records as the file, in the same order, so record numbers carry over.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import numpy.typing as npt

__all__ = ["Rewritten", "open_decompressed", "rewrite_line_endings", "stray_reason"]

LF, CR, MARK = 0x0A, 0x0D, 0xFF
CHUNK = 1 << 24  # 16 MiB of the file at a time
# The line ending is told from the file's first 64 KiB (or all of a smaller file), the
# same bytes whatever the chunk size.
DECIDE = 1 << 16
# A record still open after this many bytes (an unterminated quote, most likely) is copied
# on without waiting for its end: the reader rejects it anyway, being over its line limit.
MAX_PENDING = 1 << 26

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Rewritten:
    """What :func:`rewrite_line_endings` wrote: counts and the record numbers that matter.

    Record numbers count every record of the file from 1, the header and blank lines
    included (DuckDB's ``line`` in its rejects table counts the same way).
    """

    n_records: int  # records written (the header left out), blank ones included
    blank: Ints  # record numbers of the blank records written
    stray: Ints  # record numbers of the records holding a stray line ending
    ending: str  # what ends the file's lines: "LF" (CRLF included) or "CR"


def open_decompressed(path: Path) -> IO[bytes]:
    """The file's bytes, gunzipped for ``.gz`` (the readers check the suffixes first)."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def stray_reason(ending: str) -> str:
    """The quarantine reason of a record holding a stray line ending."""
    if ending == "CR":
        return (
            "a line feed (LF) outside quotes in a file whose lines end with a carriage return "
            "(CR): quote the value that holds it, or save the file with one kind of line ending"
        )
    return (
        "a carriage return (CR) outside quotes, in the middle of a line: quote the value that "
        "holds it, or remove the CR (shown as ? in raw)"
    )


class _Scanner:
    """The state carried from one chunk to the next."""

    def __init__(self, *, quote: int | None, delimiter: bytes, skip_first: bool) -> None:
        self.quote = quote
        self.delimiter = np.frombuffer(delimiter, np.uint8)
        self.skip_first = skip_first
        self.ending: str | None = None
        self.n_ended = 0  # records ended so far (the header included)
        self.open_len = 0  # bytes of the record still open that were already copied
        self.in_quotes = False  # the state at the start of the pending bytes
        # the two bytes before the pending bytes (as if after a CRLF: a record starts)
        self.prev, self.prev2 = LF, CR
        self.blank: list[Ints] = []
        self.stray: list[Ints] = []

    # -- quotes ------------------------------------------------------------------------
    def _inside(
        self, a: npt.NDArray[np.uint8], pos: Ints, ending: str | None
    ) -> npt.NDArray[np.bool_]:
        """Whether each position of ``a`` (none of them a quote) lies inside quotes, for
        a file whose lines end with ``ending`` (None: not known yet)."""
        if self.quote is None:
            return np.zeros(len(pos), bool)
        q = np.flatnonzero(a == self.quote)
        if len(q) == 0:
            return np.full(len(pos), self.in_quotes)
        cut = np.flatnonzero(np.diff(q) != 1) + 1
        starts = q[np.r_[0, cut]]
        odd = ((q[np.r_[cut - 1, len(q) - 1]] + 1 - starts) & 1).astype(bool)
        at_field_start = self._field_start(a, starts, ending)
        # A run of k quotes at the start of a field toggles the state when k is odd (it
        # opens, then pairs; or pairs, then closes); elsewhere an odd run closes a quoted
        # value, or is literal in an unquoted one: either way the state after it is
        # "outside". An even run changes nothing.
        toggle = odd & at_field_start
        reset = odd & ~at_field_start
        n_toggles = np.cumsum(toggle)
        last_reset = np.maximum.accumulate(np.where(reset, np.arange(len(starts)), -1))
        since: Ints = n_toggles - np.where(last_reset >= 0, n_toggles[np.maximum(last_reset, 0)], 0)
        start_state = np.where(last_reset >= 0, 0, int(self.in_quotes))
        inside_after = ((start_state + since) & 1).astype(bool)
        run = np.searchsorted(starts, pos) - 1  # the last quote run before each position
        return np.where(run >= 0, inside_after[np.maximum(run, 0)], self.in_quotes)

    def _field_start(
        self, a: npt.NDArray[np.uint8], starts: Ints, ending: str | None
    ) -> npt.NDArray[np.bool_]:
        """Whether each position starts a field: after a delimiter or after a line ending
        (a stray CR or LF is no line ending: it becomes a byte of its value)."""
        before = np.where(starts > 0, a[np.maximum(starts - 1, 0)], self.prev)
        if ending == "LF":
            result = before == LF
        elif ending == "CR":
            before2 = np.where(starts > 1, a[np.maximum(starts - 2, 0)], self.prev2)
            before2 = np.where(starts == 1, self.prev, before2)
            result = (before == CR) | ((before == LF) & (before2 == CR))
        else:  # to tell which line ending the file has
            result = (before == LF) | (before == CR)
        d = self.delimiter
        match = np.ones(len(starts), bool)
        for j in range(len(d)):  # the delimiter's bytes, last first, ending before each start
            at = starts - 1 - j
            outer = self.prev if j == 0 else -1
            match &= np.where(at >= 0, a[np.maximum(at, 0)], outer) == d[len(d) - 1 - j]
        return result | match

    # -- one chunk ---------------------------------------------------------------------
    def feed(self, buf: bytes, out: IO[bytes], *, eof: bool) -> bytes:
        """Copy the complete records of ``buf`` to ``out``; return the bytes left over."""
        a = np.frombuffer(buf, np.uint8)
        n = len(a)
        ends = np.flatnonzero((a == LF) | (a == CR))
        if self.ending is None:  # which line ending is most common, outside quotes
            if n < DECIDE and not eof:
                return buf  # nothing copied yet: wait for the file's first DECIDE bytes
            # decided on the same bytes however the file is cut into chunks
            w = a[:DECIDE]
            m, whole = len(w), eof and n <= DECIDE
            in_w = ends[ends < m]
            outside = in_w[~self._inside(w, in_w, None)]
            is_cr = w[outside] == CR
            after = np.where(outside + 1 < m, w[np.minimum(outside + 1, m - 1)], -1)
            # bare CRs against LFs (a CRLF counts as an LF: a CR in a CRLF file is stray)
            n_cr = int(np.count_nonzero(is_cr & (after != LF) & ((outside != m - 1) | whole)))
            n_lf = int(np.count_nonzero(~is_cr))
            bare = is_cr & (after != LF)
            if n_cr == n_lf and len(outside):  # a tie: the first line (the header) decides
                self.ending = "CR" if bare[0] else "LF"
            else:
                self.ending = "CR" if n_cr > n_lf else "LF"
        ends = ends[~self._inside(a, ends, self.ending)]
        is_cr = a[ends] == CR
        nxt = np.where(ends + 1 < n, a[np.minimum(ends + 1, n - 1)], -1)
        crlf_cr = ends[is_cr & (nxt == LF)]  # the CR of a CRLF: left out
        bare_cr = ends[is_cr & (nxt != LF)]
        if not eof:  # a CR at the very end: its LF may start the next chunk
            bare_cr = bare_cr[bare_cr != n - 1]
        lf = ends[~is_cr]
        bare_lf = np.setdiff1d(lf, crlf_cr + 1, assume_unique=True)
        if self.ending == "CR":
            terminators, stray_pos, cr_to_lf = np.union1d(bare_cr, crlf_cr + 1), bare_lf, bare_cr
        else:
            terminators, stray_pos, cr_to_lf = lf, bare_cr, bare_cr[:0]
        # Copy up to the last record ending; the rest waits for the next chunk, unless the
        # file ends, or a record outgrows any line limit (then copy on, keeping a trailing
        # run of quotes or a CR whole for the next chunk).
        if eof or (len(terminators) == 0 and n > MAX_PENDING):
            upto = n
            while not eof and upto > 0 and int(a[upto - 1]) in (CR, self.quote):
                upto -= 1
        else:
            upto = int(terminators[-1]) + 1 if len(terminators) else 0
        if upto == 0:
            return buf
        terminators = terminators[terminators < upto]
        self._copy(
            a[:upto],
            terminators,
            stray_pos[stray_pos < upto],
            crlf_cr[crlf_cr < upto],
            cr_to_lf[cr_to_lf < upto],
            out,
        )
        if len(terminators) and upto == int(terminators[-1]) + 1:
            self.in_quotes = False  # a record ending lies outside quotes
        else:
            cut = np.array([upto], np.int64)
            self.in_quotes = bool(self._inside(a[:upto], cut, self.ending)[0])
        self.prev, self.prev2 = int(a[upto - 1]), int(a[upto - 2]) if upto > 1 else self.prev
        return buf[upto:]

    def _copy(
        self,
        b: npt.NDArray[np.uint8],
        terminators: Ints,
        stray_pos: Ints,
        crlf_cr: Ints,
        cr_to_lf: Ints,
        out: IO[bytes],
    ) -> None:
        first = self.n_ended + 1  # the number of the record open at the start of ``b``
        if len(terminators):
            # each ended record's length, without its ending
            starts = np.r_[0, terminators[:-1] + 1]
            lengths = terminators - starts - np.isin(terminators - 1, crlf_cr)
            lengths[0] += self.open_len
            blank = np.flatnonzero(lengths == 0) + first
        else:
            blank = np.zeros(0, np.int64)
        stray = np.unique(np.searchsorted(terminators, stray_pos)) + first
        keep = np.ones(len(b), bool)
        keep[crlf_cr] = False
        if len(stray_pos) or len(cr_to_lf):
            b = b.copy()
            b[stray_pos] = MARK
            b[cr_to_lf] = LF
        if self.skip_first and first == 1:  # the header: checked, then left out
            if len(stray) and stray[0] == 1:
                raise ValueError("the header line holds a stray line ending")
            keep[: int(terminators[0]) + 1 if len(terminators) else len(b)] = False
            blank = blank[blank != 1]
        self.blank.append(blank.astype(np.int64))
        self.stray.append(stray.astype(np.int64))
        out.write(b[keep].tobytes())
        self.n_ended += len(terminators)
        if len(terminators):
            self.open_len = len(b) - int(terminators[-1]) - 1
        else:
            self.open_len += len(b)

    def finish(self, out: IO[bytes]) -> Rewritten:
        """End the last record (a file need not end with a line ending)."""
        if self.open_len:
            if not (self.skip_first and self.n_ended == 0):
                out.write(b"\n")
            self.n_ended += 1
        skip = 1 if self.skip_first and self.n_ended else 0
        return Rewritten(
            n_records=self.n_ended - skip,
            blank=np.concatenate(self.blank) if self.blank else np.zeros(0, np.int64),
            stray=np.concatenate(self.stray) if self.stray else np.zeros(0, np.int64),
            ending=self.ending or "LF",
        )


def rewrite_line_endings(
    src: IO[bytes],
    out: IO[bytes],
    *,
    quote: bytes | None = b'"',
    delimiter: bytes = b",",
    skip_first: bool = False,
) -> Rewritten:
    """Copy ``src`` to ``out`` with one LF after each record (see the module's docstring).

    Parameters
    ----------
    src, out : binary files
        The file as it is (decompressed) and where the copy goes.
    quote : bytes or None
        The quote character; ``None`` for JSON lines, whose records never span lines.
    delimiter : bytes
        The field delimiter (a quote opens a quoted value only at the start of a field).
    skip_first : bool
        Leave the first record (the header) out of the copy.

    Raises
    ------
    ValueError
        When the header holds a stray line ending.
    """
    scanner = _Scanner(
        quote=None if quote is None else quote[0], delimiter=delimiter, skip_first=skip_first
    )
    pending, data = b"", src.read(CHUNK)
    while True:
        ahead = src.read(CHUNK) if data else b""  # to know the last chunk as such
        pending = scanner.feed(pending + data, out, eof=not ahead)
        if not ahead:
            return scanner.finish(out)
        data = ahead
