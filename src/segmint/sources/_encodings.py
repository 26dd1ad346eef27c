"""Text files in another encoding than UTF-8, copied once as UTF-8 for the CSV reader.

DuckDB's CSV reader knows UTF-8 (and, natively, only a few others); segmint's own passes
over a text file (the header, the line-ending repair of :mod:`._line_endings`) read UTF-8
too. So a source declaring another ``encoding:`` (latin-1, cp1252, gb18030, shift_jis,
utf-16, ... any text encoding Python's codecs know) is decoded with Python's incremental
decoder and written as UTF-8 into a temporary file, in chunks of :data:`CHUNK` bytes:
memory stays bounded whatever the file's size, and the copy is deleted after reading.

Nothing is guessed or replaced silently: a byte sequence that is not valid in the declared
encoding becomes the byte 0xFF in the copy, which is never valid UTF-8, so the CSV reader
rejects that record (and only it) and it is quarantined with its raw text. Line breaks
decode to line breaks in every encoding, so record numbers carry over.
"""

from __future__ import annotations

import codecs
from typing import IO

__all__ = ["is_utf8", "transcode_to_utf8"]

CHUNK = 1 << 22  # 4 MiB of the file at a time


def _mark_decode(exc: UnicodeError) -> tuple[str, int]:
    """A sequence not valid in the declared encoding: one lone surrogate, which
    :func:`_mark_encode` writes as 0xFF."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\udcff", exc.end


def _mark_encode(exc: UnicodeError) -> tuple[bytes, int]:
    """A character UTF-8 cannot encode (a lone surrogate): 0xFF, never valid UTF-8."""
    assert isinstance(exc, UnicodeEncodeError)
    return b"\xff", exc.end


codecs.register_error("segmint-mark-decode", _mark_decode)
codecs.register_error("segmint-mark-encode", _mark_encode)


def is_utf8(encoding: str) -> bool:
    """Whether files in ``encoding`` are read as they are (UTF-8, with or without BOM)."""
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def transcode_to_utf8(src: IO[bytes], out: IO[bytes], encoding: str) -> int:
    """Copy ``src`` (in ``encoding``) to ``out`` as UTF-8; return the number of byte
    sequences that were not valid in ``encoding`` (each written as the byte 0xFF)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="segmint-mark-decode")
    n_bad = 0
    while True:
        data = src.read(CHUNK)
        text = decoder.decode(data, final=not data)
        n_bad += text.count("\udcff")
        out.write(text.encode("utf-8", errors="segmint-mark-encode"))
        if not data:
            return n_bad
