"""Rule segmentations against independent pandas computations and hand-made cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmint.config import LifecycleSegmentation, RulesSegmentation, ValueTiersSegmentation
from segmint.errors import ConfigError
from segmint.segments._rules import (
    RFM_GRID,
    RFM_SEGMENTS,
    custom_rules_sql,
    lifecycle_sql,
    rfm_sql,
    run_rules,
    run_sql,
    value_tiers_sql,
)


@pytest.fixture()
def features() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 3_000
    freq = rng.poisson(1.2, n) * rng.integers(0, 2, n)  # many zeros and many ties
    return pd.DataFrame(
        {
            "user_id": [f"u{i:05d}" for i in range(n)],
            "recency_days": np.where(freq > 0, rng.integers(0, 700, n), np.nan),
            "frequency": freq,
            "monetary": np.where(freq > 0, np.round(rng.lognormal(4, 1.5, n) * freq, 2), 0.0),
            "tenure_days": rng.integers(0, 800, n),
            "last_active_days": np.where(rng.random(n) < 0.9, rng.integers(0, 800, n), np.nan),
        }
    )


def _pandas_rfm(f: pd.DataFrame) -> pd.Series:
    buyers = f[f["frequency"] > 0]
    n = len(buyers)

    def score(s: pd.Series, ascending: bool) -> pd.Series:
        r = s.rank(method="min", ascending=ascending)
        return (1 + np.floor(5 * (r - 1) / n)).astype(int)

    r = score(buyers["recency_days"], ascending=False)
    fs = score(buyers["frequency"], ascending=True)
    m = score(buyers["monetary"], ascending=True)
    fm = np.floor((fs + m + 1) / 2).astype(int)
    seg = pd.Series("No Purchase", index=f.index)
    seg.loc[buyers.index] = [RFM_GRID[a][b - 1] for a, b in zip(r, fm, strict=True)]
    return seg


def test_rfm_matches_an_independent_pandas_computation(features: pd.DataFrame) -> None:
    got = run_sql(rfm_sql(), features).set_index("user_id")["segment"]
    want = _pandas_rfm(features).set_axis(features["user_id"])
    assert got.sort_index().tolist() == want.sort_index().tolist()
    assert got.value_counts().to_dict() == want.value_counts().to_dict()


def test_rfm_ties_share_a_score(features: pd.DataFrame) -> None:
    out = run_sql(rfm_sql(), features).merge(features, on="user_id")
    buyers = out[out["frequency"] > 0]
    assert buyers.groupby("frequency")["f_score"].nunique().max() == 1
    assert set(buyers["r_score"]) <= {1, 2, 3, 4, 5}
    assert (out.loc[out["frequency"] == 0, "segment"] == "No Purchase").all()


def test_rfm_grid_covers_the_eleven_standard_segments() -> None:
    assert {name for row in RFM_GRID.values() for name in row} == set(RFM_SEGMENTS)
    assert len(RFM_SEGMENTS) == 11


def test_lifecycle_matches_pandas(features: pd.DataFrame) -> None:
    spec = LifecycleSegmentation(type="lifecycle", new_days=30, active_days=90, churned_days=365)
    got = run_sql(lifecycle_sql(spec), features).set_index("user_id")["segment"]
    f = features.set_index("user_id")
    want = np.select(
        [
            f["tenure_days"] <= 30,
            f["last_active_days"] <= 90,
            f["last_active_days"].isna() | (f["last_active_days"] > 365),
        ],
        ["new", "active", "churned"],
        default="silent",
    )
    assert got.loc[f.index].tolist() == list(want)


def test_lifecycle_rejects_inconsistent_windows() -> None:
    spec = LifecycleSegmentation(type="lifecycle", new_days=30, active_days=400, churned_days=365)
    with pytest.raises(ConfigError, match="new_days <= active_days < churned_days"):
        lifecycle_sql(spec)


def test_value_tiers_cut_on_buyer_quantiles(features: pd.DataFrame) -> None:
    spec = ValueTiersSegmentation(type="value_tiers", feature="monetary", high=0.8, potential=0.5)
    got = run_sql(value_tiers_sql(spec), features).merge(features, on="user_id")
    buyers = features.loc[features["monetary"] > 0, "monetary"]
    hi, mid = buyers.quantile(0.8), buyers.quantile(0.5)
    assert (got["segment"] == "high-value").sum() == (buyers >= hi).sum()
    assert (got["segment"] == "potential").sum() == ((buyers >= mid) & (buyers < hi)).sum()
    assert (got.loc[got["monetary"] == 0, "segment"] == "general").all()


def test_custom_rules_first_match_wins_and_everyone_lands_once(features: pd.DataFrame) -> None:
    spec = RulesSegmentation.model_validate(
        {
            "type": "rules",
            "rules": [
                {"segment": "VIP", "when": "monetary > 500"},
                {"segment": "Regular", "when": "frequency >= 1"},
            ],
            "default": "Prospect",
        }
    )
    got = run_sql(custom_rules_sql(spec, set(features.columns), name="t"), features)
    assert len(got) == len(features) and got["user_id"].is_unique
    merged = got.merge(features, on="user_id")
    assert (merged.loc[merged["monetary"] > 500, "segment"] == "VIP").all()
    reg = merged[(merged["monetary"] <= 500) & (merged["frequency"] >= 1)]
    assert (reg["segment"] == "Regular").all()
    assert (merged.loc[merged["frequency"] == 0, "segment"] == "Prospect").all()


@pytest.mark.parametrize(
    "condition",
    [
        "monetary > 1; DROP TABLE users",
        "(SELECT max(monetary) FROM features) > 0",
        "read_csv('/etc/passwd') IS NOT NULL",
        "unknown_column > 3",
    ],
)
def test_custom_rules_refuse_unsafe_conditions(features: pd.DataFrame, condition: str) -> None:
    spec = RulesSegmentation.model_validate(
        {"type": "rules", "rules": [{"segment": "X", "when": condition}]}
    )
    with pytest.raises(ConfigError):
        custom_rules_sql(spec, set(features.columns), name="t")


@pytest.mark.parametrize("column", ["email", "phone", "birthday", "traits"])
def test_custom_rules_refuse_personal_data(column: str) -> None:
    spec = RulesSegmentation.model_validate(
        {"type": "rules", "rules": [{"segment": "X", "when": f"{column} IS NOT NULL"}]}
    )
    with pytest.raises(ConfigError, match=rf"column {column} \(personal data.*rule 1 \('X'\)"):
        custom_rules_sql(spec, {"monetary", column}, name="t")


@pytest.mark.parametrize(
    ("condition", "engine"),
    [
        ("CAST(gender AS INT) > 1", "Could not convert string"),
        ("CAST(monetary * 1000 AS SMALLINT) > 0", "out of range"),
        ("gender > 5", "Cannot compare values"),
    ],
)
def test_a_rule_failing_on_a_value_is_named_with_its_condition(condition: str, engine: str) -> None:
    # issue 15: a rule whose CAST fails when run ended in a DuckDB traceback
    frame = pd.DataFrame({"user_id": ["u1", "u2"], "monetary": [40.0, 90.0], "gender": ["f", "m"]})
    spec = RulesSegmentation.model_validate(
        {
            "type": "rules",
            "rules": [
                {"segment": "Fine", "when": "monetary > 50"},
                {"segment": "Broken", "when": condition},
            ],
        }
    )
    with pytest.raises(
        ConfigError,
        match=rf"rule 2 \('Broken'\) of segmentation 'vip' failed when run: .*{engine}.*"
        r"the condition was",
    ):
        run_rules(spec, frame, name="vip")


def test_run_rules_assigns_like_the_sql(features: pd.DataFrame) -> None:
    spec = RulesSegmentation.model_validate(
        {"type": "rules", "rules": [{"segment": "VIP", "when": "monetary > 500"}]}
    )
    got = run_rules(spec, features, name="t")
    want = run_sql(custom_rules_sql(spec, set(features.columns), name="t"), features)
    pd.testing.assert_frame_equal(got, want)


def test_run_sql_is_public_for_other_layers(features: pd.DataFrame) -> None:
    import segmint.segments

    spec = LifecycleSegmentation(type="lifecycle")
    public = segmint.segments.run_sql(lifecycle_sql(spec), features)
    assert public.equals(run_sql(lifecycle_sql(spec), features))
    assert set(public.columns) == {"user_id", "segment"}
