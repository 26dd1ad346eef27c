"""Storage limitation (issue 21, point 5): ``privacy.retention`` periods checked at load,
rows past them purged in one transaction and logged, the spool's old files deleted, the
command and the scheduler's ``retention`` task."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.config import PrivacySettings
from segmint.privacy import apply_retention, retention_cutoff
from segmint.store import verify_audit

runner = CliRunner()
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("retention", "message"),
    [
        ({"audit_log": "1y"}, "audit log is a hash chain"),
        ({"orders": "10y"}, "orders are business records"),
        ({"evnts": "13mo"}, "expected one of events, quarantine, deliveries"),
        ({"events": "13m"}, "d \\(days\\), w \\(weeks\\), mo \\(months\\) or y \\(years\\)"),
        ({"events": "0d"}, "a positive number"),
    ],
)
def test_a_bad_retention_is_a_config_error_naming_the_fix(
    retention: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PrivacySettings(retention=retention)


def test_periods_are_normalised_and_cutoffs_are_calendar_months() -> None:
    settings = PrivacySettings(retention={"Events": " 13mo ", "exposures": "26w"})
    assert settings.retention == {"events": "13mo", "exposures": "26w"}
    at = datetime(2026, 3, 31, 8, tzinfo=UTC)
    assert retention_cutoff("13mo", at) == datetime(2025, 2, 28, 8, tzinfo=UTC)
    assert retention_cutoff("2y", at) == datetime(2024, 3, 31, 8, tzinfo=UTC)
    assert retention_cutoff("26w", at) == at - timedelta(weeks=26)
    assert retention_cutoff("90d", at) == at - timedelta(days=90)


@pytest.fixture(scope="module")
def shop_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("retention-shop")
    generate_demo(root, n_users=300, seed=7)
    with segmint.open_project(root) as p:
        p.ingest()
    return root


def _with_retention(root: Path, retention: dict[str, str], **extra: object) -> None:
    path = root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["privacy"] = {**doc.get("privacy", {}), "retention": retention}
    doc.update(extra)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture()
def shop(shop_base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(shop_base, root, ignore=shutil.ignore_patterns("exports", "truth"))
    _with_retention(root, {"events": "13mo", "quarantine": "90d", "exposures": "26w"})
    return root


def _count(p: segmint.Project, sql: str) -> int:
    return int(p.store.scalar(sql))


def test_rows_past_their_period_are_purged_logged_and_audited(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        cutoff = retention_cutoff("13mo", NOW)
        n_events = _count(p, "SELECT count(*) FROM events")
        n_old = _count(p, f"SELECT count(*) FROM events WHERE ts < TIMESTAMPTZ '{cutoff}'")
        assert 0 < n_old < n_events  # the demo spans more than 13 months
        p.store.execute(
            "INSERT INTO exposures (exposure_id, served_at, user_id) VALUES "
            "('x-old', TIMESTAMPTZ '2025-01-01 00:00:00+00', 'u'), "
            "('x-new', TIMESTAMPTZ '2026-11-01 00:00:00+00', 'u')"
        )
        dry = apply_retention(p.store, p.config, now=NOW, actor="tester", dry_run=True)
        assert {t.table: t.n_rows for t in dry.tables}["events"] == n_old
        assert _count(p, "SELECT count(*) FROM events") == n_events  # nothing purged
        assert _count(p, "SELECT count(*) FROM retention_purges") == 0

        report = apply_retention(p.store, p.config, now=NOW, actor="tester")
        by_table = {t.table: t for t in report.tables}
        assert by_table["events"].n_rows == n_old and by_table["events"].cutoff == cutoff
        assert by_table["exposures"].n_rows == 1
        assert _count(p, "SELECT count(*) FROM events") == n_events - n_old
        assert _count(p, f"SELECT count(*) FROM events WHERE ts < TIMESTAMPTZ '{cutoff}'") == 0
        assert list(p.store.query("SELECT exposure_id FROM exposures")["exposure_id"]) == ["x-new"]
        logged = p.store.query(
            "SELECT table_name, period, n_rows, actor FROM retention_purges ORDER BY table_name"
        )
        assert list(logged["table_name"]) == ["events", "exposures", "quarantine"]
        assert set(logged["actor"]) == {"tester"}
        assert int(logged.set_index("table_name").loc["events", "n_rows"]) == n_old
        audit = p.store.query("SELECT action, target, detail FROM audit_log")
        assert list(audit["action"]) == ["privacy.retention"]
        assert json.loads(audit["detail"].iat[0])["tables"]["events"] == n_old
        assert verify_audit(p.store).ok
        again = apply_retention(p.store, p.config, now=NOW, actor="tester")
        assert again.n_rows == 0  # idempotent


def test_quarantine_rows_go_with_their_loads_age(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        p.store.execute(
            'INSERT INTO quarantine (load_id, "row", source, target_table, rule, reason) '
            "SELECT load_id, 1, source, target_table, 'invalid', 'a bad row' FROM loads"
        )
        n = _count(p, "SELECT count(*) FROM quarantine")
        assert n > 0
        started = p.store.scalar("SELECT max(started_at) FROM loads")
        soon = apply_retention(p.store, p.config, now=started + timedelta(days=30), actor="t")
        assert {t.table: t.n_rows for t in soon.tables}["quarantine"] == 0
        later = apply_retention(p.store, p.config, now=started + timedelta(days=91), actor="t")
        assert {t.table: t.n_rows for t in later.tables}["quarantine"] == n
        assert _count(p, "SELECT count(*) FROM quarantine") == 0
        assert _count(p, "SELECT count(*) FROM loads") > 0  # the load records stay


def test_old_fully_loaded_spool_files_are_deleted(shop: Path) -> None:
    folder = shop / ".segmint" / "spool"
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "old-loaded": "spool-h-1-20240101T000000.jsonl",
        "old-pending": "spool-h-2-20240101T000000.jsonl",
        "new-loaded": "spool-h-3-20261101T000000.jsonl",
    }
    for name in files.values():
        (folder / name).write_bytes(b'{"type":"track"}\n')
    old = (NOW - timedelta(days=500)).timestamp()
    for key in ("old-loaded", "old-pending"):
        os.utime(folder / files[key], (old, old))
    with segmint.open_project(shop) as p:
        for key, loaded in (("old-loaded", 17), ("old-pending", 0), ("new-loaded", 17)):
            p.store.execute(
                "INSERT INTO tracking_spool VALUES (?, ?, 1, TIMESTAMPTZ '2024-01-01 00:00:00+00', "
                "FALSE)",
                [files[key], loaded],
            )
        report = apply_retention(p.store, p.config, now=NOW, actor="t")
        assert report.n_spool_files == 1
        left = sorted(f.name for f in folder.iterdir())
        assert left == sorted([files["old-pending"], files["new-loaded"]])
        rows = set(p.store.query("SELECT spool_file FROM tracking_spool")["spool_file"])
        assert files["old-loaded"] not in rows


def test_the_command_prints_each_tables_period_cutoff_and_rows(shop: Path) -> None:
    dry = runner.invoke(app, ["privacy", "retention", "--dry-run", "--json", "-p", str(shop)])
    assert dry.exit_code == 0, dry.output
    out = json.loads(dry.stdout)
    assert out["dry_run"] is True and {t["table"] for t in out["tables"]} == {
        "events",
        "quarantine",
        "exposures",
    }
    shown = runner.invoke(app, ["privacy", "retention", "-p", str(shop)])
    assert shown.exit_code == 0, shown.output
    assert "events" in shown.stdout and "13mo" in shown.stdout
    with segmint.open_project(shop, read_only=True) as p:
        assert _count(p, "SELECT count(*) FROM retention_purges") == 3
        actor = p.store.scalar("SELECT min(actor) FROM retention_purges")
        assert str(actor).startswith("cli")


def test_a_scheduled_retention_job_purges_and_logs(shop: Path) -> None:
    from segmint.serve import JobScheduler

    _with_retention(
        shop,
        {"events": "13mo"},
        schedule={"purge": {"cron": "0 4 * * *", "task": "retention"}},
    )
    with segmint.open_project(shop) as p:
        run = JobScheduler(p).run("purge")
        assert run.status == "ok", run.error
        assert run.detail is not None and run.detail["rows"]["events"] > 0
        logged = p.store.query("SELECT table_name, actor FROM retention_purges")
        assert list(logged["table_name"]) == ["events"] and set(logged["actor"]) == {"scheduler"}


def test_the_same_purge_on_postgresql(pg_url: str, shop: Path) -> None:
    from segmint.store import open_store

    with segmint.open_project(shop) as p:
        config = p.config
        events = p.store.query("SELECT event_id, event, ts FROM events")
    store = open_store(pg_url)
    try:
        store.insert("events", events, ["event_id", "event", "ts"])
        cutoff = retention_cutoff("13mo", NOW)
        n_old = int((events["ts"] < cutoff).sum())
        report = apply_retention(store, config, now=NOW, actor="t")
        assert {t.table: t.n_rows for t in report.tables}["events"] == n_old
        assert int(store.scalar("SELECT count(*) FROM events")) == len(events) - n_old
        assert int(store.scalar("SELECT count(*) FROM retention_purges")) == 3
        assert verify_audit(store).ok
    finally:
        store.close()
