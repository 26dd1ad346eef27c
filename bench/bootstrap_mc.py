"""Monte-Carlo error of the evaluation's bootstrap interval, and its speed, on the demo.

The revenue-per-user bootstrap interval of ``segmint evaluate`` is itself random: rerun
with another seed and its ends move. This script measures by how much, as a share of the
interval's width, for several resample counts N, on the demo's planted campaign (the
``make demo`` shop: 50,000 users, seed 42). The default of ``evaluate`` must keep that
error under 0.5 % of the width. It also times the zero-skipping joint resampler segmint
uses against the usual way (draw n indices per replicate, take the means).

    .venv/bin/python bench/bootstrap_mc.py --out /tmp/bootstrap-demo [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CAMPAIGN = "spring_reactivation_2026"
COLUMNS = ["revenue", "converted", "offer_cost"]


def users_table(out: Path, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    import segmint
    from segmint.demo import generate_demo

    if not (out / "segmint.yaml").exists():
        generate_demo(out, n_users=n_users, seed=42)
        with segmint.open_project(out) as p:
            p.ingest()
    with segmint.open_project(out) as p:
        p.import_campaign(
            CAMPAIGN, f"campaigns/{CAMPAIGN}.csv", control_share=0.2,
            columns={"user_id": "customer_id"},
        )  # fmt: skip
        ev = p.evaluate(CAMPAIGN, n_resamples=0, uplift=False, save=False)
    u = ev.users.assign(offer_cost=0.0)
    t = u.loc[u["arm"] == "treatment", COLUMNS].to_numpy(float)
    c = u.loc[u["arm"] == "control", COLUMNS].to_numpy(float)
    return t, c


def naive_means(values: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The usual way: n indices per replicate, in chunks of ~4M draws."""
    n = len(values)
    out = np.empty((n_resamples, values.shape[1]))
    step = max(1, (1 << 22) // n)
    for s in range(0, n_resamples, step):
        m = min(step, n_resamples - s)
        out[s : s + m] = values[rng.integers(0, n, size=(m, n))].mean(axis=1)
    return out


def main() -> None:
    from segmint.experiments._evaluate import DEFAULT_RESAMPLES, _bootstrap_means
    from segmint.experiments._stats import percentile_interval

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bootstrap-demo"))
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    t, c = users_table(args.out, args.users)
    print(f"campaign {CAMPAIGN}: {len(t):,} treated, {len(c):,} control users")
    rows = []
    for n in sorted({2_000, 5_000, DEFAULT_RESAMPLES, 50_000}):
        ends, seconds = [], []
        for seed in range(args.repeats):
            rng = np.random.default_rng(seed)
            t0 = time.perf_counter()
            diff = _bootstrap_means(t, n, rng)[:, 0] - _bootstrap_means(c, n, rng)[:, 0]
            seconds.append(time.perf_counter() - t0)
            ends.append(percentile_interval(diff, 0.05))
        e = np.array(ends)
        width = float(np.mean(e[:, 1] - e[:, 0]))
        mc = float(max(e[:, 0].std(ddof=1), e[:, 1].std(ddof=1)))
        rows.append(
            {
                "resamples": n,
                "default": n == DEFAULT_RESAMPLES,
                "width": round(width, 4),
                "mc_error_of_an_end": round(mc, 5),
                "mc_error_share_of_width": round(mc / width, 5),
                "seconds_zero_skipping": round(float(np.median(seconds)), 3),
            }
        )
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    naive_means(t, DEFAULT_RESAMPLES, rng), naive_means(c, DEFAULT_RESAMPLES, rng)
    naive = time.perf_counter() - t0
    for r in rows:
        if r["default"]:
            r["seconds_naive_resampling"] = round(naive, 3)
    print(f"{'N':>7} {'width':>8} {'MC sd of an end':>16} {'share of width':>15} "
          f"{'s (segmint)':>12} {'s (naive)':>10}")  # fmt: skip
    for r in rows:
        print(
            f"{r['resamples']:>7,} {r['width']:>8.3f} {r['mc_error_of_an_end']:>16.5f} "
            f"{r['mc_error_share_of_width']:>15.2%} {r['seconds_zero_skipping']:>12.3f} "
            f"{r.get('seconds_naive_resampling', float('nan')):>10.3f}"
            + ("   <- default" if r["default"] else "")
        )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
