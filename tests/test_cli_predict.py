"""``segmint predict clv|churn|list|show|export`` through the real command line (each
command a forked ``segmint`` process, tests/_cli_runner.py) on a small demo shop; the
Python API beside it and the scheduler's ``predict`` job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from tests.helpers import USERS_CSV, default_sources, make_project

import segmint
from segmint.demo import generate_demo
from segmint.predict import VALUE_COLUMNS

ROOT = Path(__file__).parents[1]


def _strict_json(text: str) -> Any:
    """JSON as the standard reads it: NaN and Infinity are refused."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


def _segmint(where: Path, cases: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Run command lines (``segmint`` + argv), two at a time, each in its own process;
    the results (exit, stdout, stderr, seconds) by case id."""
    specs = []
    for cid, argv in cases.items():
        folder = where / f"case-{cid}"
        folder.mkdir(parents=True)
        specs.append(
            {"id": cid, "dir": str(folder), "argv": argv, "timeout_s": 300, "max_rss_mib": 4096}
        )
    (where / "cases.json").write_text(json.dumps(specs), encoding="utf-8")
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])),
    }
    env.pop("SEGMINT_DEBUG", None)
    subprocess.run(
        [sys.executable, "-m", "tests._cli_runner", "cases.json", "results.json"],
        cwd=where,
        env=env,
        check=True,
        timeout=900,
    )
    results = json.loads((where / "results.json").read_text(encoding="utf-8"))
    return {r["id"]: r for r in results}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo shop of 2,000 customers, ingested."""
    root = tmp_path_factory.mktemp("predict") / "shop"
    generate_demo(root, n_users=2000, seed=23)
    with segmint.open_project(root) as p:
        p.ingest()
    return root


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with customers and no orders."""
    root = tmp_path_factory.mktemp("predict-empty")
    sources = default_sources()
    del sources["sales"]
    make_project(root, files={"users.csv": USERS_CSV}, sources=sources)
    with segmint.open_project(root) as p:
        p.ingest()
    return root


@pytest.fixture(scope="module")
def one_time(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose two customers bought once each."""
    root = make_project(tmp_path_factory.mktemp("predict-one-time"))
    with segmint.open_project(root) as p:
        p.ingest()
    return root


@pytest.fixture(scope="module")
def ran(
    shop: Path, empty: Path, one_time: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Every command line of the module, in three rounds. DuckDB has one writer and no
    reader beside it: a command that writes has its project (a copy of the shop) to itself
    within its round; the reads of the shop come last."""
    work = tmp_path_factory.mktemp("predict-cli")
    paths = {"shop": shop, "empty": empty}
    for name, source in (("json", shop), ("early", shop), ("no_orders", empty)):
        paths[name] = work / name
        shutil.copytree(source, paths[name], ignore=shutil.ignore_patterns("*.wal"))
    s, j, e = (["-p", str(paths[k])] for k in ("shop", "json", "empty"))
    rounds: list[dict[str, list[str]]] = [
        {
            "clv": ["predict", "clv", *s],
            "churn-json": ["predict", "churn", "--json", *j],
            "clv-json": [
                "predict", "clv", "--model", "mbgnbd", "--horizon", "180", "--json",
                "-p", str(paths["early"]),
            ],
            "no-orders": ["predict", "clv", "-p", str(paths["no_orders"])],
            "no-repeat": ["predict", "clv", "-p", str(one_time)],
            "empty-list": ["predict", "list", *e],
            "empty-list-json": ["predict", "list", "--json", *e],
            "empty-show": ["predict", "show", "clv", *e],
            "bad-model": ["predict", "clv", "--model", "pareto", *e],  # refused before the store
            "bad-days": ["predict", "churn", "--days", "3", *e],
            "bad-kind": ["predict", "list", "--kind", "ltv", *e],
        },
        {
            "churn": ["predict", "churn", "--as-of", "2026-10-01", *s],
            "churn-early": ["predict", "churn", "--as-of", "2025-03-01", "-p", str(paths["early"])],
            "export": ["predict", "export", "churn", "-o", str(work / "churn.parquet"), "--json", *j],
        },
        {
            "list-json": ["predict", "list", "--json", *s],
            "list": ["predict", "list", *s],
            "list-churn": ["predict", "list", "--kind", "churn", "--json", *s],
            "show-clv-json": ["predict", "show", "clv", "-n", "3", "--json", *s],
            "show-churn": ["predict", "show", "churn", "--top", "4", *s],
            "show-unknown": ["predict", "show", "p-nothing-like-it", *s],
            "export-log": ["export", "log", "--json", *j],
            "bad-date": ["predict", "clv", "--as-of", "2026-13-01", *e],
            "churn-late": ["predict", "churn", "--as-of", "2030-01-01", "-p", str(paths["early"])],
        },
        {
            "clv-late": ["predict", "clv", "--as-of", "2030-01-01", *j],
            "clv-backfill": ["predict", "clv", "--as-of", "2026-09-01", "-p", str(paths["early"])],
        },
    ]  # fmt: skip
    out: dict[str, Any] = {"paths": paths}
    for i, batch in enumerate(rounds):
        out |= _segmint(work / str(i), batch)
    return out


def _ok(result: dict[str, Any]) -> str:
    assert result["exit"] == 0, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"]
    return str(result["stdout"])


def _refused(result: dict[str, Any], code: int, *phrases: str) -> None:
    """Exit ``code`` with one ``error:`` message holding every phrase, no traceback."""
    assert result["exit"] == code, (result["stdout"], result["stderr"])
    text = " ".join(result["stderr"].split())
    assert text.startswith("error: ") and "Traceback" not in text, text
    for phrase in phrases:
        assert phrase in text, text


def test_clv_prints_the_run_its_fits_the_holdout_check_and_the_value(
    ran: dict[str, Any], shop: Path
) -> None:
    out = _ok(ran["clv"])
    run_id = out.split("clv run ", 1)[1].split(":", 1)[0]
    with segmint.open_project(shop) as p:
        run = p.prediction_run(run_id)
    assert run.kind == "clv" and run.params["model"] == "bgnbd"
    assert "purchase model: BG/NBD (Fader, Hardie & Lee 2005)" in out
    assert "spend model: Gamma-Gamma" in out
    fit = run.metrics["purchase_fit"]
    for name in ("r", "alpha", "a", "b"):  # each parameter with its interval
        low, high = fit["intervals"][name]
        assert low < fit["params"][name] < high
        assert any(line.split()[1:2] == [name] for line in out.splitlines()), name
    assert "holdout check: fitted on orders before" in out and "7+" in out
    assert "holdout total:" in out and "correlation" in out
    # the revenue side: ten rows, the top tenth first, and the stored totals
    v = run.details["holdout"]["value"]
    flat = " ".join(out.split())  # the table's title and the line wrap at the terminal's width
    assert "revenue in the holdout, by tenth of predicted revenue" in flat
    assert f"holdout revenue: {v['total_actual']:,.0f} EUR made" in flat
    assert f"the top tenth by prediction made {v['top_group_share']:.0%} of it" in flat
    total = run.scores["clv"].sum()
    assert f"total {total:,.0f} EUR" in out
    assert "the top 10% of customers hold" in out


def test_clv_json_is_valid_json_with_the_overrides_applied(ran: dict[str, Any]) -> None:
    doc = _strict_json(_ok(ran["clv-json"]))
    assert doc["kind"] == "clv" and doc["params"]["model"] == "mbgnbd"
    assert doc["params"]["horizon_days"] == 180
    assert set(doc["metrics"]["purchase_fit"]["params"]) == {"r", "alpha", "a", "b"}
    rows = doc["details"]["holdout"]["by_calibration_purchases"]
    assert [r["purchases"] for r in rows][:2] == ["0", "1"] and rows[-1]["purchases"] == "7+"
    assert sum(r["n"] for r in rows) == doc["details"]["holdout"]["n_customers"]
    # the summary agrees with the stored scores, computed independently here
    with segmint.open_project(ran["paths"]["early"]) as p:
        clv = p.store.query(
            "SELECT clv FROM predictions WHERE run_id = ? ORDER BY clv DESC", [doc["run_id"]]
        )["clv"]
    assert len(clv) == doc["n_users"] == doc["summary"]["n_customers"]
    assert doc["summary"]["clv_total"] == pytest.approx(clv.sum())
    top = clv.iloc[: -(-len(clv) // 10)].sum() / clv.sum()
    assert doc["summary"]["top_decile_share"] == pytest.approx(top)
    assert 0.1 < top < 1


def test_list_and_show_read_the_stored_runs(ran: dict[str, Any], shop: Path) -> None:
    runs = _strict_json(_ok(ran["list-json"]))
    assert [r["kind"] for r in runs] == ["churn", "clv"]  # newest first
    assert runs[0]["as_of"].startswith("2026-10-01") and runs[0]["n_users"] > 0
    assert [r["run_id"] for r in _strict_json(_ok(ran["list-churn"]))] == [runs[0]["run_id"]]
    table = _ok(ran["list"])
    assert all(r["run_id"] in table for r in runs)
    shown = _strict_json(_ok(ran["show-clv-json"]))
    assert shown["run_id"] == runs[1]["run_id"]  # "clv": the latest clv run
    top = shown["top"]
    assert len(top) == 3 and set(top[0]) == {"user_id", *VALUE_COLUMNS["clv"]}
    assert [t["clv"] for t in top] == sorted((t["clv"] for t in top), reverse=True)
    with segmint.open_project(shop) as p:
        best = p.store.scalar(
            "SELECT max(clv) FROM predictions WHERE run_id = ?", [shown["run_id"]]
        )
    assert top[0]["clv"] == pytest.approx(best)
    churn = " ".join(_ok(ran["show-churn"]).split())
    assert f"churn run {runs[0]['run_id']}" in churn and "top 4 customers by churn risk" in churn


def test_an_unknown_run_and_an_unknown_kind_are_exit_2(ran: dict[str, Any]) -> None:
    _refused(
        ran["show-unknown"], 2, "no prediction run 'p-nothing-like-it'", "segmint predict list"
    )
    _refused(ran["bad-kind"], 2, "no kind of prediction 'ltv'; kinds: clv, churn")
    _refused(ran["bad-model"], 2, "predict.model:", "'bgnbd' or 'mbgnbd'", "got 'pareto'")
    _refused(ran["bad-days"], 2, "predict.churn_days:", "got 3")


def test_a_project_without_orders_says_what_to_do(ran: dict[str, Any]) -> None:
    _refused(ran["no-orders"], 2, "no completed order before", "load orders")
    _refused(ran["no-repeat"], 2, "none of the 2 customers bought on two different days")
    _refused(ran["empty-show"], 2, "no prediction run yet", "segmint predict clv")
    assert "no prediction runs in the store yet: `segmint predict clv`" in " ".join(
        _ok(ran["empty-list"]).split()
    )
    assert _strict_json(_ok(ran["empty-list-json"])) == []


def test_churn_compares_the_model_with_p_alive(ran: dict[str, Any]) -> None:
    doc = _strict_json(_ok(ran["churn-json"]))
    assert doc["kind"] == "churn"
    auc = doc["metrics"]["auc"]
    assert 0.5 < auc["model"] <= 1 and 0 <= auc["baseline_p_alive"] <= 1
    assert auc["model_low"] <= auc["model"] <= auc["model_high"]
    assert doc["details"]["calibration"]
    with segmint.open_project(ran["paths"]["json"]) as p:
        risk = p.store.query(
            "SELECT churn_risk FROM predictions WHERE run_id = ?", [doc["run_id"]]
        )["churn_risk"]
    assert len(risk) == doc["n_users"] and risk.between(0, 1).all()
    text = _ok(ran["churn"])
    assert "AUC on the later holdout: model" in text
    assert "vs BG/NBD: 1 − P(alive)" in text and "P(no purchase in 90 days)" in text
    assert "as of 2026-10-01" in text and "calibration on the holdout" in text


def test_churn_on_too_short_a_history_is_refused(ran: dict[str, Any]) -> None:
    # the demo's orders start in November 2024: not two label windows before March 2025
    _refused(ran["churn-early"], 2, "2025-03-01")


def test_an_as_of_date_past_the_orders_or_not_a_date_is_refused_with_its_reason(
    ran: dict[str, Any],
) -> None:
    # the option the user typed is named (it said features.as_of, a key of segmint.yaml)
    _refused(ran["bad-date"], 2, "--as-of: '2026-13-01' is not 'latest', 'today' or a YYYY-MM-DD")
    # years after the last order nobody can be seen staying: said so, not "2000 of 2,000
    # customers churned" at some cut-off
    _refused(ran["churn-late"], 2, "the orders end on 2026-10-31", "2030-01-01", "--as-of latest")
    _refused(ran["clv-late"], 2, "the orders end on 2026-10-31", "2030-01-01", "--as-of latest")


def test_a_run_at_an_earlier_date_than_the_latest_says_it_does_not_replace_it(
    ran: dict[str, Any],
) -> None:
    text = " ".join(_ok(ran["clv-backfill"]).split())
    assert "as of 2026-09-01" in text
    assert (
        "not the latest clv run: profiles, the report, the decision endpoint and rules keep "
        "using p-"
    ) in text and "as of 2026-11-01" in text
    assert "note:" not in " ".join(_ok(ran["clv"]).split())  # the latest one: no note


def test_export_writes_the_scores_and_logs_the_export(ran: dict[str, Any]) -> None:
    paths = _strict_json(_ok(ran["export"]))["paths"]
    frame = pd.read_parquet(paths[0])
    assert list(frame.columns) == ["user_id", *VALUE_COLUMNS["churn"]]
    log = _strict_json(_ok(ran["export-log"]))
    entry = next(e for e in log if e["kind"] == "predictions")
    assert entry["path"] == str(Path(paths[0]).resolve()) and entry["n_rows"] == len(frame)
    assert entry["run_id"] == _strict_json(_ok(ran["churn-json"]))["run_id"]


def test_predictions_hold_each_users_latest_values(ran: dict[str, Any], shop: Path) -> None:
    with segmint.open_project(shop) as p:
        latest = p.predictions()
        clv, churn = p.prediction_run("clv"), p.prediction_run("churn")
    assert latest["user_id"].is_unique
    assert set(latest["user_id"]) == set(clv.scores["user_id"]) | set(churn.scores["user_id"])
    merged = latest.merge(clv.scores, on="user_id", suffixes=("", "_run"))
    assert (merged["clv"] - merged["clv_run"]).abs().max() < 1e-9
    merged = latest.merge(churn.scores, on="user_id", suffixes=("", "_run"))
    assert (merged["churn_risk"] - merged["churn_risk_run"]).abs().max() < 1e-9


def test_a_scheduled_predict_job_stores_a_run(shop: Path, tmp_path: Path) -> None:
    from segmint.serve import JobScheduler

    root = tmp_path / "shop"
    shutil.copytree(shop, root, ignore=shutil.ignore_patterns("*.wal"))
    config = yaml.safe_load((root / "segmint.yaml").read_text(encoding="utf-8"))
    config["schedule"] = {
        "value": {"cron": "0 5 * * *", "task": "predict", "args": {"kind": "clv"}}
    }
    (root / "segmint.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    with segmint.open_project(root) as p:
        before = set(p.prediction_runs("clv")["run_id"])
        run = JobScheduler(p).run("value")
        assert run.status == "ok", run.error
        assert run.detail["kind"] == "clv" and run.detail["run_id"] not in before
        stored = p.prediction_run(run.detail["run_id"])
        assert run.detail["users"] == stored.n_users > 0


def test_the_python_examples_of_docs_predict_run(
    shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    doc = (ROOT / "docs" / "predict.md").read_text(encoding="utf-8")
    code = "\n".join(re.findall(r"^```python\n(.*?)^```$", doc, re.S | re.M))
    root = tmp_path / "myshop"
    shutil.copytree(shop, root, ignore=shutil.ignore_patterns("*.wal"))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/predict.md", "exec"), namespace)  # noqa: S102
    assert namespace["short"].params["model"] == "mbgnbd"
    assert namespace["churn"].params["churn_days"] == 60
    assert (tmp_path / "churn.parquet").is_file()
    assert len(namespace["value"]) == len(namespace["summary"])
