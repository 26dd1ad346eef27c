"""CLV benchmark (issue 22): BG/NBD + Gamma-Gamma fitted and scored on a million customers,
segmint against the usual ways, in the same run.

Data: ``--users`` customers simulated from the models themselves with known parameters
(CDNOW's, in days: r 0.243, α 30.9, a 0.793, b 2.426; p 6.25, q 3.74, v 15.44), first
purchases spread over two years before the as-of date 2026-01-01; every purchase is an
order in a DuckDB store (cached in ``--out``), so the summary SQL is timed too. Each path
runs in its own process:

* ``segmint``  ``customer_summary`` (the SQL: purchase days, recency, age, mean repeat
  value per customer), ``BetaGeo().fit``, ``GammaGamma().fit`` and ``score`` (P(alive),
  expected purchases over 12 monthly periods, expected order value, CLV discounted at 10 %
  a year with its 90 % interval), then ``predict_clv`` end to end (summary, fits,
  scores, the holdout check, the run saved to the store) on a copy of the store.
* ``row-wise``  the likelihood written the usual way: a Python loop over customers with
  ``math.lgamma`` inside ``scipy.optimize.minimize`` (Nelder-Mead on log-parameters). One
  evaluation is timed on every customer; the full fit is run on ``--rowwise-sample``
  customers and its cost at full size extrapolated (evaluations x time per evaluation),
  and so is scoring with ``scipy.special.hyp2f1`` per customer. Clearly labelled.
* ``lifetimes``  the ``lifetimes`` package (0.11.3, unmaintained) in its own virtualenv
  (``--lifetimes-python``; made with ``python3 -m venv /tmp/ltvenv && /tmp/ltvenv/bin/pip
  install lifetimes``): ``BetaGeoFitter``, ``GammaGammaFitter`` and the same scores on the
  same summary; its CLV is compared with segmint's customer by customer.

Target (2 cores): fit + score 1M customers under 30 s.

    .venv/bin/python bench/predict.py                         # 1M customers
    .venv/bin/python bench/predict.py --users 200000 --skip-lifetimes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table

HERE = Path(__file__).resolve().parent
AS_OF = "2026-01-01"
SPAN_DAYS = 730
TRUE_BGNBD = {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}
TRUE_SPEND = {"p": 6.25, "q": 3.74, "v": 15.44}
HORIZON_DAYS = 360  # 12 periods of 30 days
YEARLY_DISCOUNT = 0.10


# -- data ---------------------------------------------------------------------------------


def simulate(n: int, seed: int) -> tuple[Any, Any, dict[str, Any]]:
    """Users and orders of ``n`` customers drawn from BG/NBD + Gamma-Gamma, and their
    exact (continuous-time) summary x, t_x, T.

    A customer's first purchase falls uniformly in the two years before the as-of date;
    λ ~ Gamma(r, rate α), p ~ Beta(a, b); he drops out right after his J-th repeat
    purchase, J ~ Geometric(p). With N the Poisson(λT) count of purchases in his age T,
    x = min(N, J) repeat purchases, the last at T·Beta(x, N - x + 1) (the x-th of N uniform
    times), the x - 1 others uniform before it. Order values: ν ~ Gamma(q, rate v), each
    order Gamma(p, rate ν).
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    end = pd.Timestamp(AS_OF, tz="UTC")
    age_days = rng.uniform(0, SPAN_DAYS, n)  # continuous: first purchases at any time
    first = end - pd.to_timedelta(age_days, unit="D")
    lam = rng.gamma(TRUE_BGNBD["r"], 1.0 / TRUE_BGNBD["alpha"], n)
    p = rng.beta(TRUE_BGNBD["a"], TRUE_BGNBD["b"], n)
    bought = rng.poisson(lam * age_days)
    x = np.minimum(bought, rng.geometric(p))
    last = np.where(x > 0, age_days * rng.beta(np.maximum(x, 1), bought - x + 1), 0.0)
    # repeat purchase times: the last one, and x - 1 uniform before it
    owner = np.repeat(np.arange(n), x)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(x) - x, x)  # 0 .. x-1 within customer
    offsets = np.where(k == 0, last[owner], rng.uniform(0, 1, len(owner)) * last[owner])
    nu = rng.gamma(TRUE_SPEND["q"], 1.0 / TRUE_SPEND["v"], n)
    who = np.concatenate([np.arange(n), owner])
    when = np.concatenate([np.zeros(n), offsets])
    amount = np.round(rng.gamma(TRUE_SPEND["p"], 1.0 / nu[who]), 2)
    ids = np.char.add("c", np.arange(n).astype(str))
    users = pd.DataFrame({"user_id": ids, "created_at": first})
    orders = pd.DataFrame(
        {
            "order_id": np.char.add("o", np.arange(len(who)).astype(str)),
            "user_id": ids[who],
            "ts": first[who] + pd.to_timedelta(when, unit="D"),
            "amount": np.maximum(amount, 0.01),
        }
    )
    return users, orders, {"x": x.astype(float), "t_x": last, "T": age_days}


