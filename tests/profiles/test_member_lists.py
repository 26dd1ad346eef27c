"""``segmint export segment``: pseudonymous ids by default (keyed, stable, not a plain
hash), a contact list only for a consented ``--purpose``, and every export recorded in the
store (DuckDB and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests.profiles._lists_project import BIG, CONSENTED, NAMES, write_shop
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.errors import NotFoundError


@pytest.fixture(scope="module")
def shop_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture()
def shop(shop_base: Path, tmp_path: Path) -> Path:
    """A private copy (its store and its pseudonym key, once made, included)."""
    root = tmp_path / "shop"
    shutil.copytree(shop_base, root)
    return root


def _cli(*args: str | Path):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, [str(a) for a in args])


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, encoding="utf-8-sig", dtype=str)


def test_pseudonyms_are_hmac_sha256() -> None:
    import hmac

    from segmint.profiles._lists import pseudonymize

    ids = pd.Series(["u1", "张伟", "x" * 300])
    for key in (b"k", b"s" * 64, b"long" * 40):  # shorter, equal to, longer than a block
        want = [hmac.new(key, u.encode(), hashlib.sha256).hexdigest()[:16] for u in ids]
        assert pseudonymize(ids, key).tolist() == want


def test_pseudonymous_by_default_keyed_and_stable(shop: Path, tmp_path: Path) -> None:
    res = _cli("export", "segment", "spend", "大客户", "-o", tmp_path / "a.csv", "-p", shop)
    assert res.exit_code == 0, res.output
    assert "pseudonymous ids" in res.output
    a = _csv(tmp_path / "a.csv")
    assert list(a.columns) == ["pseudonym", "segment"]
    assert len(a) == len(BIG) and set(a["segment"]) == {"大客户"}
    ids = set(a["pseudonym"])
    assert all(len(x) == 16 and int(x, 16) >= 0 for x in ids)
    assert not ids & set(NAMES)  # no user id
    plain = {h(u.encode()).hexdigest()[:16] for u in NAMES for h in (hashlib.sha256, hashlib.md5)}
    assert not ids & plain  # not a hash anyone can compute from a known id
    # the same users get the same pseudonyms in a second export (all segments this time)
    assert _cli("export", "segment", "spend", "-o", tmp_path / "b.csv", "-p", shop).exit_code == 0
    b = _csv(tmp_path / "b.csv")
    assert len(b) == len(NAMES) and ids <= set(b["pseudonym"])
    # another project (another key) gives other pseudonyms
    other = tmp_path / "other"
    shutil.copytree(shop, other, ignore=shutil.ignore_patterns(".segmint"))
    assert _cli("export", "segment", "spend", "-o", tmp_path / "c.csv", "-p", other).exit_code == 0
    assert not set(_csv(tmp_path / "c.csv")["pseudonym"]) & set(b["pseudonym"])


def test_a_contact_list_needs_a_purpose_and_respects_consent(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "contacts.csv"
    res = _cli(
        "export", "segment", "spend", "-o", out, "--purpose", "Marketing", "-p", shop, "--json"
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    frame = _csv(out)
    assert list(frame.columns) == ["user_id", "email", "phone", "name", "segment"]
    # u1 (e-mail), u4 (sms), u6 (denied by e-mail, granted by sms); u2 revoked; u3 and u5
    # (newsletter only) never granted marketing
    assert sorted(frame["user_id"]) == CONSENTED
    assert frame.set_index("user_id").loc["u1", "email"] == "u1@example.com"
    assert rec["excluded"] == {"consent revoked or denied": 1, "consent never given": 2}
    assert (rec["n_rows"], rec["n_excluded"], rec["contact"]) == (3, 3, True)
    assert rec["purpose"] == "marketing"
    # for the big spenders only: u2 revoked is the one left out
    with segmint.open_project(shop) as p:
        r = p.export_segment("spend", tmp_path / "big.csv", segment="大客户", purpose="marketing")
    assert sorted(_csv(tmp_path / "big.csv")["user_id"]) == ["u1", "u6"]
    assert r.excluded == {"consent revoked or denied": 1, "consent never given": 0}
    # a purpose nobody granted: an empty list, everyone counted
    with segmint.open_project(shop) as p:
        r = p.export_segment("spend", tmp_path / "none.csv", purpose="transactional")
    assert r.n_rows == 0 and r.excluded["consent never given"] == len(NAMES)


def test_an_unknown_segment_says_which_exist(shop: Path, tmp_path: Path) -> None:
    with segmint.open_project(shop) as p, pytest.raises(NotFoundError, match="segments: "):
        p.export_segment("spend", tmp_path / "x.csv", segment="big")
    assert not (tmp_path / "x.csv").exists()


def _check_recorded(p: segmint.Project, tmp_path: Path) -> None:
    p.export_segment("spend", tmp_path / "pseudo.parquet", command="segmint export segment spend")
    rec = p.export_segment("spend", tmp_path / "c.xlsx", segment="大客户", purpose="marketing")
    log = p.exports()
    assert len(log) == 2
    newest = log.iloc[0]
    assert newest["export_id"] == rec.export_id
    assert (newest["kind"], newest["segmentation"], newest["segment"]) == (
        "segment",
        "spend",
        "大客户",
    )
    assert (newest["purpose"], bool(newest["contact"])) == ("marketing", True)
    assert (int(newest["n_rows"]), int(newest["n_excluded"])) == (2, 1)
    assert newest["path"] == str((tmp_path / "c.xlsx").resolve())
    assert newest["format"] == "xlsx" and newest["run_id"] == p.segment_run("spend").run_id
    assert newest["command"] == "python: Project.export_segment" and newest["actor"]
    older = log.iloc[1]
    assert not bool(older["contact"]) and pd.isna(older["purpose"])
    assert older["command"] == "segmint export segment spend"
    assert pd.Timestamp(newest["created_at"]).tzinfo is not None


def test_every_export_is_recorded_in_duckdb(shop: Path, tmp_path: Path) -> None:
    with segmint.open_project(shop) as p:
        _check_recorded(p, tmp_path)


def test_every_export_is_recorded_in_postgres(pg_url: str, tmp_path: Path) -> None:
    root = write_shop(tmp_path / "pg", store=pg_url)
    with segmint.open_project(root) as p:
        _check_recorded(p, tmp_path)
        # the consent rule is the same on PostgreSQL
        r = p.export_segment("spend", tmp_path / "all.csv", purpose="marketing")
        assert sorted(_csv(tmp_path / "all.csv")["user_id"]) == CONSENTED
        assert r.excluded == {"consent revoked or denied": 1, "consent never given": 2}


def test_export_log_lists_every_kind(shop: Path, tmp_path: Path) -> None:
    res = _cli("export", "log", "-p", shop)
    assert res.exit_code == 0 and "no exports recorded" in res.output
    for args in (
        ("profiles", "-o", tmp_path / "p.csv"),
        ("personas", "spend", "-o", tmp_path / "o.xlsx"),
        ("segment", "spend", "-o", tmp_path / "s.csv", "--purpose", "marketing"),
    ):
        res = _cli("export", *args, "-p", shop)
        assert res.exit_code == 0, res.output
    res = _cli("export", "log", "-p", shop, "--json")
    rows = json.loads(res.stdout)
    assert [r["kind"] for r in rows] == ["segment", "personas", "profiles"]
    assert rows[0]["command"].startswith("segmint export segment spend")
    assert rows[0]["created_at"].endswith("+00:00")  # ISO 8601 with its offset
    res = _cli("export", "log", "-p", shop, "-n", "1")
    assert res.exit_code == 0, res.output
    assert "Europe/Berlin" in res.output and "marketing" in res.output
    assert "profiles" not in res.output  # -n 1: the newest only


def test_run_ids_resolve_by_a_unique_start(shop: Path, tmp_path: Path) -> None:
    with segmint.open_project(shop) as p:
        first = p.segment_run("spend").run_id
        second = p.segment("spend").run_id
    res = _cli("segments", "show", "s-", "-p", shop)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert "is the start of several segment run ids" in text
    assert first in text and second in text
    for run in (first, second):
        res = _cli("segments", "show", run[:-2], "-p", shop, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["run_id"] == run
    res = _cli("segments", "show", "zz", "-p", shop)
    assert res.exit_code == 2 and "no segment run or segmentation named 'zz'" in res.output


def test_segment_runs_show_times_in_the_project_time_zone(shop: Path) -> None:
    with segmint.open_project(shop) as p:
        created = pd.Timestamp(p.segment_run("spend").created_at)
    created = created.tz_localize("UTC") if created.tzinfo is None else created
    local = created.tz_convert("Europe/Berlin")  # timezone: of the shop's segmint.yaml
    res = _cli("segments", "list", "-p", shop)
    assert res.exit_code == 0, res.output
    assert f"{local:%Y-%m-%d %H:%M %Z}" in res.stdout
    assert "times in Europe/Berlin" in res.stdout
