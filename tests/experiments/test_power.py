"""Verdicts and power against statsmodels: the MDE, the users needed, the verdict rule and
the pre-period imbalance flag."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import NormalIndPower, tt_ind_solve_power

from segmint.errors import ConfigError
from segmint.experiments._power import (
    add_verdicts,
    imbalance_warnings,
    mde_mean,
    mde_proportion,
    users_needed_mean,
    users_needed_proportion,
    verdict,
)

# the normal-approximation MDE drops the far rejection tail (1.3e-6 of power at the
# defaults): statsmodels' NormalIndPower solves with both tails, so the MDEs agree to ~1e-5
NORMAL_RTOL = 2e-5


@pytest.mark.parametrize(
    ("p0", "n1", "n0", "alpha", "power"),
    [(0.05, 4000, 1000, 0.05, 0.8), (0.3, 120, 80, 0.05, 0.9), (0.01, 50_000, 50_000, 0.01, 0.8)],
)
def test_proportion_mde_matches_normal_ind_power(p0, n1, n0, alpha, power) -> None:
    sd = np.sqrt(p0 * (1 - p0))
    ref = NormalIndPower().solve_power(nobs1=n1, ratio=n0 / n1, alpha=alpha, power=power) * sd
    got = mde_proportion(p0, n1, n0, alpha=alpha, power=power)
    assert got == pytest.approx(ref, rel=NORMAL_RTOL)
    # and the power statsmodels gives at our MDE is the target (the far tail adds < 1e-5)
    achieved = NormalIndPower().power(got / sd, nobs1=n1, ratio=n0 / n1, alpha=alpha)
    assert achieved == pytest.approx(power, abs=1e-5) and achieved >= power


def test_proportion_mde_is_vectorised_and_nan_for_empty_arms() -> None:
    got = mde_proportion(np.array([0.1, 0.1, 0.0]), np.array([100, 0, 100]), 100)
    assert np.isfinite(got[0]) and np.isnan(got[1]) and np.isnan(got[2])


@pytest.mark.parametrize(("sd", "n1", "n0"), [(12.0, 300, 100), (1.0, 20, 20), (55.5, 9000, 1000)])
def test_mean_mde_matches_tt_ind_solve_power(sd, n1, n0) -> None:
    ref = tt_ind_solve_power(nobs1=n1, ratio=n0 / n1, alpha=0.05, power=0.8) * sd
    assert mde_mean(sd, n1, n0) == pytest.approx(ref, rel=1e-6)


def test_users_needed_match_statsmodels() -> None:
    # means: statsmodels' fractional n, ours rounded up
    ref = tt_ind_solve_power(effect_size=3.0 / 12.0, alpha=0.05, power=0.8)
    assert users_needed_mean(12.0, 3.0) == np.ceil(ref)
    assert users_needed_mean(12.0, -3.0) == np.ceil(ref)  # the sign does not matter
    # proportions: variance at the baseline
    p0, diff = 0.05, 0.01
    ref = NormalIndPower().solve_power(
        effect_size=diff / np.sqrt(p0 * (1 - p0)), alpha=0.05, power=0.8
    )
    assert users_needed_proportion(p0, diff) == pytest.approx(np.ceil(ref), abs=1)
    assert users_needed_proportion(p0, diff) == 7457  # (1.96 + 0.8416)^2 2 (.05)(.95) / 1e-4
    assert np.isnan(users_needed_proportion(p0, 0.0)) and np.isnan(users_needed_mean(1.0, 0.0))


def test_verdict_rule() -> None:
    got = verdict(
        [0.1, -2.0, -1.0, 0.1, 0.2, 0.2],
        [1.0, -1.0, 1.0, 1.0, 0.5, 0.5],
        [0.01, 0.01, 0.5, 0.2, np.nan, 0.049],
        0.05,
    )
    assert list(got) == ["win", "loss", "inconclusive", "inconclusive", "win", "win"]
    assert verdict(0.1, 1.0, 0.06, 0.05) == "inconclusive"  # interval and test disagree
    assert verdict(-1.0, -0.1, 0.001) == "loss"


def test_bad_alpha_or_power_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="power"):
        mde_proportion(0.1, 10, 10, power=1.0)
    with pytest.raises(ConfigError, match="alpha"):
        mde_mean(1.0, 10, 10, alpha=0)


def _users(seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = np.repeat(["A", "B", "holdout"], [500, 400, 300])
    pre = rng.exponential(20, arm.size) + np.where(arm == "A", shift, 0.0)
    revenue = rng.exponential(30, arm.size) + 0.5 * pre
    return pd.DataFrame(
        {
            "arm": arm,
            "converted": rng.random(arm.size) < np.where(arm == "A", 0.2, 0.1),
            "visited": rng.random(arm.size) < 0.3,
            "revenue": revenue,
            "orders": rng.poisson(1, arm.size),
            "events": rng.poisson(3, arm.size),
            "pre_revenue": pre,
        }
    )


def _effects(users: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    rows = []
    c = users[users["arm"] == "holdout"]
    for a in arms:
        t = users[users["arm"] == a] if a != "any treatment" else users[users["arm"] != "holdout"]
        for metric, col in (("conversion", "converted"), ("revenue_per_user", "revenue"),
                            ("pre_revenue_per_user (balance)", "pre_revenue")):  # fmt: skip
            from scipy.stats import ttest_ind

            r = ttest_ind(t[col].astype(float), c[col].astype(float), equal_var=False)
            lo, hi = r.confidence_interval(0.95)
            m1, m0 = t[col].mean(), c[col].mean()
            rows.append(
                {"arm": a, "metric": metric, "method": "welch", "treatment": m1, "control": m0,
                 "diff": m1 - m0, "diff_lo": lo, "diff_hi": hi, "p_value": r.pvalue}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_add_verdicts_per_arm_against_statsmodels() -> None:
    users = _users()
    eff = _effects(users, ["A", "B", "any treatment"])
    out = add_verdicts(eff, users, control="holdout", alpha=0.05)
    assert list(out.columns[: len(eff.columns)]) == list(eff.columns)  # a copy, columns added
    a = out[(out["arm"] == "A") & (out["metric"] == "conversion")].iloc[0]
    assert (a["n_treatment"], a["n_control"]) == (500, 300)
    p0 = users.loc[users["arm"] == "holdout", "converted"].mean()
    assert a["mde"] == pytest.approx(mde_proportion(p0, 500, 300))
    assert a["mde_rel"] == pytest.approx(a["mde"] / p0)
    assert a["verdict"] == "win"  # conversion 0.2 against 0.1 on 500 / 300 users
    pooled = out[(out["arm"] == "any treatment") & (out["metric"] == "conversion")].iloc[0]
    assert (pooled["n_treatment"], pooled["n_control"]) == (900, 300)
    b = out[(out["arm"] == "B") & (out["metric"] == "revenue_per_user")].iloc[0]
    y1 = users.loc[users["arm"] == "B", "revenue"].to_numpy()
    y0 = users.loc[users["arm"] == "holdout", "revenue"].to_numpy()
    sd = np.sqrt(((y1.size - 1) * y1.var(ddof=1) + (y0.size - 1) * y0.var(ddof=1)) / 698)
    ref = tt_ind_solve_power(nobs1=400, ratio=300 / 400, alpha=0.05, power=0.8) * sd
    assert b["mde"] == pytest.approx(ref, rel=1e-6)
    ref_n = tt_ind_solve_power(effect_size=abs(b["diff"]) / sd, alpha=0.05, power=0.8)
    assert b["users_needed"] == np.ceil(ref_n)
    bal = out[out["metric"].str.endswith("(balance)")]
    assert set(bal["verdict"]) == {"balanced"} and bal["mde"].isna().all()
    assert imbalance_warnings(out) == []
    # without an arm column every non-control user is treated
    plain = add_verdicts(eff[eff["arm"] == "any treatment"].drop(columns="arm"), users,
                         control="holdout")  # fmt: skip
    assert plain["n_treatment"].tolist() == [900] * 3


def test_a_pre_period_imbalance_is_flagged_like_an_srm() -> None:
    users = _users(shift=15.0)  # arm A's pre-period revenue is 15 higher: broken randomisation
    out = add_verdicts(_effects(users, ["A", "B"]), users, control="holdout")
    bal = out[out["metric"].str.endswith("(balance)")].set_index("arm")
    assert bal.loc["A", "verdict"] == "imbalance" and bal.loc["A", "p_value"] < 0.01
    assert bal.loc["B", "verdict"] == "balanced"
    warns = imbalance_warnings(out)
    assert len(warns) == 1 and warns[0].startswith("PRE-PERIOD IMBALANCE (A)")


def test_evaluate_flags_a_pre_period_imbalance_and_the_cli_exits_4(tmp_path) -> None:
    """120 extra treated users who all bought 100 the week before the send, 80 extra
    controls who did not: the arms differ before the campaign."""
    from typer.testing import CliRunner

    from segmint.cli import app
    from segmint.experiments._evaluate import evaluate_campaign, import_assignments

    from .test_evaluate import T0, assignments, build_store

    root = tmp_path / "p"
    root.mkdir()
    (root / "segmint.yaml").write_text("project: p\nstore: s.duckdb\n", encoding="utf-8")
    store = build_store(str(root / "s.duckdb"))
    treated, held = [f"xt{i}" for i in range(120)], [f"xc{i}" for i in range(80)]
    store.execute(
        "INSERT INTO users (user_id) VALUES " + ", ".join(f"('{u}')" for u in treated + held)
    )
    store.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, status) VALUES "
        + ", ".join(
            f"('p{u}', '{u}', CAST('2026-05-25 00:00:00+00' AS TIMESTAMPTZ), {100 + i % 7}, "
            "'completed')"
            for i, u in enumerate(treated)
        )
    )
    frame = pd.concat(
        [
            assignments(),
            pd.DataFrame({"user_id": treated, "arm": "treatment", "sent_at": T0}),
            pd.DataFrame({"user_id": held, "arm": "control", "sent_at": T0}),
        ],
        ignore_index=True,
    )
    import_assignments(store, "spring", frame, control_share=0.4)
    ev = evaluate_campaign(store, "spring", window_days=10, uplift=False, n_resamples=50)
    store.close()
    bal = ev.effect("pre_revenue_per_user (balance)")
    assert bal["verdict"] == "imbalance" and bal["p_value"] < 0.01
    assert not ev.srm.flagged  # the sizes are right: only the pre-period is off
    assert any(w.startswith("PRE-PERIOD IMBALANCE") for w in ev.warnings)
    r = CliRunner().invoke(app, ["evaluate", "spring", "--no-uplift", "-p", str(root)])
    assert r.exit_code == 4, r.output
    assert "PRE-PERIOD IMBALANCE" in r.stdout and "imbalance" in r.stdout
