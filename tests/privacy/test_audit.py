"""``segmint privacy audit``: the audit log shown and its hash chain verified; appends
from several processes keep one chain."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.store import append_audit, open_store, verify_audit

runner = CliRunner()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project with one user and three audit entries written by three real paths: the
    CLI's access export, the workspace's record() and an erasure-like append."""
    root = tmp_path / "shop"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    with segmint.open_project(root) as p:
        p.store.execute("INSERT INTO users (user_id, email) VALUES ('u1', 'ann@example.com')")
    done = runner.invoke(app, ["privacy", "export", "u1", "-o", str(tmp_path / "out"),
                               "--why", "request 7", "-p", str(root)])  # fmt: skip
    assert done.exit_code == 0, done.output
    from segmint.web._core import record

    with segmint.open_project(root) as p:
        record(p.store, "eve", "config.save", "playbook", section="playbook", why="new offer")
        append_audit(p.store, "dpo", "privacy.forget", "c0ffee", why="request 8", n_rows=12)
    return root


def _audit(root: Path, *args: str) -> tuple[int, str]:
    done = runner.invoke(app, ["privacy", "audit", *args, "-p", str(root)])
    return done.exit_code, done.output


def test_the_chain_verifies_and_the_latest_entries_are_listed(project: Path) -> None:
    code, out = _audit(project)
    assert code == 0, out
    assert re.search(r"audit log: 3 entries, chain verified, head [0-9a-f]{16}", out)
    for text in (
        "privacy.access_export",
        "config.save",
        "privacy.forget",
        "request 8",
        "new offer",
    ):
        assert text in out
    assert "ann@example.com" not in out and not re.search(r"\bu1\b", out)
    code, out = _audit(project, "--verify-only", "--json")
    data = json.loads(out)
    assert code == 0 and data["ok"] and data["entries"] == 3 and "latest" not in data


def test_a_changed_entry_is_named(project: Path) -> None:
    with segmint.open_project(project) as p:
        p.store.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    code, out = _audit(project, "--verify-only")
    assert code == 1
    assert "entry 2: its content was changed after it was written" in out


def test_a_removed_entry_is_named(project: Path) -> None:
    with segmint.open_project(project) as p:
        p.store.execute("DELETE FROM audit_log WHERE seq = 2")
    code, out = _audit(project)
    assert code == 1
    assert "entry 2 is missing" in out


def test_a_duplicate_sequence_number_is_refused(project: Path) -> None:
    with (
        segmint.open_project(project) as p,
        pytest.raises(Exception, match="(?i)duplicate|unique|constraint"),
    ):
        p.store.execute(
            "INSERT INTO audit_log (id, seq, ts, actor, action) VALUES ('x', 2, current_timestamp, 'a', 'b')"
        )


def test_the_chain_verifies_on_postgresql_whose_jsonb_reorders_keys(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        append_audit(
            store, "ann", "export", "x", why="a", zeta=1, alpha="two", mid=[3, {"b": 1, "a": 2}]
        )
        with store.transaction():
            append_audit(store, "bob", "privacy.forget", "y", why=None, n_rows=4, kind="user")
        check = verify_audit(store)
        assert check.ok and check.entries == 2
        store.execute(
            'UPDATE audit_log SET detail = CAST(\'{"n_rows": 5, "kind": "user"}\' AS JSON) WHERE seq = 2'
        )
        bad = verify_audit(store)
        assert not bad.ok and bad.first_bad == 2
    finally:
        store.close()


def test_two_writers_on_postgresql_keep_one_chain(pg_url: str) -> None:
    open_store(pg_url).close()  # the schema, once
    errors: list[BaseException] = []

    def writer(name: str) -> None:
        store = open_store(pg_url)
        try:
            for i in range(50):
                if i % 2:
                    with store.transaction():  # inside a caller's transaction, as a send is
                        store.execute("SELECT 1")
                        append_audit(store, name, "personal.read", f"{name}-{i}")
                else:
                    append_audit(store, name, "personal.read", f"{name}-{i}")
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = open_store(pg_url)
    try:
        check = verify_audit(store)
        assert check.ok and check.entries == 100
        seqs = store.query("SELECT seq FROM audit_log ORDER BY seq")["seq"].tolist()
        assert seqs == list(range(1, 101))
    finally:
        store.close()
