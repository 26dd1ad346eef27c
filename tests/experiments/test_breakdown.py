"""Breakdowns by any user attribute (issue 17, point 3): every number against scipy and
statsmodels, k arms, several variables with the family-wise adjustment, and the bad inputs
(a trait missing for some users, 500 levels, an unknown variable, a personal trait)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from typer.testing import CliRunner

import segmint
from segmint.errors import ConfigError
from segmint.experiments import breakdown_attributes, breakdown_table
from segmint.experiments._evaluate import evaluate_campaign, import_assignments
from segmint.store import Store, open_store

TOL = 1e-9
AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


# -- the table on a users frame -------------------------------------------------------------
def three_arms(n: int = 3000, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Arms 'A', 'B' and the control 'ctl'; two variables (country with a missing level,
    plan with three levels)."""
    rng = np.random.default_rng(seed)
    ids = [f"u{i}" for i in range(n)]
    country = rng.choice(["DE", "FR", "IT", "(missing)"], n, p=[0.4, 0.3, 0.2, 0.1])
    attributes = pd.DataFrame(
        {"user_id": ids, "country": country, "plan": rng.choice(["basic", "gold", "silver"], n)}
    )
    arm = rng.choice(["A", "B", "ctl"], n)
    rate = 0.12 + 0.10 * ((arm == "A") & (country == "DE"))  # a planted effect
    users = pd.DataFrame(
        {
            "user_id": ids,
            "arm": arm,
            "converted": rng.random(n) < rate,
            "revenue": rng.exponential(20.0, n) * (rng.random(n) < 0.3),
        }
    )
    return users, attributes


def _cell(users: pd.DataFrame, attributes: pd.DataFrame, variable: str, level: str, arm: str):  # type: ignore[no-untyped-def]
    m = users.merge(attributes, on="user_id")
    m = m[m[variable] == level]
    return m[m["arm"] == arm], m[m["arm"] == "ctl"]


def test_every_cell_equals_statsmodels_and_scipy() -> None:
    users, attributes = three_arms()
    table = breakdown_table(users, attributes, control="ctl", alpha=0.1)
    assert len(table) == (4 + 3) * 2  # levels x non-control arms
    assert set(table["arm"]) == {"A", "B"} and set(table["control"]) == {"ctl"}
    for row in table.itertuples(index=False):
        t, c = _cell(users, attributes, row.variable, row.level, row.arm)
        x1, n1, x0, n0 = int(t["converted"].sum()), len(t), int(c["converted"].sum()), len(c)
        assert (row.n_arm, row.n_control) == (n1, n0)
        assert row.lift == pytest.approx(x1 / n1 - x0 / n0, abs=TOL)
        lo, hi = confint_proportions_2indep(
            x1, n1, x0, n0, method="newcomb", compare="diff", alpha=0.1
        )
        assert (row.lift_lo, row.lift_hi) == pytest.approx((lo, hi), abs=TOL)
        assert row.p_value == pytest.approx(proportions_ztest([x1, x0], [n1, n0])[1], abs=TOL)
        welch = scipy.stats.ttest_ind(t["revenue"], c["revenue"], equal_var=False)
        ci = welch.confidence_interval(confidence_level=0.9)
        assert row.revenue_diff == pytest.approx(t["revenue"].mean() - c["revenue"].mean(), abs=TOL)
        assert row.revenue_p_value == pytest.approx(welch.pvalue, abs=TOL)
        assert (row.revenue_diff_lo, row.revenue_diff_hi) == pytest.approx(
            (ci.low, ci.high), abs=TOL
        )


