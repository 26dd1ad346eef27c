"""The CDNOW figures of issue 22, printed: BG/NBD and Gamma-Gamma against the published
parameters (Fader, Hardie & Lee 2005), fitted two ways - on the published 2,357-customer
summary, and from the raw ``CDNOW_sample.txt`` lines ingested through a segmint.yaml into a
DuckDB project (as of 1997-10-01, the end of week 39) - then the holdout check of weeks
40-78 by calibration purchases (the paper's figure 4) and its revenue side.

Usage: .venv/bin/python bench/cdnow.py [--data ../shared/data/cdnow]
(``tests/predict/test_models.py`` asserts the same figures.)
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}
CALIBRATION_END = datetime(1997, 10, 1, tzinfo=UTC)
HOLDOUT_END = datetime(1998, 7, 1, tzinfo=UTC)


def _project(data: Path, root: Path) -> Path:
    """The raw transactions as a segmint project: customers by sample id, one completed
    order per transaction line."""
    tx = pd.read_csv(data / "CDNOW_sample.txt", sep=r"\s+", header=None,
                     names=["master_id", "sample_id", "day", "cds", "dollars"],
                     dtype={"sample_id": str, "day": str})  # fmt: skip
    tx["day"] = pd.to_datetime(tx["day"], format="%Y%m%d").dt.strftime("%Y-%m-%d")
    first = tx.groupby("sample_id")["day"].min()
    pd.DataFrame({"id": first.index.astype(int), "first_seen": first.to_numpy()}).to_csv(
        root / "customers.csv", index=False
    )
    pd.DataFrame({"line": range(1, len(tx) + 1), "customer": tx["sample_id"].astype(int),
                  "day": tx["day"], "dollars": tx["dollars"]}).to_csv(
        root / "purchases.csv", index=False
    )  # fmt: skip
    config = {
        "store": "cdnow.duckdb",
        "timezone": "UTC",
        "currency": "USD",
        "sources": {
            "customers": {"type": "csv", "path": "customers.csv", "table": "users",
                          "columns": {"user_id": "id", "created_at": "first_seen"}},
            "purchases": {"type": "csv", "path": "purchases.csv", "table": "orders",
                          "columns": {"order_id": "line", "user_id": "customer", "ts": "day",
                                      "amount": "dollars"}},
        },
    }  # fmt: skip
    (root / "segmint.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def main() -> None:
    import segmint
    from segmint.config import PredictSettings
    from segmint.predict import BetaGeo, GammaGamma, holdout_check, predict_clv

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = Path(__file__).resolve().parents[1]
    p.add_argument("--data", type=Path, default=here.parent / "shared" / "data" / "cdnow")
    a = p.parse_args()

    summary = pd.read_csv(a.data / "cdnow_customers_summary.csv")
    spend = pd.read_csv(a.data / "cdnow_customers_summary_with_transactions.csv")
    bg = BetaGeo().fit(summary["frequency"], summary["recency"], summary["T"])
    gg = GammaGamma().fit(spend["x"], spend["zbar"])
    assert bg.fit_ is not None and gg.fit_ is not None
    ours = {**bg.params, **gg.params}
    intervals = {**bg.fit_.intervals, **gg.fit_.intervals}

    with tempfile.TemporaryDirectory() as tmp:
        project = segmint.open_project(_project(a.data, Path(tmp)))
        project.ingest()
        run = predict_clv(project.store, PredictSettings(), as_of=CALIBRATION_END, save=False)
        fit = run.metrics["purchase_fit"]["params"]
        store = {**fit, "alpha": fit["alpha"] / 7, **run.metrics["spend_fit"]["params"]}
        check = holdout_check(project.store, CALIBRATION_END, HOLDOUT_END, PredictSettings())
        project.close()

    print("| param | published | ours (summary) | 95 % interval | rel. error "
          "| ours (raw -> store) | rel. error |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, pub in PUBLISHED.items():
        low, high = intervals[k]
        print(f"| {k} | {pub} | {ours[k]:.4f} | {low:.3f} - {high:.3f} | "
              f"{abs(ours[k] - pub) / pub:.2%} | {store[k]:.4f} | "
              f"{abs(store[k] - pub) / pub:.2%} |")  # fmt: skip
    print(f"\nBG/NBD log-likelihood (weeks, summary): {bg.fit_.log_likelihood:.1f}")
    print("\nholdout, weeks 40-78 (mean repeat purchases per customer):")
    print("| calibration repeat purchases | customers | actual | predicted |")
    print("|---|---:|---:|---:|")
    for r in check["by_calibration_purchases"]:
        print(f"| {r['purchases']} | {r['n']:,} | {r['actual']:.3f} | {r['predicted']:.3f} |")
    print(
        f"total: {check['total_actual']:,.0f} made, {check['total_predicted']:,.1f} predicted "
        f"({check['total_error']:+.1%}); correlation per customer {check['correlation']:.3f}"
    )
    v = check["value"]
    print(
        f"revenue: {v['total_actual']:,.0f} USD made, {v['total_predicted']:,.0f} predicted "
        f"({v['total_error']:+.1%}); top tenth by prediction made {v['top_group_share']:.0%}"
    )


if __name__ == "__main__":
    main()
