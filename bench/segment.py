"""Segmentation benchmark (issue 3): features + auto-k K-Means, segmint vs the tutorial way.

Generates a DuckDB store (cached in ``--out``) with ``--users`` users and ``--orders``
orders in five latent groups (order rate, basket size, discount habit, recency and tenure
differ by group, so clusters exist), and a small store (``--small-users`` /
``--small-orders``) made the same way. Then, in the same run, each path in its own process:

* ``segmint``   ``compute_features(store)`` (every built-in feature, stored as a run), then
  ``FeatureScaler(scaling='standard', log1p='auto')`` on six features and
  ``AutoKMeans('auto', k_min=2, k_max=10)``; timed end to end from ``open_store``. Run at
  the big size with the k-means fit inside ``threadpool_limits(1)`` and with the default
  thread pools, and at the small size.
* ``segmint full``  ``compute_features`` + ``run_segmentation(..., ClusterSegmentation(
  type='kmeans'), save=True)``: auto-k, evaluation (bootstrap stability), surrogate tree,
  names, random-forest assigner and the stored assignments. Reported, not a target.
* ``tutorial``  the usual notebook recipe at the small size: the orders and users tables
  read into pandas, groupby features, ``log1p`` on the money and count columns,
  ``StandardScaler``, then for k = 2..10 ``KMeans(n_clusters=k, n_init=10)`` and a full
  (unsampled) ``silhouette_score``; the best silhouette wins. Its cost at the big size is
  extrapolated: silhouette time x (n_big / n_small)^2 + the rest x (n_big / n_small).

Quality: the full silhouette of segmint's labels at the small size is computed (untimed) on
the tutorial's feature matrix, so both labelings are scored in the same space.

Targets (2 cores): big run end to end within 60 s with peak RSS under 4 GiB; at the small
size at least 50x faster than the tutorial, choosing the same k or one whose full
silhouette is within 0.02 of the tutorial's best.

    .venv/bin/python bench/segment.py                      # 1M users / 20M orders + 50k
    .venv/bin/python bench/segment.py --users 200000 --orders 4000000 --skip-tutorial
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import GIB, Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table
from _scale_data import FEATURES, generate

HERE = Path(__file__).resolve().parent

#: What ``log1p='auto'`` transforms among them (the tutorial does the same by hand).
LOG1P = ["frequency", "monetary", "avg_order_value"]
K_RANGE = range(2, 11)


# -- data ---------------------------------------------------------------------------------
# The store generator is shared with bench/spark.py (bench/_scale_data.py): users and orders
# only here, in the same five latent groups, cached under --out by size.


def _work_copy(src: Path, tag: str) -> Path:
    """A private copy of the cached store (runs write feature and segment tables)."""
    dst = src.with_name(f"{src.stem}.work-{tag}-{os.getpid()}.duckdb")
    shutil.copyfile(src, dst)
    return dst


def _drop(path: Path) -> None:
    for p in (path, Path(str(path) + ".wal")):
        p.unlink(missing_ok=True)


# -- children -------------------------------------------------------------------------------


def child_segmint(src: Path, threads: str, save_dir: Path | None) -> dict[str, Any]:
    """compute_features + FeatureScaler + AutoKMeans, timed from open_store."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from segmint.features import compute_features
    from segmint.segments._cluster import AutoKMeans
    from segmint.segments._scaling import FeatureScaler
    from segmint.store import open_store

    work = _work_copy(src, "segmint")
    stages: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        store = open_store(str(work))
        stages["open_store"] = time.perf_counter() - t0
        with Timer() as t:
            run = compute_features(store)
        stages["features"] = t.seconds
        with Timer() as t:
            X = run.data.set_index("user_id")[FEATURES].astype("float64")
            Xs = FeatureScaler(scaling="standard", log1p="auto").fit_transform(X)
        stages["scale"] = t.seconds
        with Timer() as t:
            model = AutoKMeans("auto", k_min=2, k_max=10, random_state=0)
            if threads == "1":
                with threadpool_limits(limits=1):
                    model.fit(Xs)
            else:
                model.fit(Xs)
        stages["auto_k"] = t.seconds
        total = time.perf_counter() - t0
        peak = peak_rss_bytes()
        store.close()
    finally:
        _drop(work)
    if save_dir is not None:
        np.save(save_dir / "segmint_labels.npy", np.asarray(model.labels_))
        np.save(save_dir / "segmint_X.npy", np.asarray(Xs, dtype="float64"))
        np.save(save_dir / "user_ids.npy", X.index.to_numpy().astype(str))
    scores = model.k_scores_
    return {
        "seconds": total,
        "stages": stages,
        "peak_rss": peak,
        "n_users": int(len(X)),
        "k": int(model.n_clusters_),
        "decision": model.decision_,
        "k_scores": scores.reset_index()[
            ["k", "silhouette", "calinski_harabasz", "davies_bouldin", "inertia", "mean_rank"]
        ].to_dict(orient="records"),
        "algorithm": model.algorithm_,
        "scan_size": model.scan_size_,
    }