def test_one_two_by_two_level_by_hand() -> None:
    """One level, one arm: 30/100 converted against 20/100 in the control."""
    users = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(200)],
            "arm": ["T"] * 100 + ["C"] * 100,
            "converted": [True] * 30 + [False] * 70 + [True] * 20 + [False] * 80,
            "revenue": 0.0,
        }
    )
    attributes = pd.DataFrame({"user_id": users["user_id"], "all": "everyone"})
    row = breakdown_table(users, attributes, control="C", alpha=0.05).iloc[0]
    z, p = proportions_ztest([30, 20], [100, 100])
    assert row["lift"] == pytest.approx(0.1) and row["p_value"] == pytest.approx(p, abs=TOL)
    # by hand: pooled 0.25, se = sqrt(0.25 * 0.75 * (1/100 + 1/100)) = 0.061237, z = 1.63299
    assert z == pytest.approx(0.1 / np.sqrt(0.25 * 0.75 * 0.02), abs=TOL)
    assert p == pytest.approx(2 * scipy.stats.norm.sf(1.632993), abs=1e-6)
    # one test in the family: adjusting changes nothing
    assert row["p_holm_family"] == row["p_bh_within"] == pytest.approx(p, abs=TOL)


def test_within_and_family_adjustments_equal_statsmodels() -> None:
    users, attributes = three_arms()
    table = breakdown_table(users, attributes, control="ctl", alpha=0.05)
    for prefix in ("", "revenue_"):
        p = table[f"{prefix}p_value"].to_numpy()
        assert np.isfinite(p).all()
        for method, name in (("holm", "holm"), ("fdr_bh", "bh")):
            family = multipletests(p, method=method)[1]
            assert table[f"{prefix}p_{name}_family"].to_numpy() == pytest.approx(family, abs=TOL)
            for variable in ("country", "plan"):
                rows = (table["variable"] == variable).to_numpy()
                within = multipletests(p[rows], method=method)[1]
                got = table.loc[rows, f"{prefix}p_{name}_within"].to_numpy()
                assert got == pytest.approx(within, abs=TOL)
    # the family is larger than each variable's: its Holm p-values are never smaller
    assert (table["p_holm_family"] >= table["p_holm_within"] - TOL).all()
    assert (table["p_holm_family"] > table["p_holm_within"] + TOL).any()


def test_levels_are_ordered_and_missing_comes_last() -> None:
    users, attributes = three_arms()
    table = breakdown_table(users, attributes, control="ctl", alpha=0.05)
    assert table["variable"].tolist() == ["country"] * 8 + ["plan"] * 6
    country = table[table["variable"] == "country"]["level"].tolist()[::2]
    assert country == ["DE", "FR", "IT", "(missing)"]  # largest first, missing last


def test_a_level_without_control_users_has_nan_and_leaves_the_family() -> None:
    users, attributes = three_arms()
    lonely = users["arm"] != "ctl"
    attributes.loc[lonely.to_numpy() & (attributes["plan"] == "gold").to_numpy(), "plan"] = "vip"
    attributes.loc[attributes.index[:1], "plan"] = "vip"  # u0: make sure the level exists
    users.loc[0, "arm"] = "A"
    table = breakdown_table(users, attributes, control="ctl", alpha=0.05)
    vip = table[table["level"] == "vip"]
    assert (vip["n_control"] == 0).all() and vip["p_value"].isna().all()
    assert vip[["lift", "lift_lo", "p_holm_family", "revenue_p_bh_within"]].isna().all().all()
    p = table["p_value"].to_numpy()
    keep = ~np.isnan(p)
    expected = multipletests(p[keep], method="holm")[1]
    assert table.loc[keep, "p_holm_family"].to_numpy() == pytest.approx(expected, abs=TOL)


def test_an_unknown_control_is_a_clear_error() -> None:
    users, attributes = three_arms()
    with pytest.raises(ConfigError, match="control arm 'control' is not among the arms"):
        breakdown_table(users, attributes, control="control")


# -- attributes from a store ----------------------------------------------------------------
N_USERS = 600


