"""Erasure's parts on small data whose answer is known: the tracking spool (a person known
only from lines not loaded yet), table files in every export format, PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import segmint
from segmint.errors import NotFoundError
from segmint.privacy import forget
from segmint.privacy._files import Identifiers, rewrite_table_file
from segmint.sources import load_messages
from segmint.store import verify_audit


def _line(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def _msg(kind: str, **fields: Any) -> dict[str, Any]:
    base = {"type": kind, "messageId": str(uuid.uuid4()), "_source": "web",
            "timestamp": "2026-01-02T03:04:05Z", "receivedAt": "2026-01-02T03:04:05Z"}  # fmt: skip
    return {**base, **fields}


def test_a_person_only_in_the_spool_is_forgotten_and_never_loaded(tmp_path: Path) -> None:
    """Lines not loaded yet are overwritten in place (same length: offsets hold); their ids
    go to tracked_messages, so the real loader counts them duplicates afterwards."""
    (tmp_path / "segmint.yaml").write_text("project: t\nstore: t.duckdb\n")
    spool = tmp_path / ".segmint" / "spool"
    spool.mkdir(parents=True)
    theirs = [
        _msg("identify", userId="gone-1", anonymousId="anon-gone",
             traits={"email": "gone@example.com", "first_name": "Vanishia"}),
        _msg("track", anonymousId="anon-gone", event="Viewed"),
        _msg("track", userId="gone-1", event="Bought"),
    ]  # fmt: skip
    others = [_msg("track", userId="stays-1", event="Viewed")]
    lines = [_line(theirs[0]), _line(others[0]), _line(theirs[1]), _line(theirs[2])]
    path = spool / "spool-host-1-20260102T030405.jsonl"
    path.write_bytes(b"".join(lines) + b'{"torn')
    size = path.stat().st_size
    with segmint.open_project(tmp_path) as p:
        with pytest.raises(NotFoundError, match="no user 'nobody'"):
            forget(p, "nobody", actor="t", why="t")
        report = forget(p, "gone-1", actor="t", why="ticket 7")
        assert report.tables["tracked_messages"] == 3
        assert [f["kind"] for f in report.files] == ["spool"]
        data = path.read_bytes()
        assert path.stat().st_size == size and data.endswith(b'{"torn')
        assert b"gone" not in data and b"Vanishia" not in data and b"stays-1" in data
        messages = [json.loads(x) for x in data.splitlines()[:-1]]
        loaded = load_messages(p.store, p.config, messages)
        assert loaded.duplicates == 3 and loaded.accepted == 1
        assert p.store.scalar("SELECT count(*) FROM users WHERE user_id = 'gone-1'") == 0
        assert p.store.scalar("SELECT count(*) FROM events WHERE anonymous_id = 'anon-gone'") == 0
        assert p.store.scalar("SELECT count(*) FROM users WHERE user_id = 'stays-1'") == 1
        assert forget(p, "gone-1", actor="t", why="again").already
        assert verify_audit(p.store).ok


FRAME = pd.DataFrame(
    {
        "user_id": ["u1", "u12", "u123"],
        "email": ["A@Example.com", "b@example.com", "c@example.com"],
        "phone": ["+49 170 1234567", "", "+49 170 7654321"],
        "spend": [1.5, 2.5, 3.5],
    }
)
IDS = Identifiers(frozenset({"u12"}), frozenset({"a@example.com"}), frozenset({"491707654321"}))
"""u12 by id, u1 by e-mail (another case), u123 by phone (other formatting): all three
rows go; "u1" and "u123" do not match "u12" (whole values only)."""


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet", "json", "jsonl"])
def test_an_export_file_loses_the_persons_rows_in_every_format(tmp_path: Path, fmt: str) -> None:
    from segmint.profiles import write_tables

    path = write_tables({"t": FRAME}, tmp_path / f"x.{fmt}")[0]
    only_u12 = Identifiers(frozenset({"u12"}))
    assert rewrite_table_file(path, only_u12) == 1
    assert rewrite_table_file(path, only_u12) == 0
    assert rewrite_table_file(path, IDS) == 2
    if fmt == "csv":
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # still opens right in Excel
    text = path.read_bytes()
    assert b"u123" not in text and b"A@Example" not in text or fmt in ("xlsx", "parquet")


def test_forget_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same erasure on PostgreSQL (RETURNING counts, the deliveries' key rewritten)."""
    from segmint.demo import generate_demo

    generate_demo(tmp_path, n_users=200, seed=3)
    cfg = (tmp_path / "segmint.yaml").read_text()
    (tmp_path / "segmint.yaml").write_text(cfg.replace("store: demo.duckdb", f"store: {pg_url}"))
    with segmint.open_project(tmp_path) as p:
        p.ingest()
        uid = str(p.store.scalar("SELECT min(user_id) FROM orders"))
        revenue = float(p.store.scalar("SELECT sum(amount) FROM orders"))
        report = forget(p, uid, actor="t", why="t")
        assert report.tables["users"] == 1 and report.tables["orders"] >= 1
        for table in ("users", "orders", "events", "consents"):
            assert p.store.scalar(f"SELECT count(*) FROM {table} WHERE user_id = ?", [uid]) == 0
        assert float(p.store.scalar("SELECT sum(amount) FROM orders")) == pytest.approx(revenue)
        assert verify_audit(p.store).ok
        assert forget(p, uid, actor="t", why="t").already


def test_the_persons_access_export_is_deleted_and_another_persons_stays(tmp_path: Path) -> None:
    """An access export holds nothing but the person: erasure deletes its folder (and leaves
    the folder of someone else's request as it was)."""
    from segmint.demo import generate_demo
    from segmint.privacy import access_export

    generate_demo(tmp_path, n_users=200, seed=3)
    with segmint.open_project(tmp_path) as p:
        p.ingest()
        uid, other = (str(u) for u in p.store.query(
            "SELECT DISTINCT user_id FROM orders ORDER BY 1 LIMIT 2")["user_id"])  # fmt: skip
        mine = access_export(p, uid, tmp_path / "requests", actor="t", why="DSAR-1").folder
        theirs = access_export(p, other, tmp_path / "requests", actor="t", why="DSAR-2").folder
        report = forget(p, uid, actor="t", why="t")
        assert not Path(mine).exists() and Path(theirs).exists()
        assert [f["kind"] for f in report.files if f["path"] == str(mine)] == ["access export"]
        assert verify_audit(p.store).ok