def child_full(src: Path) -> dict[str, Any]:
    """compute_features + run_segmentation(kmeans, save=True), with a stage breakdown."""
    import segmint.segments._clustering as clustering
    import segmint.segments._segment as segment
    from segmint.config import ClusterSegmentation
    from segmint.features import compute_features
    from segmint.segments import run_segmentation
    from segmint.store import open_store

    stages: dict[str, float] = {}

    def timed(module: Any, name: str, label: str) -> None:
        inner = getattr(module, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                stages[label] = stages.get(label, 0.0) + time.perf_counter() - s

        setattr(module, name, wrapper)

    # time the parts of run_clustering without changing them (module-level names only)
    timed(clustering, "evaluate_clustering", "evaluate")
    timed(clustering, "name_clusters", "names")
    timed(segment, "save_run", "save")
    timed(segment, "segment_metrics", "segment_metrics")
    for cls, label in (
        (clustering.AutoKMeans, "auto_k"),
        (clustering.SurrogateTree, "surrogate_tree"),
        (clustering.SegmentAssigner, "assigner"),
        (clustering.FeatureScaler, "scale"),
    ):
        timed(cls, "fit", label)

    work = _work_copy(src, "full")
    try:
        t0 = time.perf_counter()
        store = open_store(str(work))
        stages["open_store"] = time.perf_counter() - t0
        with Timer() as t:
            run = compute_features(store)
        stages["features"] = t.seconds
        spec = ClusterSegmentation(type="kmeans", features=FEATURES)
        with Timer() as t:
            result = run_segmentation(store, "clusters", spec, run.data, save=True)
        stages["run_segmentation"] = t.seconds
        total = time.perf_counter() - t0
        peak = peak_rss_bytes()
        store.close()
    finally:
        _drop(work)
    return {
        "seconds": total,
        "stages": stages,
        "peak_rss": peak,
        "n_users": int(len(result.assignments)),
        "k": int(result.details["n_clusters"]),
        "silhouette_sampled": result.metrics.get("silhouette"),
        "stability": result.metrics.get("stability"),
    }


def _tutorial_features(orders: Any, users: Any) -> Any:
    """RFM-style features with pandas groupby, as a notebook would (same definitions)."""
    import numpy as np
    import pandas as pd

    latest = orders["ts"].max()
    as_of = latest.tz_convert("UTC").normalize() + pd.Timedelta(days=1)
    as_of_day = as_of.tz_localize(None)
    done = orders[(orders["status"] == "completed") & (orders["ts"] < as_of)]
    g = done.groupby("user_id")
    f = pd.DataFrame(
        {
            "last_ts": g["ts"].max(),
            "frequency": g.size(),
            "monetary": g["amount"].sum(),
            "discount": g["discount"].sum(),
        }
    )
    users = users[users["created_at"] < as_of].set_index("user_id")
    f = users[["created_at"]].join(f, how="left")
    day = lambda s: s.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()  # noqa: E731
    f["recency_days"] = (as_of_day - day(f["last_ts"])).dt.days
    f["frequency"] = f["frequency"].fillna(0)
    f["monetary"] = f["monetary"].fillna(0.0)
    f["avg_order_value"] = f["monetary"] / f["frequency"].replace(0, np.nan)
    f["tenure_days"] = (as_of_day - day(f["created_at"])).dt.days
    f["discount_share"] = f["discount"] / (f["monetary"] + f["discount"]).replace(0, np.nan)
    return f[FEATURES].astype("float64").sort_index()


def child_tutorial(src: Path, save_dir: Path | None) -> dict[str, Any]:
    """pandas features, StandardScaler, KMeans(n_init=10) + full silhouette for k=2..10."""
    import duckdb
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    stages: dict[str, float] = {"kmeans": 0.0, "silhouette": 0.0}
    per_k: list[dict[str, Any]] = []
    labelings: dict[int, Any] = {}
    t0 = time.perf_counter()
    with Timer() as t:
        con = duckdb.connect(str(src), read_only=True)
        con.execute("SET TimeZone='UTC'")
        orders = con.execute("SELECT * FROM orders").df()
        users = con.execute("SELECT * FROM users").df()
        con.close()
    stages["read"] = t.seconds
    with Timer() as t:
        F = _tutorial_features(orders, users)
        del orders, users
        F = F.fillna(F.median())
        for c in LOG1P:
            F[c] = np.log1p(F[c])
        X = StandardScaler().fit_transform(F)
    stages["features"] = t.seconds
    for k in K_RANGE:
        with Timer() as tk:
            labels = KMeans(n_clusters=k, n_init=10, random_state=0).fit(X).labels_
        with Timer() as ts:
            sil = float(silhouette_score(X, labels))
        stages["kmeans"] += tk.seconds
        stages["silhouette"] += ts.seconds
        per_k.append(
            {"k": k, "silhouette": sil, "kmeans_s": tk.seconds, "silhouette_s": ts.seconds}
        )
        labelings[k] = labels
        print(
            f"  tutorial k={k}: silhouette {sil:.4f} ({tk.seconds:.1f}+{ts.seconds:.1f} s)",
            flush=True,
        )
    best = max(per_k, key=lambda r: r["silhouette"])
    total = time.perf_counter() - t0
    peak = peak_rss_bytes()
    out: dict[str, Any] = {
        "seconds": total,
        "stages": stages,
        "peak_rss": peak,
        "n_users": int(X.shape[0]),
        "k": int(best["k"]),
        "full_silhouette": best["silhouette"],
        "per_k": per_k,
    }
    # -- untimed: score segmint's labels in the same space --------------------------------
    if save_dir is not None and (save_dir / "segmint_labels.npy").exists():
        seg_labels = np.load(save_dir / "segmint_labels.npy")
        seg_ids = np.load(save_dir / "user_ids.npy")
        seg_X = np.load(save_dir / "segmint_X.npy")
        same_rows = bool(np.array_equal(seg_ids, F.index.to_numpy().astype(str)))
        out["same_rows"] = same_rows
        if same_rows:
            out["max_abs_diff_scaled_features"] = float(np.abs(seg_X - X).max())
            with Timer() as t:
                out["segmint_full_silhouette"] = float(silhouette_score(X, seg_labels))
                out["segmint_full_silhouette_own_space"] = float(
                    silhouette_score(seg_X, seg_labels)
                )
            out["quality_seconds"] = t.seconds
            seg_k = len(np.unique(seg_labels))
            out["tutorial_silhouette_at_segmint_k"] = next(
                (r["silhouette"] for r in per_k if r["k"] == seg_k), None
            )
    return out


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", choices=["segmint", "full", "tutorial"])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--threads", default="all")
    p.add_argument("--save-dir", type=Path)
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    if a.path == "segmint":
        result = child_segmint(a.store, a.threads, a.save_dir)
    elif a.path == "full":
        result = child_full(a.store)
    else:
        result = child_tutorial(a.store, a.save_dir)
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, default=float))