def store_path(out: Path, n: int, seed: int) -> Path:
    return out / f"predict-{n}u-s{seed}.duckdb"


def generate(out: Path, n: int, seed: int) -> Path:
    """The store (made once, then reused): users and their completed orders."""
    path = store_path(out, n, seed)
    if path.exists():
        return path
    import duckdb
    import numpy as np

    from segmint.store import open_store

    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.duckdb")
    for f in (tmp, Path(str(tmp) + ".wal")):
        f.unlink(missing_ok=True)
    print(f"generating {path} ...", flush=True)
    t0 = time.perf_counter()
    users, orders, truth = simulate(n, seed)
    np.savez(path.with_suffix(".truth.npz"), **truth)
    open_store(str(tmp)).close()  # the schema; the rows go in with SQL
    con = duckdb.connect(str(tmp))
    con.execute("SET enable_progress_bar = false")
    con.register("u", users)
    con.register("o", orders)
    con.execute("INSERT INTO users (user_id, created_at) SELECT user_id, created_at FROM u")
    con.execute(
        "INSERT INTO orders (order_id, user_id, ts, amount, currency, status) "
        "SELECT order_id, user_id, ts, amount, 'USD', 'completed' FROM o ORDER BY ts"
    )
    con.execute("CHECKPOINT")
    con.close()
    tmp.rename(path)
    print(
        f"  {fmt_int(len(users))} customers, {fmt_int(len(orders))} orders in "
        f"{time.perf_counter() - t0:.1f} s, {fmt_bytes(path.stat().st_size)}",
        flush=True,
    )
    return path


# -- segmint -----------------------------------------------------------------------------------


def child_segmint(src: Path, out: Path) -> dict[str, Any]:
    """Summary SQL, both fits and the scores, each timed; then predict_clv end to end."""
    import numpy as np

    from segmint.config import PredictSettings
    from segmint.predict import BetaGeo, GammaGamma, customer_summary, predict_clv, score
    from segmint.store import open_store

    # one-time buyers at the population mean, as lifetimes computes them (compared below)
    settings = PredictSettings(
        horizon_days=HORIZON_DAYS, discount_rate=YEARLY_DISCOUNT, one_time_buyers="population"
    )
    stages: dict[str, float] = {}
    store = open_store(str(src), read_only=True)
    with Timer() as t:
        summary = customer_summary(store, datetime.fromisoformat(AS_OF))
    stages["summary"] = t.seconds
    store.close()
    x, t_x, T, m = (summary[c].to_numpy(float) for c in ("x", "t_x", "T", "m"))
    with Timer() as t:
        model = BetaGeo().fit(x, t_x, T)
    stages["bgnbd_fit"] = t.seconds
    with Timer() as t:
        spend = GammaGamma().fit(x, m)
    stages["spend_fit"] = t.seconds
    with Timer() as t:
        scores = score(summary, model, spend, settings)
    stages["score"] = t.seconds
    stages["fit_score"] = stages["bgnbd_fit"] + stages["spend_fit"] + stages["score"]
    np.savez(out / "summary.npz", x=x, t_x=t_x, T=T, m=m, clv=scores["clv"].to_numpy())
    work = out / f"work-{os.getpid()}.duckdb"
    shutil.copyfile(src, work)
    try:
        store = open_store(str(work))
        with Timer() as t:
            run = predict_clv(store, settings, as_of=datetime.fromisoformat(AS_OF))
        stages["predict_clv"] = t.seconds
        store.close()
    finally:
        for f in (work, Path(str(work) + ".wal")):
            f.unlink(missing_ok=True)
    assert model.fit_ is not None and spend.fit_ is not None
    # untimed: the same model on the simulation's exact summary (continuous times, every
    # purchase): what the estimator recovers before the store counts purchase days
    truth = np.load(src.with_suffix(".truth.npz"))
    exact = BetaGeo().fit(truth["x"], truth["t_x"], truth["T"])
    assert exact.fit_ is not None
    distinct = len(np.unique(np.column_stack([x, t_x, T]), axis=0))
    return {
        "stages": stages,
        "n_customers": len(summary),
        "n_repeat": int((x > 0).sum()),
        "distinct_rows": distinct,
        "purchase_fit": model.fit_.to_dict(),
        "exact_fit": exact.fit_.to_dict(),
        "spend_fit": spend.fit_.to_dict(),
        "clv_total": float(scores["clv"].sum()),
        "holdout": {
            k: run.details.get("holdout", {}).get(k)
            for k in ("total_actual", "total_predicted", "correlation")
        },
        "peak_rss": peak_rss_bytes(),
    }


