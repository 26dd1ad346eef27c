"""The real UCI Online Retail II export, ingested through the example's column map."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import segmint

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online-retail"
N_LINES = 525_461


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> segmint.Project:
    shared = shared_data / "online_retail_II_2009_2010.parquet"
    # copy the example next to a link to the data so the store lands in tmp, not the repo
    root = tmp_path_factory.mktemp("retail")
    proj = root / "examples" / "online-retail"
    proj.mkdir(parents=True)
    shutil.copy(EXAMPLE / "segmint.yaml", proj / "segmint.yaml")
    (root.parent / "shared").mkdir(exist_ok=True)
    link = root.parent / "shared" / "data"
    if not link.exists():
        link.symlink_to(shared.parent)
    p = segmint.open_project(proj)
    p.ingest()
    yield p
    p.close()


def test_every_line_is_accounted_for(retail: segmint.Project) -> None:
    lines = retail.store.query("SELECT * FROM loads WHERE source = 'lines'").iloc[0]
    assert lines["rows_read"] == N_LINES
    assert lines["rows_accepted"] + lines["rows_rejected"] == N_LINES
    assert retail.store.count("order_items") == lines["rows_accepted"]
    by_rule = dict(
        retail.store.query(
            "SELECT rule, count(*) AS n FROM quarantine WHERE source = 'lines' GROUP BY rule"
        ).itertuples(index=False)
    )
    assert sum(by_rule.values()) == lines["rows_rejected"]
    # the 107,927 lines without a Customer ID are routed out by the source filter
    assert by_rule["filtered"] == 107_927
    assert by_rule["exact_duplicate"] > 6_000


def test_known_figures(retail: segmint.Project) -> None:
    assert retail.store.count("users") == 4_383
    first, last = retail.store.query("SELECT min(ts) AS a, max(ts) AS b FROM orders").iloc[0]
    assert str(first).startswith("2009-12-01 07:45")
    assert str(last).startswith("2010-12-09 20:01")
    # invoices with a customer become orders; anonymous ones are quarantined with a reason
    n_invoices = retail.store.query("SELECT rows_read FROM loads WHERE source = 'invoices'")
    assert int(n_invoices.iat[0, 0]) == 28_816
    assert retail.store.count("orders") == 23_587
    statuses = set(retail.store.query("SELECT DISTINCT status FROM orders")["status"])
    assert statuses == {"completed", "cancelled"}
