"""Experiments with any number of arms, any names: import, evaluation, SRM, adjustments,
robustness on thin stores, bootstrap options, uplift outcomes, costs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from typer.testing import CliRunner

import segmint
from segmint.campaigns import POOLED, design_from_params, make_design
from segmint.errors import ConfigError
from segmint.experiments._evaluate import (
    DEFAULT_RESAMPLES,
    bootstrap_p_value,
    evaluate_campaign,
    import_assignments,
    usable_features,
)
from segmint.store import Store, open_store

CAMPAIGN = "spring_reactivation_2026"
T0 = pd.Timestamp("2026-03-01 09:00:00+00")


@pytest.fixture()
def three_arms(demo_shop: Path, tmp_path: Path) -> Path:
    """The demo's planted campaign re-labelled as a 3-arm test: the treated users split at
    random into "message A" and "message B", the control called "holdout"."""
    root = tmp_path / "shop"
    shutil.copytree(demo_shop, root, ignore=shutil.ignore_patterns("exports"))
    frame = pd.read_csv(root / "campaigns" / f"{CAMPAIGN}.csv", dtype=str)
    rng = np.random.default_rng(5)
    treated = frame["arm"] == "treatment"
    frame.loc[treated, "arm"] = np.where(rng.random(int(treated.sum())) < 0.5, "message A",
                                         "message B")  # fmt: skip
    frame.loc[~treated, "arm"] = "holdout"
    frame.to_csv(root / "campaigns" / "three.csv", index=False)
    return root


def test_three_arm_import_and_evaluation(three_arms: Path) -> None:
    truth = json.loads((three_arms / "truth" / "truth.json").read_text())["campaign"]
    with segmint.open_project(three_arms) as p:
        out = p.import_campaign(
            "three", "campaigns/three.csv", control_share=truth["control_share"],
            control="holdout", columns={"user_id": "customer_id"}, cost_per_message=0.05,
        )  # fmt: skip
        assert out["control_arm"] == "holdout" and set(out["arms"]) == {
            "message A", "message B", "holdout"}  # fmt: skip
        assert out["rejected_bad_rows"] == 0
        ev = p.evaluate("three", window_days=truth["window_days"], n_resamples=2000, seed=1)
    assert ev.control == "holdout" and ev.treatments == ("message A", "message B")
    assert list(ev.arms["arm"]) == ["message A", "message B", "holdout"]
    # k-arm SRM: scipy's chi-square against the recorded split
    n = ev.arms.set_index("arm")["users"]
    share = (1 - truth["control_share"]) / 2
    expected = np.array([share, share, truth["control_share"]]) * n.sum()
    ref = scipy.stats.chisquare(n.to_numpy(), expected)
    assert ev.srm.df == 2 and ev.srm.chi2 == pytest.approx(ref.statistic, rel=1e-10)
    assert ev.srm.p == pytest.approx(ref.pvalue, rel=1e-10)
    # each arm against the control: the z-test matches statsmodels; Holm/BH across the arms
    conv = ev.effects[(ev.effects["metric"] == "conversion")].set_index("arm")
    users = ev.users
    for arm in ("message A", "message B", POOLED):
        t = users["arm"] != "holdout" if arm == POOLED else users["arm"] == arm
        c = users["arm"] == "holdout"
        x1, n1 = int(users.loc[t, "converted"].sum()), int(t.sum())
        x0, n0 = int(users.loc[c, "converted"].sum()), int(c.sum())
        assert conv.loc[arm, "diff"] == pytest.approx(x1 / n1 - x0 / n0, abs=1e-12)
        # the pooled-variance z test (what _stats.two_proportion_ztest documents)
        p_pool = (x1 + x0) / (n1 + n0)
        z = (x1 / n1 - x0 / n0) / np.sqrt(p_pool * (1 - p_pool) * (1 / n1 + 1 / n0))
        assert conv.loc[arm, "p_value"] == pytest.approx(2 * scipy.stats.norm.sf(abs(z)), 1e-8)
    p = conv.loc[["message A", "message B"], "p_value"].to_numpy()
    assert conv.loc[["message A", "message B"], "p_holm"].to_numpy() == pytest.approx(
        multipletests(p, method="holm")[1], abs=1e-12
    )
    assert conv.loc[["message A", "message B"], "p_bh"].to_numpy() == pytest.approx(
        multipletests(p, method="fdr_bh")[1], abs=1e-12
    )
    # the planted lift is covered by the pooled comparison and by each arm
    lift = truth["overall"]["conversion_lift"]
    for arm in ("message A", "message B", POOLED):
        assert conv.loc[arm, "diff_lo"] <= lift <= conv.loc[arm, "diff_hi"]
    assert ev.effect("conversion")["arm"] == POOLED  # the default with several arms
    assert set(ev.roi["arm"]) == {"message A", "message B", POOLED}
    assert not ev.srm.flagged and ev.uplift is not None
    json.dumps(ev.to_dict(), allow_nan=False, default=str)


def test_three_arm_cli_prints_every_arm(three_arms: Path) -> None:
    from segmint.cli import app

    runner = CliRunner()
    r = runner.invoke(
        app,
        ["campaign", "import", "three", "campaigns/three.csv", "--split",
         "message A=0.4,message B=0.4,holdout=0.2", "--control", "holdout",
         "--user-column", "customer_id", "-p", str(three_arms)],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "(control)" in r.stdout and "message B" in r.stdout
    r = runner.invoke(
        app, ["evaluate", "three", "--no-uplift", "--resamples", "500", "-p", str(three_arms)]
    )
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "message A" in out and "message B" in out and "any treatment" in out
    assert "p Holm" in out and "2 df" in out
    assert "no cost configured" in out and "0.00 [0.00, 0.00]" not in out


def _tiny_store(url: str, n: int = 600) -> Store:
    """Users with orders only: no ages, no order lines, no events (a real thin store)."""
    store = open_store(url)
    users = pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(n)], "created_at": pd.Timestamp("2025-01-01", tz="UTC")}
    )
    store.insert("users", users)
    rng = np.random.default_rng(3)
    buyers = rng.random(n) < 0.3
    orders = pd.DataFrame(
        {
            "order_id": [f"o{i}" for i in range(int(buyers.sum()))],
            "user_id": users["user_id"][buyers].to_numpy(),
            "ts": T0 + pd.Timedelta(days=2),
            "amount": rng.gamma(2.0, 20.0, int(buyers.sum())),
            "status": "completed",
        }
    )
    pre = orders.assign(order_id=lambda f: "p" + f["order_id"], ts=T0 - pd.Timedelta(days=5))
    store.insert("orders", pd.concat([orders, pre]))
    return store


def _arms(n: int, labels: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"user_id": [f"u{i}" for i in range(n)], "arm": rng.choice(labels, n), "sent_at": T0}
    )


def test_thin_store_default_options_never_crash(tmp_path: Path) -> None:
    """No ages, no order lines, no events: the uplift model gets no all-NaN column."""
    store = _tiny_store(str(tmp_path / "s.duckdb"), n=1200)
    import_assignments(store, "thin", _arms(1200, ["treatment", "control"]), control_share=0.5)
    ev = evaluate_campaign(store, "thin", n_resamples=500)
    assert ev.effect("conversion")["p_value"] >= 0
    assert ev.uplift is not None or any("uplift" in w for w in ev.warnings)
    assert not any("failed" in w for w in ev.warnings)


def test_usable_features_drops_nan_constant_and_one_arm_columns() -> None:
    t = np.array([True, True, False, False])
    m = pd.DataFrame(
        {
            "all_nan": [np.nan] * 4,
            "constant": [1.0] * 4,
            "treated_only": [1.0, 2.0, np.nan, np.nan],
            "useful": [1.0, 2.0, 3.0, 4.0],
            "some_nan": [1.0, np.nan, 1.0, 2.0],
        }
    )
    assert list(usable_features(m, t).columns) == ["useful", "some_nan"]


def test_a_failing_optional_step_becomes_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from segmint.experiments import _evaluate

    store = _tiny_store(str(tmp_path / "s.duckdb"), n=1200)
    import_assignments(store, "thin", _arms(1200, ["treatment", "control"]), control_share=0.5)

    def boom(*a: object, **k: object) -> None:
        raise ValueError("window shape cannot be larger than input array shape")

    monkeypatch.setattr(_evaluate, "_fit_uplift", boom)
    monkeypatch.setattr(_evaluate, "_bootstrap_means", boom)
    ev = evaluate_campaign(store, "thin", n_resamples=100)
    failed = [w for w in ev.warnings if "failed" in w]
    assert len(failed) == 2 and "window shape" in failed[0]
    assert ev.uplift is None and np.isnan(ev.effect("revenue_per_user", "bootstrap")["diff_lo"])
    assert np.isfinite(ev.effect("revenue_per_user", "welch")["diff_lo"])


def test_uplift_outcomes(tmp_path: Path) -> None:
    store = _tiny_store(str(tmp_path / "s.duckdb"), n=1500)
    import_assignments(store, "thin", _arms(1500, ["A", "B", "control"]), control_share=1 / 3)
    rev = evaluate_campaign(store, "thin", n_resamples=0, uplift_outcome="revenue")
    assert rev.uplift is not None and "Regressor" in rev.uplift.model
    assert rev.uplift_outcome == "revenue" and np.isnan(rev.uplift.auuc)
    visit = evaluate_campaign(store, "thin", n_resamples=0, uplift_outcome="visit")
    assert visit.uplift is None and any("visit" in w for w in visit.warnings)  # no events
    with pytest.raises(ConfigError, match="uplift_outcome"):
        evaluate_campaign(store, "thin", uplift_outcome="clicks")


def test_bootstrap_resamples_and_resolution(tmp_path: Path) -> None:
    store = _tiny_store(str(tmp_path / "s.duckdb"))
    import_assignments(store, "thin", _arms(600, ["treatment", "control"]), control_share=0.5)
    ev = evaluate_campaign(store, "thin", n_resamples=300, uplift=False)
    assert ev.n_resamples == 300
    p = ev.effect("revenue_per_user", "bootstrap")["p_value"]
    assert p >= 2 / 301  # never below what 300 resamples can resolve
    assert bootstrap_p_value(np.ones(999)) == pytest.approx(2 / 1000)
    assert bootstrap_p_value(np.r_[-np.ones(10), np.ones(90)]) == pytest.approx(22 / 101)
    assert DEFAULT_RESAMPLES >= 25_000
    from segmint.cli.experiments import DEFAULT_RESAMPLES as CLI_DEFAULT
    from segmint.cli.experiments import _p_boot

    assert CLI_DEFAULT == DEFAULT_RESAMPLES
    assert _p_boot(2 / 2001, 2000) == "<2/2,000" and _p_boot(0.5, 2000) == "0.5000"
    none = evaluate_campaign(store, "thin", n_resamples=0, uplift=False)
    assert np.isnan(none.effect("revenue_per_user", "bootstrap")["diff_lo"])


def test_bootstrap_means_is_exact_in_distribution() -> None:
    """The zero-skipping joint resampler: same mean and spread as naive resampling."""
    from segmint.experiments._evaluate import _bootstrap_means

    rng = np.random.default_rng(0)
    v = np.zeros((2000, 2))
    buy = rng.random(2000) < 0.1
    v[buy, 0] = rng.gamma(2, 30, buy.sum())
    v[buy, 1] = 1
    fast = _bootstrap_means(v, 20_000, np.random.default_rng(1))
    naive = v[np.random.default_rng(2).integers(0, 2000, (4000, 2000))].mean(axis=1)
    assert fast.mean(axis=0) == pytest.approx(v.mean(axis=0), rel=0.01)
    assert fast.std(axis=0) == pytest.approx(naive.std(axis=0), rel=0.05)
    assert (fast[:, 0] > 0).sum() == (fast[:, 1] > 0).sum()  # rows stay joint


# -- bad input ---------------------------------------------------------------------------
def test_import_bad_arms(tmp_path: Path) -> None:
    store = _tiny_store(str(tmp_path / "s.duckdb"))
    frame = _arms(600, ["A", "B", "ctl"])
    with pytest.raises(ConfigError, match=r"no arm named 'control'.*--control"):
        import_assignments(store, "x", frame, control_share=0.3)
    with pytest.raises(ConfigError, match="control_share .* or split"):
        import_assignments(store, "x", frame, control="ctl")
    typo = frame.copy()
    typo.loc[:2, "arm"] = "ctrl "  # 3 rows spelled like the 200-row control
    with pytest.raises(ConfigError, match="looks like a typo of 'ctl'"):
        import_assignments(store, "x", typo, control="ctl", control_share=0.3)
    out = import_assignments(
        store, "x", typo, control="ctl", split={"A": 0.35, "B": 0.35, "ctl": 0.3}
    )
    assert out["rejected_bad_rows"] == 3 and sum(out["arms"].values()) == 597
    with pytest.raises(ConfigError, match="sum to 1"):
        import_assignments(store, "x", frame, control="ctl", split={"A": 0.5, "ctl": 0.3})
    with pytest.raises(ConfigError, match="not one of the arms"):
        import_assignments(store, "x", frame, control="holdout", split={"A": 0.5, "ctl": 0.5})
    # case and spaces do not make new arms
    loose = frame.assign(arm=frame["arm"].map({"A": " a ", "B": "B", "ctl": "CTL"}))
    out = import_assignments(store, "y", loose, control="ctl", control_share=0.3)
    assert len(out["arms"]) == 3


def test_an_arm_with_no_users(tmp_path: Path) -> None:
    store = _tiny_store(str(tmp_path / "s.duckdb"))
    frame = _arms(600, ["A", "control"])
    import_assignments(store, "x", frame, split={"A": 0.45, "B": 0.1, "control": 0.45})
    ev = evaluate_campaign(store, "x", n_resamples=200, uplift=False)
    assert any("'B' has no users" in w for w in ev.warnings)
    b = ev.effects[ev.effects["arm"] == "B"]
    assert len(b) and b["diff"].isna().all()
    assert ev.srm.flagged  # 10% of the design never showed up


def test_designs_from_params() -> None:
    assert design_from_params({"holdout": 0.2}).split == {"treatment": 0.8, "control": 0.2}
    d = make_design({"A": 0.5, "B": 0.3, "hold": 0.2}, "hold")
    assert d.arms == ["A", "B", "hold"] and design_from_params(d.to_params()) == d


def test_k_arm_holm_controls_the_family_wise_error() -> None:
    """Under the null, with 3 and 4 arms sharing one control, Holm's family-wise error over
    the comparisons with the control stays at alpha (4,000 simulated experiments each)."""
    from segmint.experiments._stats import holm, two_proportion_ztest

    rng = np.random.default_rng(2026)
    for k, n_sim in ((3, 4000), (4, 4000)):
        n, p = 2000, 0.1
        x = rng.binomial(n, p, size=(n_sim, k))  # column 0 is the control
        _, pv = two_proportion_ztest(x[:, 1:], n, x[:, [0]], n)
        rejected = np.array([(holm(row) < 0.05).any() for row in np.atleast_2d(pv)])
        fwer = rejected.mean()
        assert 0.04 <= fwer <= 0.06, (k, fwer)


def test_report_shows_arms_verdicts_and_breakdowns(three_arms: Path) -> None:
    from segmint.report import build_report

    with segmint.open_project(three_arms) as p:
        p.import_campaign(
            "three", "campaigns/three.csv", control_share=0.2, control="holdout",
            columns={"user_id": "customer_id"},
        )  # fmt: skip
        p.evaluate("three", n_resamples=200, uplift=False, by=["country", "gender"])
        html = build_report(p).path.read_text(encoding="utf-8")
    section = html[html.index('<section id="campaigns"') :]
    section = section[: section.index("</section>")]
    assert "message A" in section and "message B" in section and "any treatment" in section
    assert "Conversion lift by attribute" in section and "<td>country</td>" in section
    assert "<td>inconclusive</td>" in section or "<td>win</td>" in section