def child_churn(src: Path, out: Path) -> dict[str, Any]:
    """predict_churn end to end on the same store (not part of the 30 s target: three
    as-of feature computations, three purchase-model fits, two boosting fits on at most
    30,000 customers, permutation importances, scoring every customer), with the time of
    its main parts from cProfile."""
    import cProfile
    import pstats

    from segmint.config import PredictSettings
    from segmint.predict import predict_churn
    from segmint.store import open_store

    work = out / f"churn-{os.getpid()}.duckdb"
    shutil.copyfile(src, work)
    profile = cProfile.Profile()
    try:
        store = open_store(str(work))
        with Timer() as t:
            profile.enable()
            run = predict_churn(store, PredictSettings(), as_of=datetime.fromisoformat(AS_OF))
            profile.disable()
        store.close()
    finally:
        for f in (work, Path(str(work) + ".wal")):
            f.unlink(missing_ok=True)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    parts = {
        "features as of 3 cut-offs": "features_as_of",
        "customer summary + purchase model, 3 cut-offs": "_summary_columns",
        "boosting predictions (holdout, importances, scoring)": "_predict",
        "leak guard (each column's AUC alone)": "_guard",
        "labels": "_labels",
        "boosting fits": "_train",
    }
    where = {
        label: max((v[3] for (_, _, fn), v in stats.items() if fn == name), default=0.0)
        for label, name in parts.items()
    }
    auc = run.metrics["auc"]
    return {
        "seconds": t.seconds,
        "n_scored": run.metrics["n_scored"],
        "n_train": run.metrics["n_train"],
        "n_holdout": run.metrics["n_holdout"],
        "auc": auc["model"],
        "auc_p_alive": auc["baseline_p_alive"],
        "auc_no_purchase": auc["baseline_no_purchase"],
        "where": where,
        "peak_rss": peak_rss_bytes(),
    }


# -- the usual way: a Python loop per customer --------------------------------------------------


def _rowwise_negll(z: Any, x: Any, t_x: Any, T: Any) -> float:
    """BG/NBD negative log-likelihood, one customer at a time (Hardie's A1..A4)."""
    from math import exp, lgamma, log

    r, alpha, a, b = (exp(v) for v in z)
    total = 0.0
    for xi, txi, Ti in zip(x, t_x, T, strict=True):
        a1 = lgamma(r + xi) - lgamma(r) + r * log(alpha)
        a2 = lgamma(a + b) + lgamma(b + xi) - lgamma(b) - lgamma(a + b + xi)
        a3 = -(r + xi) * log(alpha + Ti)
        if xi > 0:
            a4 = log(a) - log(b + xi - 1) - (r + xi) * log(alpha + txi)
            top = max(a3, a4)
            total += a1 + a2 + top + log(exp(a3 - top) + exp(a4 - top))
        else:
            total += a1 + a2 + a3
    return -total


