"""``segmint privacy export USER``: everything held about a person, as JSON and CSV."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.errors import NotFoundError
from segmint.privacy import access_export
from segmint.store import open_vault, verify_audit

runner = CliRunner()

SECTIONS = [
    "profile", "identities", "orders", "order_lines", "events", "consents", "segments",
    "features", "recommendations", "predictions", "campaign_assignments", "campaign_audiences", "messages",
    "campaign_outcomes", "exposures", "suppressions", "audit",
]  # fmt: skip


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``segmint demo`` at 1,500 users (segments, recommendations, campaigns sent)."""
    root = tmp_path_factory.mktemp("access") / "demo"
    cmd = [sys.executable, "-m", "segmint", "demo", "--dir", str(root), "--users", "1500"]
    done = subprocess.run([*cmd, "--seed", "11"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture()
def project(demo: Path, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "demo"
    shutil.copytree(demo, root, ignore=shutil.ignore_patterns("*.wal"))
    yield root


def _person(root: Path) -> tuple[str, str]:
    """A user who got a message (so every derived part has rows), and their e-mail."""
    with segmint.open_project(root) as p:
        uid = str(p.store.scalar("SELECT min(user_id) FROM deliveries WHERE status = 'sent'"))
        email = open_vault(p.store, p.config).open(
            p.store.scalar("SELECT email FROM users WHERE user_id = ?", [uid]), "users.email"
        )
    return uid, str(email)


def _store_counts(root: Path, uid: str) -> dict[str, int]:
    """Independent counts of some parts, straight from the store."""
    with segmint.open_project(root) as p:
        q = p.store.scalar
        return {
            "orders": q("SELECT count(*) FROM orders WHERE user_id = ?", [uid]),
            "order_lines": q("SELECT count(*) FROM order_items WHERE order_id IN "
                             "(SELECT order_id FROM orders WHERE user_id = ?)", [uid]),
            "events": q("SELECT count(*) FROM events WHERE user_id = ?", [uid]),
            "consents": q("SELECT count(*) FROM consents WHERE user_id = ?", [uid]),
            "segments": q("SELECT count(*) FROM segment_assignments WHERE user_id = ?", [uid]),
            "predictions": q("SELECT count(*) FROM predictions WHERE user_id = ?", [uid]),
            "messages": q("SELECT count(*) FROM deliveries WHERE user_id = ?", [uid]),
            "campaign_audiences": q("SELECT count(*) FROM campaign_audiences WHERE user_id = ?", [uid]),
            "campaign_assignments": q("SELECT count(*) FROM campaign_assignments WHERE user_id = ?", [uid]),
            "recommendations": q("SELECT count(*) FROM recommendations WHERE user_id = ? AND run_id = "
                                 "(SELECT run_id FROM recommendation_runs WHERE kind = 'batch' "
                                 "ORDER BY created_at DESC, run_id DESC LIMIT 1)", [uid]),
            "features": 1,
            "profile": 1,
        }  # fmt: skip


def test_the_export_holds_every_part_and_counts_match_the_store(project: Path) -> None:
    uid, email = _person(project)
    out = project / "requests"
    done = runner.invoke(app, ["privacy", "export", uid, "-o", str(out), "--why", "DSAR 2026-17",
                               "-p", str(project), "--json"])  # fmt: skip
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    folder = Path(result["folder"])
    assert folder.parent == out and folder.name.startswith("segmint-access-")
    assert uid not in folder.name  # the folder is named by the subject hash, not the id
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(["person.json", "manifest.json", *(f"{s}.csv" for s in SECTIONS)])
    # the manifest: every file with its rows and SHA-256
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    for name, meta in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == meta["sha256"]
    expected = _store_counts(project, uid)
    for section, n in expected.items():
        assert n > 0, section  # the person chosen has rows in every part checked
        assert manifest["files"][f"{section}.csv"]["rows"] == n, section
    # JSON parses, holds every part, and its about section explains each
    person = json.loads((folder / "person.json").read_text(encoding="utf-8"))
    assert set(SECTIONS) <= set(person) and set(person["about"]["sections"]) == set(SECTIONS)
    for section, n in expected.items():
        got = person[section]
        assert (1 if isinstance(got, dict) else len(got)) == n, section
    assert person["profile"]["email"] == email  # the person's own data, in clear
    assert any(s["latest"] for s in person["segments"])
    # the demo ran one clv and one churn prediction: both, with their kind and as-of date
    assert sorted(r["kind"] for r in person["predictions"]) == ["churn", "clv"]
    assert all(r["latest"] and r["as_of"] for r in person["predictions"])
    # every CSV opens: csv module (UTF-8 with BOM, as Excel needs) and pandas
    for section in SECTIONS:
        raw = (folder / f"{section}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), section
        with (folder / f"{section}.csv").open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
        assert len(rows) - 1 == manifest["files"][f"{section}.csv"]["rows"], section
        if len(rows) > 1:
            frame = pd.read_csv(folder / f"{section}.csv", encoding="utf-8-sig")
            assert len(frame) == len(rows) - 1
    profile = pd.read_csv(folder / "profile.csv", encoding="utf-8-sig")
    assert profile["email"].iat[0] == email
    # recorded: the export log (kind access, with contacts) and the audit log (by subject)
    with segmint.open_project(project) as p:
        subject = open_vault(p.store, p.config).index(uid, "user")
        ex = p.store.query("SELECT kind, contact, path, purpose FROM exports WHERE export_id = ?",
                           [result["export_id"]])  # fmt: skip
        audit = p.store.query("SELECT action, target, why FROM audit_log WHERE seq = ?",
                              [result["audit_seq"]])  # fmt: skip
        assert verify_audit(p.store).ok
    assert ex.values.tolist() == [["access", True, str(folder.resolve()), "DSAR 2026-17"]]
    assert audit.values.tolist() == [["privacy.access_export", subject, "DSAR 2026-17"]]


def test_sealed_fields_are_opened_in_the_export(project: Path, tmp_path: Path) -> None:
    uid, email = _person(project)
    with segmint.open_project(project) as p:
        vault = open_vault(p.store, p.config)
        p.store.execute("UPDATE users SET email = ?, traits = CAST(? AS JSON) WHERE user_id = ?",
                        [vault.seal(email, "users.email"),
                         json.dumps(vault.seal_json({"first_name": "Zoë", "tier": "gold"}, "users.traits")),
                         uid])  # fmt: skip
        result = access_export(p, uid, tmp_path / "out", actor="dpo", why="t")
    person = json.loads((result.folder / "person.json").read_text(encoding="utf-8"))
    assert person["profile"]["email"] == email
    assert person["profile"]["traits"] == {"first_name": "Zoë", "tier": "gold"}
    assert "enc1:" not in (result.folder / "profile.csv").read_text(encoding="utf-8-sig")


def test_an_unknown_user_is_a_clear_error_and_writes_nothing(project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = runner.invoke(
        app, ["privacy", "export", "no-such-user", "-o", str(out), "-p", str(project)]
    )
    assert done.exit_code == 2
    assert "no user with that id" in done.output and "no-such-user" not in done.output
    assert not out.exists()
    with segmint.open_project(project) as p:
        assert p.store.scalar("SELECT count(*) FROM exports WHERE kind = 'access'") == 0
        with pytest.raises(NotFoundError):
            access_export(p, "no-such-user", out)