def build_store(url: str) -> Store:
    """600 users: country (some NULL), age (some NULL), 500 cities, traits with a zip code
    for two users in three (none for the rest, NULL traits for some)."""
    store = open_store(url)
    rows = []
    for i in range(N_USERS):
        country = "NULL" if i % 10 == 0 else f"'{['DE', 'FR', 'IT'][i % 3]}'"
        age = "NULL" if i % 7 == 0 else str(16 + i % 60)
        traits = (
            "NULL"
            if i % 5 == 0
            else f'\'{{"zip_code": "{10000 + i % 4}", "first_name": "X"}}\''
            if i % 3
            else '\'{"plan": "gold"}\''
        )
        rows.append(
            f"('u{i}', CAST('2025-01-01 00:00:00+00' AS TIMESTAMPTZ), {country}, {age}, "
            f"'city{i % 500}', {traits})"
        )
    store.execute(
        "INSERT INTO users (user_id, created_at, country, age, city, traits) VALUES "
        + ", ".join(rows)
    )
    return store


@pytest.fixture()
def shop(tmp_path: Path) -> Iterator[Store]:
    store = build_store(str(tmp_path / "b.duckdb"))
    yield store
    store.close()


def _expected_zip(i: int) -> str:
    return "(missing)" if i % 5 == 0 or i % 3 == 0 else str(10000 + i % 4)


def check_attributes(store: Store) -> None:
    frame = breakdown_attributes(store, None, ["country", "age", "traits.zip_code"], AS_OF)
    frame = frame.set_index("user_id").loc[[f"u{i}" for i in range(N_USERS)]]
    assert frame.loc["u0", "country"] == "(missing)" and frame.loc["u1", "country"] == "FR"
    assert frame.loc["u1", "age"] == "<18" and frame.loc["u9", "age"] == "25-34"
    assert frame.loc["u7", "age"] == "(missing)"
    assert list(frame["age"].cat.categories) == [
        "<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "(missing)",
    ]  # fmt: skip
    # a trait missing for some users (no key, or no traits at all) is the level (missing)
    assert frame["traits.zip_code"].astype(str).tolist() == [
        _expected_zip(i) for i in range(N_USERS)
    ]


def test_user_columns_age_bands_and_a_partly_missing_trait(shop: Store) -> None:
    check_attributes(shop)


def test_the_same_attributes_on_postgresql(pg_url: str) -> None:
    store = build_store(pg_url)
    try:
        check_attributes(store)
    finally:
        store.close()


def test_a_500_level_variable_is_folded_with_a_note(shop: Store) -> None:
    frame = breakdown_attributes(shop, None, ["city"], AS_OF, max_levels=20)
    levels = frame["city"].astype(str)
    assert levels.nunique() == 20 and (levels == "(other)").sum() == N_USERS - 19 * 2
    assert list(frame["city"].cat.categories)[-1] == "(other)"
    (note,) = frame.attrs["notes"]
    assert "500 levels" in note and "481" in note and "(other)" in note
    users = pd.DataFrame(
        {"user_id": frame["user_id"], "arm": np.tile(["t", "c"], N_USERS // 2),
         "converted": np.arange(N_USERS) % 4 == 0, "revenue": 1.0}
    )  # fmt: skip
    table = breakdown_table(users, frame, control="c")
    assert len(table) == 20 and table["level"].iloc[-1] == "(other)"


def test_quartiles_for_a_many_valued_feature(shop: Store) -> None:
    features = pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(N_USERS)], "spend": np.arange(N_USERS) * 1.0}
    )
    frame = breakdown_attributes(shop, None, ["spend"], AS_OF, features=features)
    counts = frame["spend"].value_counts(sort=False)
    assert [c.split(" ")[0] for c in counts.index] == ["Q1", "Q2", "Q3", "Q4"]
    assert counts.tolist() == [150, 150, 150, 150]


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("contry", "unknown breakdown variable 'contry'; did you mean 'country'"),
        ("nope", "user columns: gender, age, country"),
        ("traits.email", "trait 'email': personal data"),
        ("traits.first_name", "trait 'first_name': personal data"),
        ("email", "unknown breakdown variable 'email'"),
    ],
)
def test_bad_variables_are_clear_errors(shop: Store, variable: str, message: str) -> None:
    features = pd.DataFrame({"user_id": ["u1"], "recency_days": [1.0]})
    with pytest.raises(ConfigError, match=message):
        breakdown_attributes(shop, None, [variable], AS_OF, features=features)


