"""Profiles, personas and exports on a small demo store, checked against the raw tables
with pandas only (no segmint SQL), on DuckDB and on the real PostgreSQL server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from typer.testing import CliRunner

import segmint
from segmint._i18n import language
from segmint.cli import app
from segmint.demo import generate_demo
from segmint.errors import ConfigError, NotFoundError
from segmint.profiles import _export, _persona
from segmint.store import open_vault


def _build(out: Path, n_users: int, store: str | None = None) -> segmint.Project:
    generate_demo(out, n_users=n_users, seed=11)
    if store is not None:
        cfg = out / "segmint.yaml"
        cfg.write_text(cfg.read_text().replace("store: demo.duckdb", f"store: {store}"))
    p = segmint.open_project(out)
    p.ingest()
    run = p.compute_features()
    p.segment(["rfm", "lifecycle", "clusters"], feature_run=run)
    return p


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    p = _build(tmp_path_factory.mktemp("demo"), 1_500)
    yield p
    p.close()


# -- personas -----------------------------------------------------------------------------
def test_persona_figures_match_pandas(demo: segmint.Project) -> None:
    run = demo.segment_run("clusters")
    feats = demo.features(run.feature_run_id)
    frame = run.assignments[["user_id", "segment"]].merge(feats, on="user_id")
    found = demo.personas("clusters")
    assert [p.segment for p in found] == list(frame["segment"].value_counts().index)
    assert sum(p.n_users for p in found) == len(frame)
    total = frame["monetary"].fillna(0).sum()
    for p in found:
        mine = frame[frame["segment"] == p.segment]
        rest = frame[frame["segment"] != p.segment]
        assert p.n_users == len(mine)
        assert p.user_share == pytest.approx(len(mine) / len(frame))
        assert p.revenue_share == pytest.approx(mine["monetary"].fillna(0).sum() / total)
        for col in ("monetary", "recency_days", "events_30d", "age"):
            row = p.features.loc[col]
            assert row["median"] == pytest.approx(mine[col].median())
            assert row["mean"] == pytest.approx(mine[col].mean())
            assert row["population_mean"] == pytest.approx(frame[col].mean())
            assert row["ratio"] == pytest.approx(mine[col].mean() / frame[col].mean())
            pooled = np.sqrt((mine[col].var() + rest[col].var()) / 2)
            assert row["std_diff"] == pytest.approx((mine[col].mean() - rest[col].mean()) / pooled)
        observed = mine.drop(columns=["user_id", "segment"]).notna().mean()
        for col, share in p.features["observed_share"].items():
            assert share == pytest.approx(observed[col])
        kept = p.features[p.features["observed_share"] >= 0.5]
        top = kept["std_diff"].abs().dropna().sort_values(ascending=False).index[:5]
        assert list(p.distinguishing.index) == list(top)
        g = mine["gender"].fillna("unknown").value_counts(normalize=True)
        got = p.demographics["gender"].set_index("value")["share"]
        pd.testing.assert_series_equal(got.sort_index(), g.sort_index(), check_names=False)


def test_persona_categories_and_items_from_raw_tables(demo: segmint.Project) -> None:
    run = demo.segment_run("rfm")
    q = demo.store.query
    lines = q("SELECT order_id, item_id, quantity, unit_price FROM order_items")
    orders = q("SELECT order_id, user_id, ts, status FROM orders")
    items = q("SELECT item_id, category, price FROM items")
    df = lines.merge(orders, on="order_id").merge(items, on="item_id", how="left")
    df = df[(df["status"] == "completed") & (df["ts"] < pd.Timestamp(run.as_of))]
    df["spend"] = df["quantity"] * df["unit_price"].fillna(df["price"])
    df = df.merge(run.assignments[["user_id", "segment"]], on="user_id")
    for p in demo.personas("rfm"):
        if p.segment == "No Purchase":
            assert p.top_categories.empty and p.top_items.empty
            continue
        mine = df[df["segment"] == p.segment]
        by_cat = mine.groupby("category")["spend"].sum().sort_values(ascending=False)
        assert p.top_categories["category"].iloc[0] == by_cat.index[0]
        assert p.top_categories["share"].iloc[0] == pytest.approx(by_cat.iloc[0] / by_cat.sum())
        buyers = mine.groupby("item_id")["user_id"].nunique()
        assert p.top_items["buyers"].iloc[0] == buyers.max()


def test_persona_summary_is_two_sentences_from_the_numbers(demo: segmint.Project) -> None:
    en = language("en")
    for p in demo.personas("rfm"):
        s = p.summary
        assert s.count(". ") == 1 and s.endswith(".")
        users = f"{p.n_users:,} user" + ("" if p.n_users == 1 else "s")
        assert s.startswith(f"{p.segment} is {users} ({en.percent(p.user_share, 0)} of all)")
        assert f"{en.percent(p.revenue_share, 0)} of revenue" in s
        if 0 < p.revenue_share < 0.005:  # some revenue, not none: "<1%", never "0%"
            assert "brings <1% of revenue" in s
    champions = demo.persona("rfm", "Champions")
    top2 = champions.distinguishing.head(2)
    for feature, row in top2.iterrows():
        assert abs(row["std_diff"]) >= 0.2
        if _persona._supported(row):  # the median agrees with the mean
            assert _persona._phrase(str(feature), row["std_diff"]) in champions.summary
    assert "spend little" not in champions.summary and "rarely order" not in champions.summary
    d = champions.to_dict()
    assert json.loads(json.dumps(d))["segment"] == "Champions"


def test_a_chinese_persona_reads_in_chinese(demo: segmint.Project) -> None:
    from segmint.profiles import personas

    found = personas(demo.store, demo.segment_run("rfm"), locale="zh-CN")
    champions = next(p for p in found if p.segment == "Champions")
    s = champions.summary
    assert s.startswith(f"冠军客户共有{champions.n_users:,} 位用户（占全部的")
    assert "贡献了" in s and s.endswith("。")
    assert "Champions" not in s and " users" not in s
    assert all("：中位数" in label for label in champions.distinguishing["label"])


def test_unknown_segment_suggests_the_closest(demo: segmint.Project) -> None:
    with pytest.raises(NotFoundError, match="did you mean 'At Risk'"):
        demo.persona("rfm", "At Rsk")


def test_lifecycle_mix_uses_the_stored_lifecycle_run(demo: segmint.Project) -> None:
    life = demo.segment_run("lifecycle").assignments.set_index("user_id")["segment"]
    rfm = demo.segment_run("rfm").assignments
    lost = rfm[rfm["segment"] == "Lost"]["user_id"]
    expected = life.reindex(lost).value_counts(normalize=True)
    got = demo.persona("rfm", "Lost").lifecycle.set_index("value")["share"]
    pd.testing.assert_series_equal(got.sort_index(), expected.sort_index(), check_names=False)


# -- user profile -------------------------------------------------------------------------
def test_profile_matches_raw_tables(demo: segmint.Project) -> None:
    run = demo.segment_run("rfm")
    buyer = run.assignments[run.assignments["segment"] == "Champions"]["user_id"].iloc[0]
    pr = demo.profile(buyer)
    q = demo.store.query
    orders = q("SELECT * FROM orders WHERE user_id = ?", [buyer])
    before = orders[(orders["status"] == "completed") & (orders["ts"] < pd.Timestamp(pr.as_of))]
    assert pr.features["frequency"] == len(before)
    assert pr.features["monetary"] == pytest.approx(before["amount"].sum())
    mix = before["channel"].value_counts()
    assert {k: v["count"] for k, v in pr.channel_mix["orders"].items()} == mix.to_dict()
    segs = pr.segments.set_index("segmentation")["segment"].to_dict()
    assert segs["rfm"] == "Champions"
    assert set(segs) == {"rfm", "lifecycle", "clusters"}
    sealed = q("SELECT email FROM users WHERE user_id = ?", [buyer]).iat[0, 0]
    email = open_vault(demo.store, demo.config).open(sealed, "users.email")  # sealed at rest
    assert pr.attributes["email"] == email[0] + "***@" + email.split("@")[1]
    assert email not in json.dumps(pr.to_dict(), default=str)
    consents = q("SELECT * FROM consents WHERE user_id = ?", [buyer])
    latest = consents.sort_values("ts").groupby(["channel", "purpose"]).tail(1)
    got = pr.consents.set_index(["channel", "purpose"])["granted"].to_dict()
    assert got == latest.set_index(["channel", "purpose"])["granted"].to_dict()
    assert pr.favourite_categories["share"].between(0, 1).all()
    assert pr.favourite_categories["category"].iloc[0] == pr.features["favourite_category"]


def test_unknown_user_is_a_clear_error_and_exit_2(demo: segmint.Project) -> None:
    with pytest.raises(NotFoundError, match="unknown user 'C00001'.*did you mean"):
        demo.profile("C00001")
    res = CliRunner().invoke(app, ["profile", "C00001", "-p", str(demo.root)])
    assert res.exit_code == 2
    assert "unknown user" in res.output


def test_cli_profile_and_persona(demo: segmint.Project) -> None:
    runner = CliRunner()
    user = demo.segment_run("rfm").assignments["user_id"].iloc[0]
    res = runner.invoke(app, ["profile", user, "-p", str(demo.root), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["user_id"] == user
    res = runner.invoke(app, ["persona", "rfm", "Champions", "-p", str(demo.root)])
    assert res.exit_code == 0, res.output
    assert "most distinguishing features" in res.output and "Champions is" in res.output
    res = runner.invoke(app, ["persona", "clusters", "-p", str(demo.root), "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)) == demo.segment_run("clusters").metrics["n_segments"]


def test_cli_report_writes_the_html_file(demo: segmint.Project, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.html"
    res = CliRunner().invoke(app, ["report", "-p", str(demo.root), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert Path(info["path"]) == out and out.stat().st_size == info["size_bytes"]
    assert demo.segment_run("rfm").run_id in info["run_ids"]
    assert demo.segment_run("rfm").run_id in out.read_text()


# -- exports ------------------------------------------------------------------------------
def test_export_profiles_every_format(demo: segmint.Project, tmp_path: Path) -> None:
    n = len(demo.features())
    csv = pd.read_csv(demo.export_profiles(tmp_path / "p.csv", "csv")[0])
    pq = pd.read_parquet(demo.export_profiles(tmp_path / "p.parquet", "parquet")[0])
    xl = pd.read_excel(demo.export_profiles(tmp_path / "p.xlsx", "xlsx")[0])
    for frame in (csv, pq, xl):
        assert len(frame) == n
        assert {"user_id", "monetary", "segment_rfm", "segment_clusters", "has_email"} <= set(
            frame.columns
        )
        # no address at all, not even masked (issue 21): whether there is one, only
        assert "email_masked" not in frame.columns
        assert frame["has_email"].astype(bool).any()
    rfm = demo.segment_run("rfm").assignments.set_index("user_id")["segment"]
    assert (pq.set_index("user_id")["segment_rfm"] == rfm.reindex(pq["user_id"])).all()


def test_export_personas_workbook_and_folder(demo: segmint.Project, tmp_path: Path) -> None:
    (book,) = demo.export_personas("rfm", tmp_path / "rfm.xlsx")
    wb = openpyxl.load_workbook(book, read_only=True)
    assert wb.sheetnames == [
        "overview",
        "features",
        "categories",
        "items",
        "demographics",
        "lifecycle",
    ]
    overview = pd.read_excel(book, sheet_name="overview")
    assert overview["n_users"].sum() == len(demo.segment_run("rfm").assignments)
    files = demo.export_personas("rfm", tmp_path / "rfm", "parquet")
    assert {f.name for f in files} >= {"overview.parquet", "features.parquet"}
    res = CliRunner().invoke(
        app,
        ["export", "personas", "rfm", "-o", str(tmp_path / "x"), "-f", "xls", "-p", str(demo.root)],
    )
    assert res.exit_code == 2 and "unknown export format 'xls'" in res.output


def test_excel_row_limit_is_a_clear_error(
    demo: segmint.Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_export, "EXCEL_MAX_ROWS", 100)
    with pytest.raises(ConfigError, match="do not fit in an Excel sheet"):
        demo.export_profiles(tmp_path / "big.xlsx", "xlsx")
    assert not (tmp_path / "big.xlsx").exists()


# -- PostgreSQL ---------------------------------------------------------------------------
def test_postgres_store_gives_the_same_personas_and_profiles(pg_url: str, tmp_path: Path) -> None:
    duck = _build(tmp_path / "duck", 300)
    pg = _build(tmp_path / "pg", 300, store=pg_url)
    try:
        a, b = duck.personas("rfm"), pg.personas("rfm")
        assert [(x.segment, x.n_users) for x in a] == [(x.segment, x.n_users) for x in b]
        for x, y in zip(a, b, strict=True):
            assert x.summary == y.summary
            pd.testing.assert_frame_equal(x.features, y.features, check_dtype=False)
            pd.testing.assert_frame_equal(
                x.top_categories.reset_index(drop=True),
                y.top_categories.reset_index(drop=True),
                check_dtype=False,
            )
        user = duck.segment_run("rfm").assignments["user_id"].iloc[3]
        pa, pb = duck.profile(user).to_dict(), pg.profile(user).to_dict()
        fa, fb = pa["features"], pb["features"]
        assert fa.keys() == fb.keys()
        for k, v in fa.items():  # sums may differ in the last bit between engines
            assert fb[k] == (pytest.approx(v, rel=1e-12) if isinstance(v, float) else v), k
        for key in ("attributes", "channel_mix", "consents"):
            assert json.dumps(pa[key], sort_keys=True, default=str) == json.dumps(
                pb[key], sort_keys=True, default=str
            ), key
        cats_a = pd.DataFrame(pa["favourite_categories"])
        pd.testing.assert_frame_equal(cats_a, pd.DataFrame(pb["favourite_categories"]))
        assert [s["segment"] for s in pa["segments"]] == [s["segment"] for s in pb["segments"]]
        out = pg.export_profiles(tmp_path / "pg.parquet", "parquet")[0]
        assert len(pd.read_parquet(out)) == len(pg.features())
    finally:
        duck.close()
        pg.close()


def test_profile_carries_the_latest_recommendations(tmp_path: Path) -> None:
    p = _build(tmp_path / "recs", 600)
    try:
        user = p.segment_run("rfm").assignments["user_id"].iloc[0]
        assert "recommendations" not in p.profile(user).extras  # no run yet
        p.recommend_all("popularity")
        recs = p.profile(user).to_dict()["recommendations"]
        assert 0 < len(recs) <= 5
        assert recs == p.recommend(user, 5).to_dict(orient="records")
        assert {"item_id", "score", "reason"} <= set(recs[0])
    finally:
        p.close()
