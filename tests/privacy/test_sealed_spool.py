"""The tracking spool holds sealed lines (issue 21): each line is one ``enc1:`` text, still
one line (offsets and torn tails work on the sealed bytes), and reads back as the message."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from segmint.serve._spool import SPOOL_FIELD, SpoolWriter, complete_size, read_lines
from segmint.store import Vault


def test_spool_lines_are_sealed_and_read_back(tmp_path: Path) -> None:
    vault = Vault({"k1": os.urandom(64)}, "k1", os.urandom(32))
    writer = SpoolWriter(tmp_path, seal=lambda t: str(vault.seal(t, SPOOL_FIELD)))
    msgs = [{"type": "identify", "userId": f"u{i}", "messageId": f"m{i}",
             "traits": {"email": f"person{i}@example.org"}} for i in range(5)]  # fmt: skip
    lines = [(json.dumps(m) + "\n").encode() for m in msgs]

    async def send() -> None:
        await writer.append(lines[:2])
        await writer.append(lines[2:])

    writer.start()
    try:
        asyncio.run(send())
    finally:
        writer.stop()
    data = writer.path.read_bytes()
    assert b"example.org" not in data and data.count(b"\n") == 5
    assert all(line.startswith(b"enc1:") for line in data.splitlines())
    opener = lambda t: str(vault.open(t, SPOOL_FIELD))  # noqa: E731
    first = read_lines(writer.path, 0, max_messages=2, opener=opener)
    assert [m["messageId"] for m in first.messages] == ["m0", "m1"]
    rest = read_lines(writer.path, first.end, max_messages=10, opener=opener)
    assert [m for m in rest.messages] == msgs[2:] and rest.end == len(data)
    # a torn tail (a write cut short) is not read, as for clear lines
    with writer.path.open("ab") as f:
        f.write(b"enc1:k1:AAAA")
    assert complete_size(writer.path) == len(data)
    assert read_lines(writer.path, rest.end, max_messages=10, opener=opener).messages == []
    # without the key a sealed line is kept for the quarantine, not lost
    (bad,) = read_lines(writer.path, 0, max_messages=1).messages
    assert bad["_raw"].startswith("enc1:") and "no key" in bad["_error"]
