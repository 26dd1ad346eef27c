"""The demo through the real ingestion path: clean data loads whole, dirty data's known
defects are found exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import segmint
from segmint.demo import generate_demo


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> tuple[segmint.Project, dict]:
    out = tmp_path_factory.mktemp("dirty")
    generate_demo(out, n_users=3_000, seed=11, dirty=True)
    truth = json.loads((out / "truth" / "truth.json").read_text())
    p = segmint.open_project(out)
    p.ingest()
    yield p, truth["defects"]
    p.close()


def _rejected(p: segmint.Project, source: str) -> dict[str, int]:
    q = p.store.query(
        "SELECT rule, count(*) AS n FROM quarantine WHERE source = ? GROUP BY rule", [source]
    )
    return dict(zip(q["rule"], q["n"].astype(int), strict=True))


def test_dirty_order_defects_are_found_exactly(dirty: tuple[segmint.Project, dict]) -> None:
    p, defects = dirty
    assert _rejected(p, "orders") == {
        "negative_amount": defects["negative_amount"],
        "exact_duplicate": defects["duplicate_order_rows"],
        "unparseable_timestamp": defects["malformed_order_ts"],
        "unknown_reference": defects["unknown_customer"],
        "absurd_amount": defects["outlier_amount"],
    }


def test_lines_of_rejected_orders_are_quarantined(dirty: tuple[segmint.Project, dict]) -> None:
    p, defects = dirty
    assert _rejected(p, "order_lines") == {
        "unknown_reference": defects["order_lines_of_rejected_orders"]
    }


def test_missing_ages_are_filled_by_the_cleaning_rule(dirty: tuple[segmint.Project, dict]) -> None:
    p, defects = dirty
    cleaning = json.loads(p.store.scalar("SELECT cleaning FROM loads WHERE source = 'customers'"))
    assert cleaning["missing"]["age"]["n_filled"] == defects["missing_age"]
    assert p.store.scalar("SELECT count(*) FROM users WHERE age IS NULL") == 0


def test_every_load_accounts_for_every_row(dirty: tuple[segmint.Project, dict]) -> None:
    p, _ = dirty
    loads = p.store.query("SELECT * FROM loads")
    assert (loads["rows_read"] == loads["rows_accepted"] + loads["rows_rejected"]).all()
    per_load = p.store.query("SELECT load_id, count(*) AS n FROM quarantine GROUP BY load_id")
    merged = loads.merge(per_load, on="load_id", how="left").fillna({"n": 0})
    assert (merged["n"] == merged["rows_rejected"]).all()


def test_clean_demo_loads_every_row(tmp_path: Path) -> None:
    generate_demo(tmp_path, n_users=1_000, seed=3)
    with segmint.open_project(tmp_path) as p:
        results = p.ingest()
        assert all(r.rows_rejected == 0 for r in results), [r.rejected_by_rule for r in results]
        assert p.store.count("users") == 1_000
        tz = p.store.scalar("SELECT min(ts) FROM orders")
        assert tz.tzinfo is not None
