"""The demo generator: determinism, shapes, planted structure, injected defects."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmint.demo import DemoSummary, generate_demo

N = 2000

DATA_FILES = (
    "exports/customers.csv",
    "exports/products.csv",
    "exports/orders.parquet",
    "exports/order_lines.parquet",
    "exports/events.jsonl.gz",
    "exports/consents.csv",
    "campaigns/spring_reactivation_2026.csv",
    "truth/personas.parquet",
    "truth/truth.json",
    "segmint.yaml",
)

TARGET_SHARES = {
    "loyal_high_spender": 0.10,
    "bargain_hunter": 0.20,
    "big_ticket_occasional": 0.10,
    "new_user": 0.12,
    "at_risk_drifting": 0.15,
    "browser": 0.18,
    "lost": 0.15,
}


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate_demo(tmp_path_factory.mktemp("clean"), n_users=N, seed=7)


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    return generate_demo(tmp_path_factory.mktemp("dirty"), n_users=N, seed=7, dirty=True)


def _events(root: Path) -> pd.DataFrame:
    with gzip.open(root / "exports/events.jsonl.gz", "rt", encoding="utf-8") as fh:
        return pd.DataFrame([json.loads(line) for line in fh])


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, clean: DemoSummary) -> None:
    again = generate_demo(tmp_path / "a", n_users=N, seed=7)
    other = generate_demo(tmp_path / "b", n_users=N, seed=8)
    first = _digests(clean.out_dir)
    assert _digests(again.out_dir) == first
    differs = _digests(other.out_dir)
    assert differs["exports/orders.parquet"] != first["exports/orders.parquet"]
    assert differs["exports/events.jsonl.gz"] != first["exports/events.jsonl.gz"]


def test_files_and_summary(clean: DemoSummary) -> None:
    root = clean.out_dir
    for rel in DATA_FILES:
        assert (root / rel).is_file(), rel
    assert set(clean.paths) == {root / rel for rel in DATA_FILES}
    assert clean.defects is None
    assert clean.config_path == root / "segmint.yaml"
    orders = pd.read_parquet(root / "exports/orders.parquet")
    assert clean.row_counts["exports/orders.parquet"] == len(orders)
    assert clean.row_counts["exports/customers.csv"] == N


def test_columns(clean: DemoSummary) -> None:
    root = clean.out_dir
    cust = pd.read_csv(root / "exports/customers.csv")
    assert list(cust.columns) == [
        "customer_id", "signup_date", "email_address", "phone_number", "date_of_birth",
        "sex", "age", "country", "city", "income", "signup_source",
    ]  # fmt: skip
    assert cust["customer_id"].is_unique
    assert cust["email_address"].is_unique
    assert set(cust["sex"]) <= {"F", "M", "X"}
    assert set(cust["income"]) <= {"low", "mid", "high"}
    # age is consistent with the birthday at `end`
    end = pd.Timestamp("2026-10-31")
    dob = pd.to_datetime(cust["date_of_birth"], format="%Y-%m-%d")
    before = (dob.dt.month > end.month) | ((dob.dt.month == end.month) & (dob.dt.day > end.day))
    assert (cust["age"] == end.year - dob.dt.year - before.astype(int)).all()
    signup = pd.to_datetime(cust["signup_date"], format="%Y-%m-%d %H:%M:%S")
    assert signup.max() <= end + pd.Timedelta(days=1)

    prod = pd.read_csv(root / "exports/products.csv")
    assert list(prod.columns) == [
        "sku", "product_name", "category", "list_price", "in_stock", "attributes",
    ]  # fmt: skip
    assert len(prod) == 2000 and prod["category"].nunique() == 20
    assert set(prod["in_stock"]) <= {"yes", "no"}
    assert {"brand", "color"} <= set(json.loads(prod["attributes"].iloc[0]))
    med = prod.groupby("category")["list_price"].median()
    assert med["jewelry"] > 5 * med["grocery"] and med["electronics"] > 5 * med["grocery"]

    orders = pd.read_parquet(root / "exports/orders.parquet")
    assert list(orders.columns) == [
        "order_no", "customer", "order_ts", "total", "currency", "sales_channel",
        "discount_amount", "state",
    ]  # fmt: skip
    assert pd.api.types.is_datetime64_dtype(orders["order_ts"])
    assert orders["order_no"].is_unique
    assert set(orders["sales_channel"]) <= {"web", "app", "store"}
    assert set(orders["state"]) == {"paid", "refunded", "cancelled"}
    assert (orders["currency"] == "EUR").all()
    assert orders["total"].max() < 20_000 and orders["total"].min() > 0
    shares = orders["state"].value_counts(normalize=True)
    assert 0.015 < shares["refunded"] < 0.05 and 0.002 < shares["cancelled"] < 0.025

    lines = pd.read_parquet(root / "exports/order_lines.parquet")
    assert list(lines.columns) == ["order_no", "line_no", "sku", "qty", "price"]
    assert (lines["qty"] >= 1).all()
    assert set(lines["sku"]) <= set(prod["sku"])

    cons = pd.read_csv(root / "exports/consents.csv")
    assert list(cons.columns) == ["customer_id", "channel", "purpose", "granted", "recorded_at"]
    assert set(cons["channel"]) == {"email", "sms", "push"}
    assert len(cons) >= 3 * N

    camp = pd.read_csv(root / "campaigns/spring_reactivation_2026.csv")
    assert list(camp.columns) == ["customer_id", "campaign", "arm", "sent_at"]
    assert 0.3 < len(camp) / N < 0.45
    assert camp["sent_at"].nunique() == 1
    assert abs((camp["arm"] == "control").mean() - 0.2) < 0.01


def test_totals_match_lines_and_customers_exist(clean: DemoSummary) -> None:
    root = clean.out_dir
    orders = pd.read_parquet(root / "exports/orders.parquet").set_index("order_no")
    lines = pd.read_parquet(root / "exports/order_lines.parquet")
    sub = (lines["qty"] * lines["price"]).groupby(lines["order_no"]).sum()
    assert set(sub.index) == set(orders.index)
    diff = (sub.reindex(orders.index) - orders["discount_amount"] - orders["total"]).abs()
    assert diff.max() <= 0.01
    # line numbers run 1..n within each order
    first = lines.groupby("order_no")["line_no"].agg(["min", "max", "size"])
    assert (first["min"] == 1).all() and (first["max"] == first["size"]).all()
    cust = pd.read_csv(root / "exports/customers.csv")
    assert set(orders["customer"]) <= set(cust["customer_id"])
    # roughly 20 orders per user
    assert 12 < len(orders) / N < 28


def test_seasonality(clean: DemoSummary) -> None:
    orders = pd.read_parquet(clean.out_dir / "exports/orders.parquet")
    ts = orders["order_ts"]
    weekend = ts.dt.day_of_week >= 5
    assert weekend.sum() / 2 > (~weekend).sum() / 5  # busier per day at weekends
    per_month = ts.dt.month.value_counts()
    assert per_month[12] > per_month[[2, 3, 4, 5, 6]].mean() * 1.2


def test_events(clean: DemoSummary) -> None:
    ev = _events(clean.out_dir)
    assert list(ev.columns) == ["id", "user", "anon", "type", "timestamp", "source", "sku", "props"]
    assert ev["id"].is_unique
    assert 8 < len(ev) / N < 25
    assert set(ev["source"]) <= {"web", "app", "store", "social", "email"}
    assert {
        "page_view", "product_view", "search", "add_to_cart", "app_open", "email_open",
        "email_click", "share", "like", "store_visit", "nps", "csat",
    } <= set(ev["type"])  # fmt: skip
    ts = pd.to_datetime(ev["timestamp"], format="%Y-%m-%dT%H:%M:%SZ")
    assert ts.notna().all()
    nps = ev.loc[ev["type"] == "nps", "props"].map(lambda p: p["score"])
    csat = ev.loc[ev["type"] == "csat", "props"].map(lambda p: p["score"])
    assert nps.between(0, 10).all() and csat.between(1, 5).all()
    surveyed = ev.loc[ev["type"].isin(["nps", "csat"]), "user"].nunique()
    assert 0.08 < surveyed / N < 0.12
    # anonymous events carry an anon id, the rest a user
    assert (ev["user"].isna() == ev["anon"].notna()).all()
    cust = pd.read_csv(clean.out_dir / "exports/customers.csv")
    assert set(ev["user"].dropna()) <= set(cust["customer_id"])


def test_personas_and_truth(clean: DemoSummary) -> None:
    root = clean.out_dir
    personas = pd.read_parquet(root / "truth/personas.parquet")
    cust = pd.read_csv(root / "exports/customers.csv")
    assert sorted(personas["customer_id"]) == sorted(cust["customer_id"])
    shares = personas["persona"].value_counts(normalize=True)
    for name, target in TARGET_SHARES.items():
        assert abs(shares[name] - target) < 0.005, name

    truth = json.loads((root / "truth/truth.json").read_text())
    assert truth["seed"] == 7 and truth["n_users"] == N and truth["defects"] is None
    assert {p["name"] for p in truth["personas"]} == set(TARGET_SHARES)
    for p in truth["personas"]:
        assert abs(sum(p["category_affinity"].values()) - 1) < 1e-3
    eff = truth["campaign"]["by_persona"]
    assert eff["at_risk_drifting"]["conversion_lift"] > eff["loyal_high_spender"]["conversion_lift"]
    assert truth["campaign"]["overall"]["incremental_revenue_per_treated_user"] > 0

    # planted behaviour: recency and order value per persona
    orders = pd.read_parquet(root / "exports/orders.parquet")
    orders = orders.merge(personas, left_on="customer", right_on="customer_id")
    end = pd.Timestamp("2026-10-31")
    sent = pd.Timestamp(truth["campaign"]["sent_at"])
    organic = ~orders["order_ts"].between(sent, sent + pd.Timedelta(days=30))
    last = orders[organic].groupby("persona")["order_ts"].max()
    assert (end - orders.groupby("customer")["order_ts"].max()).dt.days.groupby(
        orders.groupby("customer")["persona"].first()
    ).median()["at_risk_drifting"] > 100
    assert last["lost"] < end - pd.Timedelta(days=300)
    aov = orders.groupby("persona")["total"].mean()
    assert aov["big_ticket_occasional"] > aov["loyal_high_spender"] > aov["bargain_hunter"]


def test_campaign_orders_are_in_the_data(clean: DemoSummary) -> None:
    root = clean.out_dir
    camp = pd.read_csv(root / "campaigns/spring_reactivation_2026.csv")
    truth = json.loads((root / "truth/truth.json").read_text())
    sent = pd.Timestamp(truth["campaign"]["sent_at"])
    orders = pd.read_parquet(root / "exports/orders.parquet")
    win = orders[
        (orders["order_ts"] >= sent)
        & (orders["order_ts"] < sent + pd.Timedelta(days=30))
        & (orders["state"] == "paid")
    ]
    conv = camp["customer_id"].isin(set(win["customer"]))
    rate = conv.groupby(camp["arm"]).mean()
    assert rate["treatment"] > rate["control"]
    ev = _events(root)
    camp_mail = ev[ev["props"].map(lambda p: p.get("campaign") == "spring_reactivation_2026")]
    treated = set(camp.loc[camp["arm"] == "treatment", "customer_id"])
    assert len(camp_mail) > 0 and set(camp_mail["user"]) <= treated


def test_dirty_counts_match_files(dirty: DemoSummary) -> None:
    root = dirty.out_dir
    truth = json.loads((root / "truth/truth.json").read_text())
    d = truth["defects"]
    assert d == dirty.defects
    cust = pd.read_csv(root / "exports/customers.csv")
    assert int(cust["age"].isna().sum()) == d["missing_age"] > 0

    orders = pd.read_parquet(root / "exports/orders.parquet")
    assert pd.api.types.is_string_dtype(orders["order_ts"])
    assert int(orders.duplicated().sum()) == d["duplicate_order_rows"] > 0
    assert int(orders["order_no"].duplicated().sum()) == d["duplicate_order_rows"]
    uniq = orders.drop_duplicates()
    bad_ts = pd.to_datetime(uniq["order_ts"], format="%Y-%m-%d %H:%M:%S", errors="coerce").isna()
    negative = uniq["total"] < 0
    unknown = ~uniq["customer"].isin(set(cust["customer_id"]))
    outlier = uniq["total"] > 20_000
    assert int(bad_ts.sum()) == d["malformed_order_ts"] > 0
    assert int(negative.sum()) == d["negative_amount"] > 0
    assert int(unknown.sum()) == d["unknown_customer"] > 0
    assert int(outlier.sum()) == d["outlier_amount"] > 0
    # each defect on its own row
    flags = pd.concat([bad_ts, negative, unknown, outlier], axis=1).sum(axis=1)
    assert flags.max() == 1
    assert not orders[orders.duplicated(keep=False)].index.isin(uniq[flags > 0].index).any()

    lines = pd.read_parquet(root / "exports/order_lines.parquet")
    rejected = set(uniq.loc[flags > 0, "order_no"])
    assert int(lines["order_no"].isin(rejected).sum()) == d["order_lines_of_rejected_orders"]
    assert set(lines["order_no"]) == set(orders["order_no"])
    # the clean rows still match their lines
    ok = uniq[flags == 0].set_index("order_no")
    sub = (lines["qty"] * lines["price"]).groupby(lines["order_no"]).sum().reindex(ok.index)
    assert (sub - ok["discount_amount"] - ok["total"]).abs().max() <= 0.01


def test_dirty_rates(dirty: DemoSummary) -> None:
    d = dirty.defects
    assert d is not None
    n_orders = dirty.row_counts["exports/orders.parquet"] - d["duplicate_order_rows"]
    assert abs(d["missing_age"] / N - 0.03) < 0.005
    assert abs(d["negative_amount"] / n_orders - 0.002) < 0.0005
    assert abs(d["duplicate_order_rows"] / n_orders - 0.003) < 0.0005


def test_config_loads(clean: DemoSummary) -> None:
    from segmint.config import load_config

    cfg = load_config(clean.out_dir)
    assert cfg.timezone == "Europe/Berlin" and cfg.currency == "EUR"
    assert cfg.validation.max_amount == 20_000
    assert set(cfg.sources) == {
        "customers", "products", "orders", "order_lines", "events", "consents",
    }  # fmt: skip
    for src in cfg.sources.values():
        assert cfg.resolve(src.path).is_file()  # type: ignore[union-attr]
    assert cfg.sources["orders"].values["channel"]["store"] == "offline"


def test_rejects_tiny_population(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="n_users"):
        generate_demo(tmp_path, n_users=10)


def test_dirty_clean_rows_identical_to_clean_run(clean: DemoSummary, dirty: DemoSummary) -> None:
    a = pd.read_parquet(clean.out_dir / "exports/order_lines.parquet")
    b = pd.read_parquet(dirty.out_dir / "exports/order_lines.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert np.array_equal(
        pd.read_csv(clean.out_dir / "exports/customers.csv")["customer_id"],
        pd.read_csv(dirty.out_dir / "exports/customers.csv")["customer_id"],
    )
