"""The churn AUC table (issue 22): gradient boosting against BG/NBD on a later holdout, on
a generated demo and on the real UCI Online Retail II export (2009-2010).

For each data set ``predict_churn`` trains at as_of - 2N, checks at as_of - N (AUC with a
95 % DeLong interval, Brier score, calibration) and scores at as_of; the demo's churn risk
is also compared with the generator's truth (``truth/personas.parquet``: a customer whose
buying window closed more than two weeks before as_of has churned).

    .venv/bin/python bench/churn_auc.py [--users 6000] [--seed 11] [--days 90] [--model bgnbd]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import table as md_table

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "online-retail"
DATA = HERE.parent.parent / "shared" / "data"


def _data() -> Path:
    """$SEGMINT_SHARED_DATA, else ../shared/data next to the checkout, else /work/shared/data."""
    for c in (os.environ.get("SEGMINT_SHARED_DATA", ""), str(DATA), "/work/shared/data"):
        if c and (Path(c) / "online_retail_II_2009_2010.parquet").exists():
            return Path(c)
    return DATA


def _rows(name: str, run: Any) -> list[list[str]]:
    return [
        [
            name,
            r["model"],
            f"{r['auc']:.3f}",
            f"[{r['low']:.3f}, {r['high']:.3f}]",
            f"{r['brier']:.3f}",
        ]
        for r in run.details["auc_table"]
    ]


def _summary(name: str, run: Any, seconds: float) -> str:
    m = run.metrics
    a = m["auc"]
    return (
        f"{name}: cut-offs train {m['cutoffs']['train'][:10]}, holdout "
        f"{m['cutoffs']['holdout'][:10]}, scored {m['cutoffs']['scored'][:10]}; "
        f"{m['n_train']:,} / {m['n_holdout']:,} / {m['n_scored']:,} customers; churn rate "
        f"{m['base_rate_train']:.1%} (train), {m['base_rate']:.1%} (holdout); model - "
        f"1-P(alive) {a['model_minus_baseline_p_alive']:+.3f} "
        f"[{a['model_minus_baseline_p_alive_low']:+.3f}, "
        f"{a['model_minus_baseline_p_alive_high']:+.3f}], model - P(no purchase) "
        f"{a['model_minus_baseline_no_purchase']:+.3f} "
        f"[{a['model_minus_baseline_no_purchase_low']:+.3f}, "
        f"{a['model_minus_baseline_no_purchase_high']:+.3f}]; calibration error model "
        f"{m['calibration_error']['model']:.3f}; {seconds:.1f} s"
    )


def _calibration(run: Any) -> str:
    rows = [
        [str(r["bin"]), str(r["n"]), f"{r['predicted']:.3f}", f"{r['observed']:.3f}"]
        for r in run.details["calibration"]
    ]
    return md_table(["bin", "n", "predicted", "observed"], rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=6_000)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--model", default="bgnbd", choices=["bgnbd", "mbgnbd"])
    a = p.parse_args()

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    import segmint
    from segmint.config import PredictSettings
    from segmint.demo import generate_demo
    from segmint.predict import predict_churn

    settings = PredictSettings(churn_days=a.days, model=a.model)
    rows: list[list[str]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="segmint-churn-") as tmp:
        demo = Path(tmp) / "demo"
        generate_demo(demo, n_users=a.users, seed=a.seed)
        with segmint.open_project(demo) as proj:
            proj.ingest()
            t0 = time.perf_counter()
            run = predict_churn(proj.store, settings, save=False)
            seconds = time.perf_counter() - t0
        name = f"demo ({a.users:,} users, seed {a.seed})"
        rows += _rows(name, run)
        notes.append(_summary(name, run, seconds))
        truth = pd.read_parquet(demo / "truth" / "personas.parquet")
        m = run.scores.merge(truth, left_on="user_id", right_on="customer_id")
        ended = pd.to_datetime(m["active_until"]) < pd.Timestamp(run.as_of.date()) - pd.Timedelta(
            days=14
        )
        notes.append(
            f"demo truth: churn_risk at {run.as_of:%Y-%m-%d} against 'buying window closed' "
            f"({ended.mean():.1%} of {len(m):,}): AUC {roc_auc_score(ended, m['churn_risk']):.4f}"
        )
        demo_calibration = _calibration(run)

        data = _data()
        retail_calibration = ""
        if (data / "online_retail_II_2009_2010.parquet").exists():
            proj_dir = Path(tmp) / "a" / "examples" / "online-retail"
            proj_dir.mkdir(parents=True)
            shutil.copy(EXAMPLE / "segmint.yaml", proj_dir / "segmint.yaml")
            (Path(tmp) / "shared").mkdir()
            (Path(tmp) / "shared" / "data").symlink_to(data.resolve())
            with segmint.open_project(proj_dir) as proj:
                proj.ingest()
                t0 = time.perf_counter()
                run = predict_churn(proj.store, settings, save=False)
                seconds = time.perf_counter() - t0
            rows += _rows("Online Retail II 2009-2010", run)
            notes.append(_summary("Online Retail II", run, seconds))
            retail_calibration = _calibration(run)
        else:
            notes.append(f"Online Retail skipped: {data}/online_retail_II_2009_2010.parquet absent")
    print(md_table(["data", "model", "AUC", "95 % CI", "Brier"], rows))
    print()
    print("\n".join(f"- {n}" for n in notes))
    print("\ncalibration, demo:\n" + demo_calibration)
    if retail_calibration:
        print("\ncalibration, Online Retail:\n" + retail_calibration)


if __name__ == "__main__":
    main()