def _rowwise_spend_negll(z: Any, x: Any, m: Any) -> float:
    """Gamma-Gamma negative log-likelihood, one repeat buyer at a time."""
    from math import exp, lgamma, log

    p, q, v = (exp(u) for u in z)
    total = 0.0
    for xi, mi in zip(x, m, strict=True):
        px = p * xi
        total += (
            lgamma(px + q) - lgamma(px) - lgamma(q) + q * log(v) + (px - 1) * log(mi)
            + px * log(xi) - (px + q) * log(xi * mi + v)
        )  # fmt: skip
    return -total


def _rowwise_scores(params: dict[str, float], x: Any, t_x: Any, T: Any) -> float:
    """P(alive) and eq. 10 at 12 monthly horizons, customer by customer; returns a sum."""
    from math import log

    from scipy.special import hyp2f1

    r, alpha, a, b = (params[k] for k in ("r", "alpha", "a", "b"))
    total = 0.0
    for xi, txi, Ti in zip(x, t_x, T, strict=True):
        odds = a / (b + xi - 1) * ((alpha + Ti) / (alpha + txi)) ** (r + xi) if xi > 0 else 0.0
        total += 1 / (1 + odds)
        for month in range(1, 13):
            t = 30.0 * month
            hyp = hyp2f1(r + xi, b + xi, a + b + xi - 1, t / (alpha + Ti + t))
            tail = (alpha + Ti) / (alpha + Ti + t)
            tail = 0.0 if (r + xi) * log(tail) < -700 else tail ** (r + xi)
            total += (a + b + xi - 1) / (a - 1) * (1 - hyp * tail) / (1 + odds)
    return total


def child_rowwise(out: Path, sample: int) -> dict[str, Any]:
    """One evaluation on everyone; a full fit on a sample; the rest extrapolated."""
    import numpy as np
    from scipy import optimize

    d = np.load(out / "summary.npz")
    x, t_x, T, m = (d[k].tolist() for k in ("x", "t_x", "T", "m"))
    n = len(x)
    repeat = [i for i, xi in enumerate(x) if xi > 0]
    rx, rm = [x[i] for i in repeat], [m[i] for i in repeat]
    start = np.log([1.0, 30.0, 1.0, 1.0])
    with Timer() as t:
        _rowwise_negll(start, x, t_x, T)
    eval_full = t.seconds
    with Timer() as t:
        _rowwise_spend_negll(np.zeros(3), rx, rm)
    spend_eval_full = t.seconds
    rng = np.random.default_rng(0)
    pick = rng.choice(n, size=min(sample, n), replace=False)
    sx, stx, sT = ([v[i] for i in pick] for v in (x, t_x, T))
    with Timer() as t:
        res = optimize.minimize(
            _rowwise_negll, start, args=(sx, stx, sT), method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6},
        )  # fmt: skip
    fit_sample = t.seconds
    spick = [i for i in pick if x[i] > 0]
    with Timer() as t:
        sres = optimize.minimize(
            _rowwise_spend_negll, np.log([1.0, 1.0, 30.0]),
            args=([x[i] for i in spick], [m[i] for i in spick]), method="Nelder-Mead",
            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-6},
        )  # fmt: skip
    spend_fit_sample = t.seconds
    params = dict(zip(("r", "alpha", "a", "b"), np.exp(res.x).tolist(), strict=True))
    with Timer() as t:
        _rowwise_scores(params, sx, stx, sT)
    score_sample = t.seconds
    k = len(sx)
    return {
        "n": n,
        "sample": k,
        "eval_full": eval_full,
        "spend_eval_full": spend_eval_full,
        "fit_sample": fit_sample,
        "fit_sample_nfev": int(res.nfev),
        "fit_sample_params": params,
        "spend_fit_sample": spend_fit_sample,
        "spend_fit_sample_nfev": int(sres.nfev),
        "spend_fit_sample_params": dict(zip(("p", "q", "v"), np.exp(sres.x).tolist(), strict=True)),
        "score_sample": score_sample,
        # extrapolated: the sample's number of evaluations, each at the full-size cost
        "bgnbd_fit_est": res.nfev * eval_full,
        "spend_fit_est": sres.nfev * spend_eval_full,
        "score_est": score_sample * n / k,
        "peak_rss": peak_rss_bytes(),
    }


