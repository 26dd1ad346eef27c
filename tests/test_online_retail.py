"""The real UCI Online Retail II export, ingested through the example's column map."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import online_retail_project

import segmint

N_LINES = 525_461


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> segmint.Project:
    p = online_retail_project(tmp_path_factory.mktemp("retail"), shared_data)
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
