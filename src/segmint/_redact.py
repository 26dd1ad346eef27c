"""Personal values out of messages: what an engine error or a log line quotes is masked.

Database engines quote the offending value in their errors (DuckDB: ``Could not convert
string 'ann@example.com' to INT32``; PostgreSQL: ``invalid input syntax for type integer:
"ann@example.com"``, ``Key (email)=(ann@example.com) already exists``). segmint passes
such messages on (a failed load says why), so they go through :func:`redact_values` first;
the CLI's log formatter applies it to every log line as a last net.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact_values", "shape_of"]

MASK = "…"

_RULES = (
    # DuckDB: string 'value' / value 'value' / literal 'value'
    (re.compile(r"\b(string|value|Value|literal|input)\s+'(?:[^']|'')*'"), rf"\1 '{MASK}'"),
    # PostgreSQL and DuckDB: ...: "value" (an input syntax or a format error)
    (re.compile(r':\s+"(?:[^"\\]|\\.)*"'), f': "{MASK}"'),
    # PostgreSQL: Key (column)=(value)
    (re.compile(r"\)=\((?:[^()]|\([^()]*\))*\)"), f")=({MASK})"),
    # anything that looks like an e-mail address or an international phone number
    (re.compile(r"[\w.+-]+@@?[\w-]+(?:\.[\w-]+)+"), f"{MASK}@{MASK}"),
    (re.compile(r"\+\d[\d ()./-]{6,}\d"), f"+{MASK}"),
)


def redact_values(text: str) -> str:
    """``text`` with quoted values, e-mail addresses and phone numbers masked."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def shape_of(value: object) -> str:
    """A personal value's shape without its content: letters as ``x``, digits as ``9``,
    punctuation kept (``ann.example.com`` -> ``xxx.xxxxxxx.xxx``: what is wrong with a
    malformed e-mail still shows, whose it is does not)."""
    text = str(value)
    return "".join("9" if ch.isdigit() else "x" if ch.isalpha() else ch for ch in text)