# -- lifetimes (its own interpreter) -------------------------------------------------------------


def child_lifetimes(out: Path) -> dict[str, Any]:
    """lifetimes' fitters and scores on the same summary (run by the other interpreter)."""
    import lifetimes
    import numpy as np
    import pandas as pd

    d = np.load(out / "summary.npz")
    frame = pd.DataFrame({k: d[k] for k in ("x", "t_x", "T", "m")})
    stages: dict[str, float] = {}
    with Timer() as t:
        bgf = lifetimes.BetaGeoFitter().fit(frame["x"], frame["t_x"], frame["T"])
    stages["bgnbd_fit"] = t.seconds
    repeat = frame[frame["x"] > 0]
    with Timer() as t:
        ggf = lifetimes.GammaGammaFitter().fit(repeat["x"], repeat["m"])
    stages["spend_fit"] = t.seconds
    monthly = (1 + YEARLY_DISCOUNT) ** (30 / 365) - 1  # = segmint's yearly rate per 30 days
    with Timer() as t:
        alive = bgf.conditional_probability_alive(frame["x"], frame["t_x"], frame["T"])
        purchases = bgf.conditional_expected_number_of_purchases_up_to_time(
            HORIZON_DAYS, frame["x"], frame["t_x"], frame["T"]
        )
        value = ggf.conditional_expected_average_profit(frame["x"], frame["m"].fillna(0))
        clv = ggf.customer_lifetime_value(
            bgf, frame["x"], frame["t_x"], frame["T"], frame["m"].fillna(0),
            time=HORIZON_DAYS // 30, discount_rate=monthly, freq="D",
        )  # fmt: skip
    stages["score"] = t.seconds
    stages["fit_score"] = stages["bgnbd_fit"] + stages["spend_fit"] + stages["score"]
    ours = d["clv"]
    theirs = np.asarray(clv, dtype=float)
    finite = np.isfinite(theirs)
    return {
        "version": lifetimes.__version__,
        "stages": stages,
        "params": {k: float(v) for k, v in bgf.params_.items()},
        "spend_params": {k: float(v) for k, v in ggf.params_.items()},
        "n_nan_clv": int((~finite).sum()),
        "clv_total": float(theirs[finite].sum()),
        "clv_max_rel_diff": float(
            np.max(np.abs(theirs[finite] - ours[finite]) / np.maximum(np.abs(ours[finite]), 1))
        ),
        "alive_mean": float(np.nanmean(alive)),
        "purchases_mean": float(np.nanmean(purchases)),
        "value_mean": float(np.nanmean(value)),
        "peak_rss": peak_rss_bytes(),
    }


