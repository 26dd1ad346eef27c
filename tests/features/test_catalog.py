"""Built-in features on the tiny store (tests/features/conftest.py), computed by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pandas as pd
import pytest

import segmint.features
from segmint.errors import ConfigError, NotFoundError
from segmint.features import (
    CATALOG,
    FeatureRun,
    category_shares,
    compute_features,
    default_as_of,
    feature_sql,
    load_features,
)
from segmint.store import Store

AS_OF = datetime(2024, 7, 1, tzinfo=UTC)


@pytest.fixture()
def features(tiny_store: Store) -> pd.DataFrame:
    return compute_features(tiny_store, as_of=AS_OF).data.set_index("user_id")


def test_public_api_is_exactly_the_documented_names() -> None:
    assert sorted(segmint.features.__all__) == [
        "ALLOWED_FUNCTIONS",
        "CATALOG",
        "CustomFeature",
        "FeatureRun",
        "FeatureSpec",
        "PERSONAL_COLUMNS",
        "TRAIT_COLUMNS",
        "UNKNOWN_CATEGORY",
        "category_shares",
        "check_expression",
        "compute_features",
        "default_as_of",
        "feature_sql",
        "features_as_of",
        "load_features",
    ]


def test_shared_names_of_the_feature_layer() -> None:
    from segmint._time import to_utc
    from segmint.store import TABLES

    personal = {c.name for t in TABLES.values() for c in t.columns if c.pii}
    assert set(segmint.features.PERSONAL_COLUMNS) == personal
    assert "email" in segmint.features.PERSONAL_COLUMNS
    assert segmint.features.TRAIT_COLUMNS == ("traits",)
    assert segmint.features.UNKNOWN_CATEGORY == "unknown"
    assert to_utc(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=UTC)
    assert to_utc(datetime(2026, 1, 2, 3)) == datetime(2026, 1, 2, 3, tzinfo=UTC)


def test_catalog_lists_every_column_of_the_sql_with_its_type() -> None:
    con = duckdb.connect()
    from segmint.store import TABLES

    for t in TABLES.values():
        con.execute(f"CREATE TABLE {t.name} ({', '.join(f'{c.name} {c.type}' for c in t.columns)})")
    described = con.execute(f"DESCRIBE {feature_sql(AS_OF)}").fetchall()
    got = {row[0]: row[1] for row in described}
    assert list(got) == ["user_id", *CATALOG]
    for name, spec in CATALOG.items():
        assert got[name] == spec.type, name
        assert spec.description and "\n" not in spec.description


def test_one_row_per_user_created_before_as_of(features: pd.DataFrame) -> None:
    # u4 signed up exactly at the as-of instant: excluded; u5 has no sign-up date: kept.
    assert list(features.index) == ["u1", "u2", "u3", "u5"]


def test_rfm_of_a_repeat_buyer(features: pd.DataFrame) -> None:
    u1 = features.loc["u1"]
    # completed before as-of: o1 100, o8 20, o2 60, o3 40 (o5 at the as-of instant is out)
    assert u1["frequency"] == 4
    assert u1["monetary"] == pytest.approx(220.0)
    assert u1["avg_order_value"] == pytest.approx(55.0)
    assert u1["recency_days"] == 6  # 2024-06-25 -> 2024-07-01
    # 2024-03-01 10:00 -> 2024-06-25 18:00 = 116 days 8 hours, over 3 gaps
    assert u1["mean_days_between_orders"] == pytest.approx((116 + 8 / 24) / 3)


def test_tenure_counts_calendar_days_to_as_of(features: pd.DataFrame) -> None:
    assert features.loc["u1", "tenure_days"] == 182  # 2024 is a leap year
    assert features.loc["u2", "tenure_days"] == 16
    assert features.loc["u3", "tenure_days"] == 11
    assert pd.isna(features.loc["u5", "tenure_days"])


def test_windows_count_completed_orders_before_as_of(features: pd.DataFrame) -> None:
    u1 = features.loc["u1"]
    assert (u1["orders_30d"], u1["orders_90d"], u1["orders_365d"]) == (2, 3, 4)
    assert u1["spend_30d"] == pytest.approx(100.0)
    assert u1["spend_90d"] == pytest.approx(120.0)
    assert u1["spend_365d"] == pytest.approx(220.0)


def test_refund_rate_and_discount_share(features: pd.DataFrame) -> None:
    assert features.loc["u1", "refund_rate"] == pytest.approx(1 / 5)
    assert features.loc["u2", "refund_rate"] == pytest.approx(0.0)  # one cancelled, none refunded
    assert features.loc["u1", "discount_share"] == pytest.approx(20 / 240)
    assert features.loc["u2", "discount_share"] == pytest.approx(5 / 30)


def test_single_order_buyer(features: pd.DataFrame) -> None:
    u2 = features.loc["u2"]
    assert (u2["frequency"], u2["recency_days"]) == (1, 1)
    assert u2["monetary"] == pytest.approx(25.0)
    assert pd.isna(u2["mean_days_between_orders"])


def test_users_without_orders_get_zero_frequency_and_null_recency(
    features: pd.DataFrame,
) -> None:
    u3 = features.loc["u3"]
    assert u3["frequency"] == 0
    assert u3["monetary"] == 0.0
    assert pd.isna(u3["recency_days"])
    assert pd.isna(u3["avg_order_value"])
    assert pd.isna(u3["refund_rate"])
    assert pd.isna(u3["last_active_days"])


def test_activity_and_sessions(features: pd.DataFrame) -> None:
    u1 = features.loc["u1"]
    assert u1["events_7d"] == 4  # e1-e4 on 06-30
    assert u1["events_30d"] == 5  # + e5 on 06-20
    # e5 | e1 e2 (20 min) e3 (exactly 30 min: same session) | e4 (31 min: new session)
    assert u1["sessions_30d"] == 3
    assert u1["shares_likes_90d"] == 1  # the like of 03-01 is older than 90 days
    assert u1["last_active_days"] == 1  # event on 06-30
    u2 = features.loc["u2"]
    assert (u2["events_7d"], u2["events_30d"], u2["sessions_30d"]) == (1, 1, 1)
    assert features.loc["u3", "sessions_30d"] == 0


def test_channel_mix(features: pd.DataFrame) -> None:
    assert features.loc["u1", "offline_share"] == pytest.approx(1 / 4)
    assert features.loc["u1", "app_share"] == pytest.approx(2 / 4)
    assert features.loc["u2", "offline_share"] == pytest.approx(0.0)
    assert pd.isna(features.loc["u2", "app_share"])  # only an email event


def test_favourite_category_by_item_spend(features: pd.DataFrame) -> None:
    # u1: books 2*10, toys 4*5 + 2*5, no category 1*7 (unit price falls back to the item)
    assert features.loc["u1", "favourite_category"] == "toys"
    assert features.loc["u1", "favourite_category_share"] == pytest.approx(30 / 57)
    # u2: books 10, toys 10 -> a tie goes to the first name
    assert features.loc["u2", "favourite_category"] == "books"
    assert features.loc["u2", "favourite_category_share"] == pytest.approx(0.5)
    assert pd.isna(features.loc["u3", "favourite_category"])


def test_user_columns(features: pd.DataFrame) -> None:
    assert features.loc["u1", ["age", "gender", "country", "city"]].tolist() == [
        30,
        "f",
        "DE",
        "Berlin",
    ]


def test_category_shares_long_form(tiny_store: Store) -> None:
    shares = category_shares(tiny_store, as_of=AS_OF)
    assert list(shares.columns) == ["user_id", "category", "spend", "share"]
    u1 = shares[shares.user_id == "u1"]
    assert u1.category.tolist() == ["toys", "books", "unknown"]
    assert u1.spend.tolist() == pytest.approx([30.0, 20.0, 7.0])
    assert u1.share.tolist() == pytest.approx([30 / 57, 20 / 57, 7 / 57])
    assert set(shares.user_id) == {"u1", "u2"}


def test_earlier_as_of_sees_only_earlier_data(tiny_store: Store) -> None:
    frame = compute_features(tiny_store, as_of=date(2024, 6, 26)).data.set_index("user_id")
    assert list(frame.index) == ["u1", "u2", "u3", "u5"]
    u1 = frame.loc["u1"]
    assert (u1["frequency"], u1["recency_days"]) == (4, 1)
    assert u1["refund_rate"] == pytest.approx(0.0)  # the refund came on 06-26 09:00
    assert u1["events_30d"] == 1  # only the share of 06-20
    assert frame.loc["u2", "frequency"] == 0  # its order came on 06-30
    assert frame.loc["u2", "tenure_days"] == 11


def test_default_as_of_is_the_day_after_the_latest_order_or_event(tiny_store: Store) -> None:
    assert default_as_of(tiny_store) == datetime(2024, 7, 2, tzinfo=UTC)


def test_default_as_of_needs_data(tmp_path) -> None:
    from segmint.store import open_store

    with (
        open_store(str(tmp_path / "empty.duckdb")) as store,
        pytest.raises(NotFoundError, match="no default as-of"),
    ):
        default_as_of(store)


def test_runs_are_stored_and_loaded(tiny_store: Store) -> None:
    first = compute_features(tiny_store, as_of=AS_OF, run_id="f-1")
    second = compute_features(tiny_store, as_of=date(2024, 6, 26), run_id="f-2")
    assert isinstance(first, FeatureRun)
    assert (first.n_users, first.as_of, first.features) == (4, AS_OF, tuple(CATALOG))
    pd.testing.assert_frame_equal(load_features(tiny_store), second.frame())
    pd.testing.assert_frame_equal(load_features(tiny_store, "f-1"), first.data)
    runs = tiny_store.query("SELECT run_id, n_users, features FROM feature_runs ORDER BY 1")
    assert runs.run_id.tolist() == ["f-1", "f-2"]
    assert tiny_store.count("features") == 8


def test_generated_run_ids_sort_by_time(tiny_store: Store) -> None:
    run = compute_features(tiny_store, as_of=AS_OF)
    assert run.run_id.startswith("f-2") and len(run.run_id) == len("f-20261126T120000-ab12cd")


def test_a_taken_run_id_is_refused_and_nothing_is_written(tiny_store: Store) -> None:
    compute_features(tiny_store, as_of=AS_OF, run_id="f-1")
    with pytest.raises(ConfigError, match="already exists"):
        compute_features(tiny_store, as_of=AS_OF, run_id="f-1")
    assert tiny_store.count("features") == 4


def test_load_features_without_runs(tiny_store: Store) -> None:
    with pytest.raises(NotFoundError, match="no feature runs"):
        load_features(tiny_store)
    compute_features(tiny_store, as_of=AS_OF, run_id="f-1")
    with pytest.raises(NotFoundError, match="'f-9' not found"):
        load_features(tiny_store, "f-9")


def test_unknown_dialect_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown SQL dialect 'oracle'"):
        feature_sql(AS_OF, dialect="oracle")