def test_max_levels_below_two_is_refused(shop: Store) -> None:
    with pytest.raises(ConfigError, match="max_levels must be at least 2"):
        breakdown_attributes(shop, None, ["country"], AS_OF, max_levels=1)


# -- inside evaluate, and the CLI -----------------------------------------------------------
@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "p"
    root.mkdir()
    (root / "segmint.yaml").write_text(
        "project: p\nstore: s.duckdb\nsegmentations:\n"
        "  tiers:\n    type: rules\n    rules:\n      - {segment: young, when: 'recency_days IS NULL'}\n",
        encoding="utf-8",
    )
    store = build_store(str(root / "s.duckdb"))
    rng = np.random.default_rng(3)
    sent = pd.Timestamp("2026-06-01 10:00:00+00")
    ids = [f"u{i}" for i in range(N_USERS)]
    arms = np.where(rng.random(N_USERS) < 0.5, "treatment", "control")
    import_assignments(
        store, "spring", pd.DataFrame({"user_id": ids, "arm": arms, "sent_at": sent}),
        control_share=0.5,
    )  # fmt: skip
    buyers = [
        u
        for u, a in zip(ids, arms, strict=True)
        if rng.random() < (0.3 if a == "treatment" else 0.15)
    ]
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('o{k}', '{u}', CAST('2026-06-03 00:00:00+00' AS TIMESTAMPTZ), {10 + k % 7}, 'completed')"
            for k, u in enumerate(buyers)
        )
    )
    store.close()
    return root


def test_evaluate_with_two_variables(project: Path) -> None:
    with segmint.open_project(project) as p:
        ev = evaluate_campaign(
            p.store, "spring", config=p.config, uplift=False, n_resamples=200,
            by=["country", "traits.zip_code", "tiers"],
        )  # fmt: skip
    table = ev.breakdowns
    assert table["variable"].unique().tolist() == ["country", "traits.zip_code", "tiers"]
    assert set(table["arm"]) == {"treatment"} and set(table["control"]) == {"control"}
    # the breakdown's users are the campaign's: each variable's levels cover them all
    for _, rows in table.groupby("variable"):
        assert rows["n_arm"].sum() + rows["n_control"].sum() == N_USERS
    p = table["p_value"].to_numpy()
    keep = ~np.isnan(p)
    assert table.loc[keep, "p_bh_family"].to_numpy() == pytest.approx(
        multipletests(p[keep], method="fdr_bh")[1], abs=TOL
    )
    assert ev.to_dict()["breakdowns"][0]["variable"] == "country"
    assert evaluate_campaign.__kwdefaults__["max_levels"] == 20


def test_evaluate_without_by_has_an_empty_breakdown(project: Path) -> None:
    with segmint.open_project(project) as p:
        ev = p.evaluate("spring", uplift=False, n_resamples=100, save=False)
    assert ev.breakdowns.empty and ev.to_dict()["breakdowns"] == []


def test_cli_evaluate_by_two_attributes(project: Path) -> None:
    from segmint.cli import app

    runner = CliRunner()
    args = ["evaluate", "spring", "--no-uplift", "-p", str(project)]
    r = runner.invoke(app, [*args, "--by", "country", "--by", "traits.zip_code"])
    assert r.exit_code == 0, r.output
    assert "lift by country" in r.stdout and "lift by traits.zip_code" in r.stdout
    assert "across all 9 tests" in r.stdout and "family" in r.stdout  # 4 countries + 5 zips
    assert "(missing)" in r.stdout
    r = runner.invoke(app, [*args, "--by", "city", "--max-levels", "5", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert len({row["level"] for row in data["breakdowns"]}) == 5
    assert any("folded into '(other)'" in w for w in data["warnings"])
    r = runner.invoke(app, [*args, "--by", "contry"])
    assert r.exit_code == 2 and "did you mean 'country'" in r.output
    assert "Traceback" not in r.output
    r = runner.invoke(app, [*args, "--by", "traits.phone"])
    assert r.exit_code == 2 and "personal data" in r.output
