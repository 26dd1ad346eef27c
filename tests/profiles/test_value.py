"""Predicted value and churn risk in profiles, personas, persona exports and ``segmint
profile``: every figure recomputed here with pandas from the stored predictions."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.value_runs import add_predictions, add_previous_churn, build_demo
from typer.testing import CliRunner

import segmint
from segmint._i18n import language
from segmint.cli import app
from segmint.predict import PredictionRun, latest_predictions_sql, load_prediction_run

THRESHOLD = 0.5


class Demo:
    def __init__(self, p: segmint.Project) -> None:
        self.p = p
        self.before: dict[str, Any] = {}
        self.clv: PredictionRun
        self.churn: PredictionRun


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    p = build_demo(tmp_path_factory.mktemp("value"), n_users=3_000, seed=21)
    d = Demo(p)
    # what a project without any prediction run shows
    buyer = p.store.query(
        "SELECT user_id FROM orders WHERE status = 'completed' ORDER BY user_id LIMIT 1"
    ).iat[0, 0]
    d.before = {"profile": p.profile(buyer), "personas": p.personas("rfm")}
    d.clv, d.churn = add_predictions(p)
    yield d
    p.close()


def _members(d: Demo, segmentation: str) -> pd.DataFrame:
    """The run's members with their CLV, P(alive) and churn risk, read with pandas from
    the stored runs (not through the personas' SQL)."""
    run = d.p.segment_run(segmentation)
    clv = load_prediction_run(d.p.store, d.clv.run_id).scores
    churn = load_prediction_run(d.p.store, d.churn.run_id).scores
    m = run.assignments[["user_id", "segment"]].astype(str)
    m = m.merge(clv[["user_id", "clv", "p_alive"]], on="user_id", how="left")
    return m.merge(churn[["user_id", "churn_risk"]], on="user_id", how="left")


def _buyer_and_non_buyer(d: Demo) -> tuple[str, str]:
    scored = set(d.clv.scores["user_id"])
    users = d.p.store.query("SELECT user_id FROM users ORDER BY user_id")["user_id"]
    buyer = next(u for u in users if u in scored)
    never = next(u for u in users if u not in scored)
    return str(buyer), str(never)


# -- profiles ------------------------------------------------------------------------------
def test_no_prediction_run_means_no_value_block(demo: Demo) -> None:
    assert demo.before["profile"].value == {}
    assert demo.before["profile"].to_dict()["value"] == {}
    for persona in demo.before["personas"]:
        assert persona.value == {}
        assert "Expected value" not in persona.summary
        assert "risk of churning" not in persona.summary


def test_a_buyers_profile_shows_the_latest_runs_figures(demo: Demo) -> None:
    buyer, _ = _buyer_and_non_buyer(demo)
    v = demo.p.profile(buyer).value
    row = demo.clv.scores.set_index("user_id").loc[buyer]
    assert v["clv_run_id"] == demo.clv.run_id and v["churn_run_id"] == demo.churn.run_id
    assert pd.Timestamp(v["clv_as_of"]) == pd.Timestamp(demo.clv.as_of)
    assert v["scored"] is True and v["horizon_days"] == 365 and v["interval"] == 0.9
    for col in ("p_alive", "expected_purchases", "expected_order_value", "clv", "clv_low"):
        assert v[col] == pytest.approx(float(row[col]), rel=1e-12), col
    assert v["clv_low"] <= v["clv"] <= v["clv_high"]
    risk = float(demo.churn.scores.set_index("user_id").loc[buyer, "churn_risk"])
    assert v["churn_risk"] == pytest.approx(risk) and v["high_churn_risk"] == (risk >= THRESHOLD)
    back = json.loads(json.dumps(demo.p.profile(buyer).to_dict()))["value"]
    assert back["clv"] == pytest.approx(v["clv"]) and back["clv_as_of"].startswith("20")


def test_a_user_without_purchases_is_not_scored(demo: Demo) -> None:
    _, never = _buyer_and_non_buyer(demo)
    assert not demo.p.store.scalar(
        "SELECT count(*) FROM orders WHERE user_id = ? AND status = 'completed' AND ts < ?",
        [never, demo.clv.as_of],
    )
    v = demo.p.profile(never).value
    assert v["scored"] is False and v["clv_run_id"] == demo.clv.run_id
    assert v["clv"] is None and v["p_alive"] is None and v["expected_purchases"] is None
    assert v["churn_run_id"] == demo.churn.run_id  # customers only, so not this user
    assert v["churn_scored"] is False and v["churn_risk"] is None and not v["high_churn_risk"]


def test_cli_profile_prints_the_value_block(demo: Demo) -> None:
    buyer, never = _buyer_and_non_buyer(demo)
    v = demo.p.profile(buyer).value
    en = language("en")
    res = CliRunner().invoke(
        app, ["profile", buyer, "-p", str(demo.p.root)], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0, res.output
    assert "predicted value" in res.output
    assert en.money(v["clv"], "EUR") in res.output
    assert f"{en.money(v['clv_low'], 'EUR')} to {en.money(v['clv_high'], 'EUR')}" in res.output
    assert en.percent(v["p_alive"], 1) in res.output
    assert demo.clv.run_id in res.output and demo.churn.run_id in res.output
    res = CliRunner().invoke(
        app, ["profile", never, "-p", str(demo.p.root)], env={"COLUMNS": "160"}
    )
    assert res.exit_code == 0 and "not scored: no completed order before" in res.output
    res = CliRunner().invoke(app, ["profile", buyer, "-p", str(demo.p.root), "--json"])
    assert json.loads(res.output)["value"]["clv"] == pytest.approx(v["clv"])


def test_the_value_block_has_the_change_since_the_previous_churn_run(demo: Demo) -> None:
    """churn_risk_change (the rule feature behind "high CLV and rising churn risk") in the
    value block and `segmint profile`: the risk minus the user's risk in the previous churn
    run (the latest at an earlier as-of date), as rules and the decision endpoint read it;
    None without a previous run or when the user was not in it."""
    p = demo.p
    risk = demo.churn.scores.set_index("user_id")["churn_risk"].astype(float)
    rising, falling, newcomer = (str(u) for u in risk[risk.between(0.2, 0.8)].index[:3])
    _, never = _buyer_and_non_buyer(demo)
    assert p.profile(rising).value["churn_risk_change"] is None  # no earlier run yet
    assert p.profile(rising).value["churn_previous_run_id"] is None
    before = (risk - 0.1).drop(newcomer)
    before[falling] = risk[falling] + 0.05
    older = add_previous_churn(p, demo.churn, before)
    try:
        v = p.profile(rising).value
        assert v["churn_run_id"] == demo.churn.run_id  # the earlier run is not the latest
        assert v["churn_previous_run_id"] == older.run_id
        assert pd.Timestamp(v["churn_previous_as_of"]) == pd.Timestamp(older.as_of)
        assert v["churn_risk_change"] == pytest.approx(0.1, abs=1e-12)
        assert p.profile(falling).value["churn_risk_change"] == pytest.approx(-0.05, abs=1e-12)
        assert p.profile(newcomer).value["churn_risk_change"] is None
        assert p.profile(never).value["churn_risk_change"] is None
        latest = p.store.query(latest_predictions_sql()).set_index("user_id")
        for user in (rising, falling):
            want = latest.loc[user, "churn_risk_change"]
            assert p.profile(user).value["churn_risk_change"] == pytest.approx(want, abs=1e-15)
        back = json.loads(json.dumps(p.profile(rising).to_dict()))["value"]
        assert back["churn_risk_change"] == pytest.approx(0.1)
        assert back["churn_previous_as_of"].startswith(str(older.as_of)[:10])
        en = language("en")
        since = str(older.as_of)[:10]
        for user, word in ((rising, "up 10 pts"), (falling, "down 5 pts")):
            res = CliRunner().invoke(
                app, ["profile", user, "-p", str(p.root)], env={"COLUMNS": "160"}
            )
            assert res.exit_code == 0, res.output
            shown = f"{word}, from {en.percent(float(before[user]), 1)}"
            assert re.search(rf"change since {since}\s.*{shown}", res.output), res.output
            assert older.run_id in res.output
        res = CliRunner().invoke(
            app, ["profile", newcomer, "-p", str(p.root)], env={"COLUMNS": "160"}
        )
        assert res.exit_code == 0 and "change since" not in res.output
    finally:
        p.store.execute("DELETE FROM predictions WHERE run_id = ?", [older.run_id])
        p.store.execute("DELETE FROM predict_runs WHERE run_id = ?", [older.run_id])


# -- personas ------------------------------------------------------------------------------
@pytest.mark.parametrize("segmentation", ["rfm", "clusters"])
def test_persona_value_figures_match_the_predictions_table(demo: Demo, segmentation: str) -> None:
    m = _members(demo, segmentation)
    total = m["clv"].sum()
    found = demo.p.personas(segmentation)
    assert {p.segment for p in found} == set(m["segment"])
    for p in found:
        mine = m[m["segment"] == p.segment]
        v = p.value
        assert v["n_users"] == len(mine) == p.n_users
        assert v["n_scored"] == mine["clv"].notna().sum()
        assert v["scored_share"] == pytest.approx(mine["clv"].notna().mean())
        assert v["clv_total"] == pytest.approx(mine["clv"].sum())
        assert v["clv_share"] == pytest.approx(mine["clv"].sum() / total)
        if mine["clv"].notna().any():
            assert v["clv_mean"] == pytest.approx(mine["clv"].mean())
            assert v["clv_median"] == pytest.approx(mine["clv"].median())
            assert v["p_alive_mean"] == pytest.approx(mine["p_alive"].mean())
        else:
            assert v["clv_mean"] is None and v["clv_median"] is None
        risk = mine["churn_risk"].dropna()
        assert v["n_churn_scored"] == len(risk)
        if len(risk):
            assert v["churn_high_share"] == pytest.approx((risk >= THRESHOLD).mean())
            assert v["churn_risk_mean"] == pytest.approx(risk.mean())
        else:  # nobody scored: no share, rather than 0 %
            assert v["churn_high_share"] is None and v["churn_risk_mean"] is None
        assert v["clv_run_id"] == demo.clv.run_id and v["churn_run_id"] == demo.churn.run_id
    assert sum(p.value["clv_share"] for p in found) == pytest.approx(1.0)


def test_persona_sentence_states_the_value_figures(demo: Demo) -> None:
    """The third sentence says the segment's median CLV, its share of all predicted value
    and the share at high churn risk, as the table computes them; a segment partly made of
    people who never bought says so; one where nobody bought says nothing about value."""
    en = language("en")
    partial = none = full = 0
    for segmentation in ("rfm", "clusters"):
        m = _members(demo, segmentation)
        total = m["clv"].sum()
        for p in demo.p.personas(segmentation):
            mine = m[m["segment"] == p.segment]
            s = p.summary
            risk = mine["churn_risk"].dropna()
            risk_text = en.percent((risk >= THRESHOLD).mean(), 0) + (
                " at high" if len(risk) == len(mine) else " of those scored at high"
            )
            risk_text += " risk of churning (risk ≥ 50%)"
            scored = mine["clv"].notna()
            if not scored.any():
                none += 1
                assert risk.empty  # neither model scores people who never bought
                assert "Expected value" not in s and "churning" not in s
                continue
            assert s.endswith(risk_text + "."), s
            median = en.money(mine["clv"].median(), "EUR")
            share = en.percent(mine["clv"].sum() / total, 0)
            if scored.all():
                full += 1
                said = f"Expected value over the next 12 months: {median} per customer (median)"
            else:
                partial += 1
                said = (
                    f"Expected value over the next 12 months for the {en.percent(scored.mean(), 0)}"
                    f" who have bought: {median} per buyer (median)"
                )
            assert f"{said}, {share} of all predicted value; {risk_text}." in s, s
            assert s.count(". ") == 2  # the two sentences of before, and this one
    assert full and none  # RFM's buyers, and its "No Purchase" segment
    assert partial  # a cluster mixing buyers and people who never bought


def test_a_chinese_persona_states_value_in_chinese(demo: Demo) -> None:
    from segmint.profiles import personas

    found = personas(demo.p.store, demo.p.segment_run("rfm"), locale="zh-CN", currency="CNY")
    champions = next(p for p in found if p.segment == "Champions")
    zh = language("zh-CN")
    median = zh.money(champions.value["clv_median"], "CNY")
    assert f"未来 12 个月的预期价值：每位客户 {median}（中位数）" in champions.summary
    assert champions.summary.endswith("）。") and "流失风险高" in champions.summary
    assert "Expected" not in champions.summary and "churn" not in champions.summary


def test_persona_export_has_the_value_columns(demo: Demo, tmp_path: Path) -> None:
    (book,) = demo.p.export_personas("rfm", tmp_path / "rfm.xlsx")
    overview = pd.read_excel(book, sheet_name="overview").set_index("segment")
    found = {p.segment: p.value for p in demo.p.personas("rfm")}
    for segment, v in found.items():
        row = overview.loc[segment]
        assert row["n_scored"] == v["n_scored"]
        assert row["clv_run_id"] == demo.clv.run_id and row["churn_run_id"] == demo.churn.run_id
        if v["clv_median"] is None:  # nobody in the segment bought
            assert pd.isna(row["clv_median"]) and pd.isna(row["churn_high_share"])
            continue
        assert row["churn_high_share"] == pytest.approx(v["churn_high_share"], rel=1e-3)
        assert row["clv_median"] == round(v["clv_median"], 2)  # money: cents
        assert row["clv_total"] == round(v["clv_total"], 2)
        assert row["p_alive_mean"] == pytest.approx(v["p_alive_mean"], rel=1e-3)
    files = demo.p.export_personas("rfm", tmp_path / "rfm", "csv")
    text = next(f for f in files if f.name == "overview.csv").read_text(encoding="utf-8-sig")
    assert re.search(r"^segmentation,.*,clv_mean,clv_median,clv_total,clv_share,", text, re.M)


# -- PostgreSQL ---------------------------------------------------------------------------
def test_postgres_store_gives_the_same_value_figures(pg_url: str, tmp_path: Path) -> None:
    """The value block and the persona figures read the same on DuckDB and PostgreSQL.
    Both stores hold the same runs (fitted on DuckDB, stored as they are in PostgreSQL), so
    a difference can only come from reading them."""
    from segmint.demo import generate_demo
    from segmint.predict._runs import save_run  # tests may write a run as stored

    out: dict[str, Any] = {}
    runs: tuple[PredictionRun, ...] = ()
    for name, store in (("duck", None), ("pg", pg_url)):
        root = tmp_path / name
        generate_demo(root, n_users=400, seed=5)
        if store is not None:
            cfg = root / "segmint.yaml"
            cfg.write_text(cfg.read_text().replace("store: demo.duckdb", f"store: {store}"))
        with segmint.open_project(root) as p:
            p.ingest()
            p.segment(["rfm"])
            if not runs:
                clv, churn = add_predictions(p)
                risk = churn.scores.set_index("user_id")["churn_risk"].astype(float)
                runs = (clv, churn, add_previous_churn(p, churn, risk * 0.8))
            else:
                for run in runs:
                    save_run(p.store, run)
            user = str(runs[0].scores["user_id"].iloc[5])
            out[name] = (p.profile(user).value, {x.segment: x for x in p.personas("rfm")})
    (duck_value, duck), (pg_value, pg) = out["duck"], out["pg"]
    assert pg_value["clv_run_id"] == duck_value["clv_run_id"]
    assert pg_value["churn_run_id"] == duck_value["churn_run_id"]
    assert (
        pg_value["churn_previous_run_id"] == duck_value["churn_previous_run_id"] == runs[2].run_id
    )
    assert duck_value["churn_risk_change"] == pytest.approx(duck_value["churn_risk"] * 0.2)
    keys = ("clv", "clv_low", "clv_high", "p_alive", "expected_purchases", "churn_risk_change")
    for key in (*keys, "churn_risk"):
        assert pg_value[key] == pytest.approx(duck_value[key], rel=1e-12), key
    assert duck.keys() == pg.keys()
    for segment, a in duck.items():
        b = pg[segment]
        for key in ("n_scored", "n_churn_scored"):
            assert a.value[key] == b.value[key], (segment, key)
        for key in ("clv_median", "clv_total", "clv_share", "p_alive_mean", "churn_high_share"):
            if a.value[key] is None:  # nobody in the segment bought ("No Purchase")
                assert b.value[key] is None, (segment, key)
            else:
                assert b.value[key] == pytest.approx(a.value[key], rel=1e-9), (segment, key)
        assert a.summary == b.summary
