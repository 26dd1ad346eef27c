"""``segmint recommend evaluate`` with --cut, --test-days, --repurchases and --binary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import make_project
from tests.recommend.conftest import fill_tiny_shop
from typer.testing import CliRunner

from segmint.cli import app
from segmint.recommend import load_run_record
from segmint.store import open_store

runner = CliRunner()


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project on the tiny shop, comparing popularity only, k = 3."""
    make_project(tmp_path, extra={"recommend": {"models": ["popularity"], "k": 3}})
    store = fill_tiny_shop(open_store(str(tmp_path / "store.duckdb")))
    store.execute(  # u3 buys A1 again on June 9 (first bought on June 3)
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        "('o9', 'u3', CAST('2025-06-09 12:00:00+00' AS TIMESTAMPTZ), 1.0, 'completed')"
    )
    store.execute(
        "INSERT INTO order_items (order_id, line, item_id, quantity, unit_price) "
        "VALUES ('o9', 1, 'A1', 1, 1.0)"
    )
    store.close()
    return tmp_path


def _evaluate(project: Path, *args: str) -> dict[str, float]:
    res = runner.invoke(app, ["recommend", "evaluate", "-p", str(project), "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["popularity"]


def test_cut_and_test_days_choose_the_split(project: Path) -> None:
    # train before June 6; test June 6-8: u1 buys C1, third on their list (see test_protocol)
    row = _evaluate(project, "--cut", "2025-06-06", "--test-days", "3")
    assert row["recall@3"] == pytest.approx(1.0)
    assert row["ndcg@3"] == pytest.approx(0.5)


def test_repurchases_make_a_rebought_item_a_hit(project: Path) -> None:
    split = ["--cut", "2025-06-06", "--test-days", "5"]
    assert _evaluate(project, *split)["hit_rate@3"] == pytest.approx(1.0)  # u1 only
    # u3's A1 (first on everyone's list) now counts; u1's C1 is pushed out by A1 A2 B1
    assert _evaluate(project, *split, "--repurchases")["hit_rate@3"] == pytest.approx(0.5)


def test_binary_is_recorded_in_the_run(project: Path) -> None:
    _evaluate(project, "--cut", "2025-06-06", "--test-days", "3", "--binary")
    store = open_store(str(project / "store.duckdb"))
    try:
        run = load_run_record(store, kind="evaluation")
    finally:
        store.close()
    assert run.params["interactions"]["binary"] is True


def test_a_bad_cut_is_a_config_error(project: Path) -> None:
    res = runner.invoke(app, ["recommend", "evaluate", "-p", str(project), "--cut", "June"])
    assert res.exit_code == 2
    assert "YYYY-MM-DD" in res.output


def test_zero_test_days_is_refused(project: Path) -> None:
    res = runner.invoke(
        app,
        ["recommend", "evaluate", "-p", str(project), "--cut", "2025-06-06", "--test-days", "0"],
    )
    assert res.exit_code == 2
