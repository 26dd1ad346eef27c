"""Churn risk and P(alive) against the demo generator's truth, per true persona: what
docs/churn.md says of occasional buyers ("churn" = no order in the next N days).

Usage: .venv/bin/python bench/churn_personas.py [DEMO_DIR]   (default: segmint-demo, made by
`make demo`; the project's latest clv and churn runs are read)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    import segmint

    root = Path(sys.argv[1] if len(sys.argv) > 1 else "segmint-demo")
    with segmint.open_project(root, read_only=True) as p:
        scores = p.predictions()
        as_of = pd.Timestamp(p.prediction_run("churn").as_of)
    truth = pd.read_parquet(root / "truth" / "personas.parquet")
    df = scores.merge(truth.rename(columns={"customer_id": "user_id"}), on="user_id")
    # the generator's truth: the buying window closed two weeks or more before as_of
    closed = pd.to_datetime(df["active_until"]).dt.tz_localize(None)
    df["window_closed"] = closed < as_of.tz_localize(None) - pd.Timedelta(days=14)
    table = df.groupby("persona").agg(
        customers=("user_id", "size"),
        mean_churn_risk=("churn_risk", "mean"),
        high_risk=("churn_risk", lambda s: (s >= 0.5).mean()),
        window_closed=("window_closed", "mean"),
        mean_p_alive=("p_alive", "mean"),
    )
    print(f"{root}: {len(df):,} scored customers, as of {as_of:%Y-%m-%d}")
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