def run_lifetimes(python: str, out: Path, log: Path) -> dict[str, Any]:
    """Run the lifetimes child with ``python``; a failure is reported, not raised."""
    cmd = [python, str(Path(__file__).resolve()), "child", "lifetimes", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no message)"]
        return {"error": f"exit {proc.returncode}: {tail[0]}"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_seconds"] = time.perf_counter() - t0
    return result


# -- driver --------------------------------------------------------------------------------------


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", choices=["segmint", "rowwise", "lifetimes", "churn"])
    p.add_argument("--store", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--sample", type=int, default=20_000)
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    if a.path == "segmint":
        result = child_segmint(a.store, a.out)
    elif a.path == "rowwise":
        result = child_rowwise(a.out, a.sample)
    elif a.path == "churn":
        result = child_churn(a.store, a.out)
    else:
        result = child_lifetimes(a.out)
    result["load"] = [load_before[0], os.getloadavg()[0]]
    print(json.dumps(result, default=float))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "out" / "predict")
    p.add_argument("--rowwise-sample", type=int, default=20_000)
    p.add_argument("--lifetimes-python", default="/tmp/ltvenv/bin/python")
    p.add_argument("--skip-rowwise", action="store_true")
    p.add_argument("--skip-lifetimes", action="store_true")
    p.add_argument("--skip-churn", action="store_true")
    a = p.parse_args()

    src = generate(a.out, a.users, a.seed)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = a.out / f"run-{stamp}"
    run_dir.mkdir(parents=True)
    log = a.out / f"predict-{stamp}.log"
    script = str(Path(__file__).resolve())
    results: dict[str, Any] = {"facts": machine_facts(), "stamp": stamp, "users": a.users}
    results["facts"]["cpu"] = _cpu_model()
    results["facts"]["numpy"] = __import__("numpy").__version__
    results["facts"]["scipy"] = __import__("scipy").__version__
    print("running segmint ...", flush=True)
    results["segmint"] = run_child(
        [script, "child", "segmint", "--store", str(src), "--out", str(run_dir)], log=log
    )
    if not a.skip_rowwise:
        print(f"running row-wise (sample {fmt_int(a.rowwise_sample)}) ...", flush=True)
        results["rowwise"] = run_child(
            [script, "child", "rowwise", "--out", str(run_dir), "--sample", str(a.rowwise_sample)],
            log=log,
        )
    if not a.skip_lifetimes:
        if Path(a.lifetimes_python).exists():
            print("running lifetimes ...", flush=True)
            results["lifetimes"] = run_lifetimes(a.lifetimes_python, run_dir, log)
        else:
            results["lifetimes"] = {"error": f"no interpreter at {a.lifetimes_python}"}
    if not a.skip_churn:
        print("running churn ...", flush=True)
        results["churn"] = run_child(
            [script, "child", "churn", "--store", str(src), "--out", str(run_dir)], log=log
        )
    (a.out / f"predict-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))
    report = render(results)
    (a.out / f"predict-{stamp}.md").write_text(report)
    shutil.rmtree(run_dir, ignore_errors=True)
    print()
    print(report)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return "?"


def _s(v: float | None, est: bool = False) -> str:
    if v is None:
        return "-"
    return f"~{v:,.0f} s (extrapolated)" if est else f"{v:.2f} s"


def _params_table(seg: dict[str, Any], lt: dict[str, Any] | None) -> str:
    """True parameters against segmint's (store and exact summaries) and lifetimes'."""
    fit, spend, exact = seg["purchase_fit"], seg["spend_fit"], seg["exact_fit"]
    prow = []
    for k, true in [*TRUE_BGNBD.items(), *TRUE_SPEND.items()]:
        f = fit if k in TRUE_BGNBD else spend
        low, high = f["intervals"][k]
        lt_v = (lt.get("params", {}) | lt.get("spend_params", {})).get(k) if lt else None
        ex = ["-", "-"]
        if k in TRUE_BGNBD:
            e_low, e_high = exact["intervals"][k]
            ex = [f"{exact['params'][k]:.4g} ({e_low:.4g} - {e_high:.4g})",
                  f"{(exact['params'][k] - true) / true:+.1%}"]  # fmt: skip
        prow.append(
            [k, f"{true:.4g}", f"{f['params'][k]:.4g} ({low:.4g} - {high:.4g})",
             f"{(f['params'][k] - true) / true:+.1%}", *ex,
             "-" if lt_v is None else f"{lt_v:.4g}"]
        )  # fmt: skip
    headers = ["param", "true", "store (95 % interval)", "error", "exact (95 % interval)",
               "error", "lifetimes (store)"]  # fmt: skip
    return table(headers, prow)


def render(res: dict[str, Any]) -> str:
    seg, rw, lt = res["segmint"], res.get("rowwise"), res.get("lifetimes")
    st = seg["stages"]
    lts = lt.get("stages", {}) if lt and "error" not in lt else {}
    lines = [
        f"{fmt_int(seg['n_customers'])} customers ({fmt_int(seg['n_repeat'])} repeat buyers, "
        f"{fmt_int(seg['distinct_rows'])} distinct (x, t_x, T)); {res['facts']}",
        f"load (1 min) during segmint: {seg['load'][0]:.2f} -> {seg['load'][1]:.2f}",
        "",
    ]
    rw_fit = rw["bgnbd_fit_est"] if rw else None
    rw_spend = rw["spend_fit_est"] if rw else None
    rw_score = rw["score_est"] if rw else None
    rows = [
        ["summary SQL (orders -> x, t_x, T, m)", _s(st["summary"]), "-", "-"],
        ["BG/NBD fit", _s(st["bgnbd_fit"]), _s(rw_fit, True), _s(lts.get("bgnbd_fit"))],
        ["Gamma-Gamma fit", _s(st["spend_fit"]), _s(rw_spend, True), _s(lts.get("spend_fit"))],
        [
            "scores (P(alive), 12 monthly, CLV + interval)",
            _s(st["score"]),
            _s(rw_score, True),
            _s(lts.get("score")),
        ],  # fmt: skip
        [
            "**fit + score**",
            f"**{st['fit_score']:.2f} s**",
            _s((rw_fit or 0) + (rw_spend or 0) + (rw_score or 0), True) if rw else "-",
            _s(lts.get("fit_score")),
        ],  # fmt: skip
        ["predict_clv end to end (+ holdout check, saved run)", _s(st["predict_clv"]), "-", "-"],
    ]
    lines.append(table(["step", "segmint", "row-wise Python loop", "lifetimes"], rows))
    if rw:
        lines += [
            "",
            f"row-wise: one likelihood evaluation on {fmt_int(rw['n'])} customers "
            f"{rw['eval_full']:.2f} s (Gamma-Gamma: {rw['spend_eval_full']:.2f} s); "
            f"Nelder-Mead on {fmt_int(rw['sample'])} customers: {rw['fit_sample_nfev']} "
            f"evaluations, {rw['fit_sample']:.1f} s (Gamma-Gamma {rw['spend_fit_sample_nfev']}, "
            f"{rw['spend_fit_sample']:.1f} s); scores on the sample {rw['score_sample']:.1f} s. "
            "Full-size figures = evaluations x full-size evaluation time (not run).",
        ]
    if lt and "error" in lt:
        lines += ["", f"lifetimes: failed ({lt['error']})"]
    elif lt:
        lines += [
            "",
            f"lifetimes {lt['version']}: CLV total {lt['clv_total']:,.0f} vs segmint "
            f"{seg['clv_total']:,.0f}; largest per-customer difference "
            f"{lt['clv_max_rel_diff']:.2e} (relative); {lt['n_nan_clv']} NaN.",
        ]
    lines += [
        "",
        "Parameters recovered (days; true = the simulation's). 'store': fitted on the "
        "summary SQL (purchase days, whole days); 'exact': BG/NBD on the simulation's own "
        "continuous-time summary (untimed).",
        "",
    ]
    lines.append(_params_table(seg, lt))
    ho = seg.get("holdout") or {}
    if ho.get("total_actual"):
        lines += [
            "",
            f"predict_clv's holdout check: {ho['total_predicted']:,.0f} predicted vs "
            f"{ho['total_actual']:,.0f} actual purchases, correlation {ho['correlation']:.3f}",
        ]
    peaks = [f"segmint {fmt_bytes(seg['peak_rss'])}"]
    if rw:
        peaks.append(f"row-wise {fmt_bytes(rw['peak_rss'])}")
    if lts:
        peaks.append(f"lifetimes {fmt_bytes(lt['peak_rss'])}")
    lines += ["", "peak RSS: " + ", ".join(peaks)]
    ch = res.get("churn")
    if ch:
        lines += [
            "",
            f"churn (predict_churn end to end, not in the target): {ch['seconds']:.1f} s for "
            f"{fmt_int(ch['n_scored'])} customers scored (trained on {fmt_int(ch['n_train'])}, "
            f"checked on {fmt_int(ch['n_holdout'])}); holdout AUC {ch['auc']:.3f} "
            f"(BG/NBD: 1 - P(alive) {ch['auc_p_alive']:.3f}, P(no purchase) "
            f"{ch['auc_no_purchase']:.3f}); peak RSS {fmt_bytes(ch['peak_rss'])}",
            "",
            table(
                ["part (cProfile, cumulative)", "seconds"],
                [[k, f"{v:.1f}"] for k, v in ch["where"].items()],
            ),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