# -- driver -----------------------------------------------------------------------------------


def _load(r: dict[str, Any]) -> str:
    return f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=20_000_000)
    p.add_argument("--small-users", type=int, default=50_000)
    p.add_argument("--small-orders", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--skip-tutorial", action="store_true")
    p.add_argument("--skip-full", action="store_true")
    a = p.parse_args()

    big = generate(a.out, a.users, a.orders)
    small = generate(a.out, a.small_users, a.small_orders)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = a.out / f"segment-{stamp}.log"
    save_dir = a.out / f"segment-{stamp}-small"
    save_dir.mkdir(parents=True, exist_ok=True)
    script = str(Path(__file__).resolve())

    def child(*args: str) -> dict[str, Any]:
        print(f"running {' '.join(args)} ...", flush=True)
        r = run_child([script, "child", *args], log=log)
        print(f"  {r['seconds']:.1f} s, peak {fmt_bytes(r['peak_rss'])}, k={r['k']}", flush=True)
        return r

    results: dict[str, Any] = {"facts": machine_facts(), "stamp": stamp}
    results["facts"]["scikit-learn"] = __import__("sklearn").__version__
    results["facts"]["numpy"] = __import__("numpy").__version__
    # headline: k-means in one thread (what run_clustering does); default pools for comparison
    results["big_1"] = child("segmint", "--store", str(big), "--threads", "1")
    results["big_all"] = child("segmint", "--store", str(big), "--threads", "all")
    if not a.skip_full:
        results["full"] = child("full", "--store", str(big))
    results["small_all"] = child("segmint", "--store", str(small), "--threads", "all")
    results["small"] = child(
        "segmint", "--store", str(small), "--threads", "1", "--save-dir", str(save_dir)
    )
    if not a.skip_tutorial:
        results["tutorial"] = child("tutorial", "--store", str(small), "--save-dir", str(save_dir))
    (a.out / f"segment-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))
    report = render(results, a)
    (a.out / f"segment-{stamp}.md").write_text(report)
    print()
    print(report)


def render(res: dict[str, Any], a: argparse.Namespace) -> str:
    scale = a.users / a.small_users
    headers = [
        "path",
        "users",
        "seconds",
        "peak RSS",
        "k",
        "full silhouette",
        "speed-up",
        "load 1m",
    ]
    rows: list[list[str]] = []
    small, tut = res["small"], res.get("tutorial")
    extrap = None
    if tut:
        sil = tut["stages"]["silhouette"]
        extrap = sil * scale**2 + (tut["seconds"] - sil) * scale

    def speed(base: float | None, r: dict[str, Any], note: str = "") -> str:
        return f"{base / r['seconds']:,.0f}x{note}" if base else "-"

    def row(label: str, r: dict[str, Any], sil: str = "-", up: str = "-") -> None:
        rows.append(
            [
                label,
                fmt_int(r["n_users"]),
                f"{r['seconds']:.1f}",
                fmt_bytes(r["peak_rss"]),
                str(r["k"]),
                sil,
                up,
                _load(r),
            ]
        )

    ext = " (vs extrapolation)"
    row(
        "segmint features + auto-k, k-means in 1 thread",
        res["big_1"],
        up=speed(extrap, res["big_1"], ext),
    )
    row(
        "segmint features + auto-k, default threads",
        res["big_all"],
        up=speed(extrap, res["big_all"], ext),
    )
    if "full" in res:
        row("segmint features + run_segmentation (full, saved)", res["full"])
    seg_sil = "-"
    if tut and "segmint_full_silhouette" in tut:
        seg_sil = f"{tut['segmint_full_silhouette']:.4f}"
    base = tut["seconds"] if tut else None
    row("segmint features + auto-k, k-means in 1 thread", small, sil=seg_sil, up=speed(base, small))
    if "small_all" in res:
        row(
            "segmint features + auto-k, default threads",
            res["small_all"],
            up=speed(base, res["small_all"]),
        )
    if tut and extrap:
        row(
            "tutorial: pandas + KMeans(n_init=10) + full silhouette",
            tut,
            sil=f"{tut['full_silhouette']:.4f}",
            up="1x",
        )
        rows.append(
            [
                "tutorial, extrapolated (not measured)",
                fmt_int(a.users),
                f"{extrap:,.0f} (~{extrap / 3600:.1f} h)",
                "-",
                "-",
                "-",
                "1x",
                "-",
            ]
        )
    f = res["facts"]
    lines = [
        "## Segmentation (issue 3)",
        "",
        "    .venv/bin/python bench/segment.py"
        + (f" --users {a.users} --orders {a.orders}" if a.users != 1_000_000 else ""),
        "",
        f"Run {res['stamp']} UTC; Python {f['python']}, DuckDB {f['duckdb']}, "
        f"scikit-learn {f['scikit-learn']}, pandas {f['pandas']}, numpy {f['numpy']}; "
        f"{f['cpus']} cores, {f.get('memory_gib', '?')} GiB. `load 1m` is the 1-minute load "
        "average before / after each path.",
        "",
        table(headers, rows),
        "",
        "Stages (seconds):",
        "",
    ]
    for key in ("big_1", "big_all", "full", "small", "small_all", "tutorial"):
        if key in res:
            st = ", ".join(f"{k} {v:.2f}" for k, v in res[key]["stages"].items())
            lines.append(f"- `{key}`: {st}")
    if tut:
        lines += [
            "",
            "Tutorial per k (full silhouette): "
            + ", ".join(f"k={r['k']} {r['silhouette']:.4f}" for r in tut["per_k"]),
        ]
        for key in (
            "max_abs_diff_scaled_features",
            "segmint_full_silhouette",
            "tutorial_silhouette_at_segmint_k",
        ):
            if key in tut:
                lines.append(f"- {key}: {tut[key]}")
    lines += ["", "Targets:", ""]
    big = res["big_1"]
    ok = big["seconds"] <= 60 and big["peak_rss"] < 4 * GIB
    lines.append(
        f"- {a.users:,} users end to end within 60 s, peak under 4 GiB: "
        f"{'met' if ok else 'NOT met'} ({big['seconds']:.1f} s, {fmt_bytes(big['peak_rss'])})"
    )
    if tut:
        up = tut["seconds"] / small["seconds"]
        lines.append(
            f"- {a.small_users:,} users at least 50x faster than the tutorial: "
            f"{'met' if up >= 50 else 'NOT met'} ({up:.0f}x)"
        )
        if small["k"] == tut["k"]:
            lines.append(f"- same k as the tutorial: met (k={small['k']})")
        elif "segmint_full_silhouette" in tut:
            gap = tut["full_silhouette"] - tut["segmint_full_silhouette"]
            lines.append(
                f"- k={small['k']} vs the tutorial's k={tut['k']}: full silhouette "
                f"{gap:+.4f} below the tutorial's best: {'met' if gap <= 0.02 else 'NOT met'}"
            )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
