"""Recommendation benchmark (issue 5): ALS fit + top-10 for every user, segmint vs implicit.

Generates (once, cached in ``--out``) a deterministic interaction matrix of ``--users`` x
``--items`` with about ``--per-user`` interactions per user: items belong to 50
categories with lognormal popularity, every user has two favourite categories and takes
80% of their items from them. Then, each path in its own process, on the same matrix:

* ``implicit``  ``implicit.cpu.als.AlternatingLeastSquares(factors, iterations)`` fitted
  with BLAS held at one thread, then its own
  ``recommend(userids, user_items[userids], N=10, filter_already_liked_items=True)`` for
  every user (in batches of 100,000 users, as one call would hold 1M x 20k scores).
* ``segmint``   ``ALSRecommender`` (same parameters, ``weighting='none'`` so the same
  matrix reaches ALS) fitted through segmint, then ``recommend_batches`` for every user:
  filtering of bought items, top-10, a reason per item ("because you bought X") and the
  Arrow tables that are written to the store. Also: the lists without reasons
  (``recommend_items``), and single-user ``recommend`` latency (p50/p99 over 2,000 users
  after fit, one user per call, the full DataFrame with reasons).
* ``floor``     the bare score products (user factors x item factors for every user, in
  segmint's blocks and threads, nothing else): the floor of any top-10 over full scores.
* ``store``     (``--store``) the segmint run written to a DuckDB file with
  ``recommend_all``, then ``recommend_for_user`` latency from the stored run.

Targets (2 cores): top-10 with reasons for every user in under 30 s (issue 16); segmint end
to end (fit + all lists) within 1.5x of implicit's;
single-user p99 under 5 ms; peak RSS under 8 GiB.

    .venv/bin/python bench/recommend.py                       # 1M users x 20k items
    .venv/bin/python bench/recommend.py --users 100000 --items 5000 --store
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _common import GIB, Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table

HERE = Path(__file__).resolve().parent
N_CATEGORIES = 50
SEED = 20261126


# -- data -------------------------------------------------------------------------------------


def data_path(out: Path, n_users: int, n_items: int, per_user: float) -> Path:
    return out / f"recommend-{n_users}u-{n_items}i-{per_user:g}.npz"


def generate(out: Path, n_users: int, n_items: int, per_user: float) -> Path:
    """Create (once) the interaction matrix as CSR arrays in an .npz file."""
    path = data_path(out, n_users, n_items, per_user)
    if path.exists():
        return path
    import scipy.sparse as sp

    out.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} ...", flush=True)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    item_cat = np.sort(rng.integers(0, N_CATEGORIES, n_items))
    pop = rng.lognormal(0.0, 1.2, n_items)
    # cumulative popularity within each category, for inverse-CDF draws
    cum = np.cumsum(pop)
    cat_start = np.searchsorted(item_cat, np.arange(N_CATEGORIES))
    cat_end = np.searchsorted(item_cat, np.arange(N_CATEGORIES), side="right")
    base = np.where(cat_start > 0, cum[np.maximum(cat_start - 1, 0)], 0.0)
    span = cum[np.maximum(cat_end - 1, 0)] - base
    fav = rng.integers(0, N_CATEGORIES, (n_users, 2))
    counts = 1 + rng.poisson(per_user - 1, n_users)
    users = np.repeat(np.arange(n_users), counts)
    n = users.size
    from_fav = rng.random(n) < 0.8
    cat = np.where(from_fav, fav[users, rng.integers(0, 2, n)], rng.integers(0, N_CATEGORIES, n))
    target = base[cat] + rng.random(n) * span[cat]
    items = np.minimum(np.searchsorted(cum, target), n_items - 1)
    qty = (1 + rng.poisson(0.3, n)).astype(np.float32)
    m = sp.csr_matrix((qty, (users, items)), shape=(n_users, n_items), dtype=np.float32)
    m.sum_duplicates()
    m.sort_indices()
    np.savez(path, data=m.data, indices=m.indices, indptr=m.indptr, shape=np.array(m.shape))
    print(
        f"  {fmt_int(n_users)} x {fmt_int(n_items)}, {fmt_int(m.nnz)} non-zeros "
        f"in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return path


def load(path: Path) -> Any:
    import scipy.sparse as sp

    z = np.load(path)
    return sp.csr_matrix(
        (z["data"], z["indices"], z["indptr"]), shape=tuple(int(x) for x in z["shape"])
    )


# -- children ---------------------------------------------------------------------------------


def child_implicit(path: Path, factors: int, iterations: int) -> dict[str, Any]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    m = load(path)
    out: dict[str, Any] = {"nnz": int(m.nnz), "n_users": m.shape[0], "n_items": m.shape[1]}
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors, iterations=iterations, regularization=0.1, random_state=0
        )
        with Timer() as t:
            model.fit(m, show_progress=False)
        out["fit_seconds"] = t.seconds
        users = np.arange(m.shape[0])
        step = 100_000
        first = None
        with Timer() as t:
            for at in range(0, users.size, step):  # batches of users, not a loop per user
                u = users[at : at + step]
                ids, _ = model.recommend(u, m[u], N=10, filter_already_liked_items=True)
                first = ids if first is None else first
        out["recommend_seconds"] = t.seconds
        out["recommend_cpu_seconds"] = t.cpu_seconds
    out["seconds"] = out["fit_seconds"] + out["recommend_seconds"]
    out["peak_rss"] = peak_rss_bytes()
    return out


def child_segmint(path: Path, factors: int, iterations: int) -> dict[str, Any]:
    from segmint.recommend import ALSRecommender, Interactions
    from segmint.recommend._base import n_cpus

    m = load(path)
    out: dict[str, Any] = {"nnz": int(m.nnz), "n_users": m.shape[0], "n_items": m.shape[1]}
    with Timer() as t:
        data = Interactions.from_matrix(m)
    out["wrap_seconds"] = t.seconds
    model = ALSRecommender(
        factors=factors, iterations=iterations, regularization=0.1, alpha=1.0, weighting="none"
    )
    with Timer() as t:
        model.fit(data)
    out["fit_seconds"] = t.seconds
    jobs = n_cpus()
    n_rows = 0
    with Timer() as t:
        for batch in model.recommend_batches(data.user_ids, 10, n_jobs=jobs):
            n_rows += batch.num_rows
    out["recommend_seconds"] = t.seconds
    out["recommend_cpu_seconds"] = t.cpu_seconds
    out["rows"] = n_rows
    out["n_jobs"] = jobs
    out["seconds"] = out["fit_seconds"] + out["recommend_seconds"]
    with Timer() as t:
        model.recommend_items(data.user_ids, 10)
    out["items_only_seconds"] = t.seconds
    # single users, one call each, after the fit
    rng = np.random.default_rng(1)
    picks = data.user_ids[rng.integers(0, data.n_users, 2000)]
    lat = []
    for uid in picks:  # one request per user: this is what is being measured
        t0 = time.perf_counter()
        model.recommend(uid, 10)
        lat.append(time.perf_counter() - t0)
    out["single_p50_ms"] = float(np.percentile(lat, 50) * 1000)
    out["single_p99_ms"] = float(np.percentile(lat, 99) * 1000)
    out["peak_rss"] = peak_rss_bytes()
    return out


def child_floor(path: Path, factors: int) -> dict[str, Any]:
    """The bare score products: every user's factors times every item's, nothing else.

    Random factors of the same shapes (the speed of sgemm does not depend on the values),
    the same blocks of users and worker threads as segmint, BLAS held at one thread per
    worker: what no top-10 over full scores can beat.
    """
    from concurrent.futures import ThreadPoolExecutor

    from segmint.recommend._base import n_cpus, one_blas_thread

    m = load(path)
    n_users, n_items = m.shape
    rng = np.random.default_rng(0)
    users = rng.standard_normal((n_users, factors), dtype=np.float32)
    items_t = np.ascontiguousarray(rng.standard_normal((n_items, factors), dtype=np.float32).T)
    size = max(16, min(4096, (1 << 22) // n_items))
    size -= size % 16
    jobs = n_cpus()

    def product(at: int) -> float:
        return float((users[at : at + size] @ items_t)[0, 0])

    out: dict[str, Any] = {"nnz": int(m.nnz), "n_users": n_users, "n_items": n_items}
    with one_blas_thread(), ThreadPoolExecutor(max_workers=jobs) as pool, Timer() as t:
        for _ in pool.map(product, range(0, n_users, size)):
            pass
    out["recommend_seconds"] = t.seconds
    out["recommend_cpu_seconds"] = t.cpu_seconds
    out["seconds"] = t.seconds
    out["n_jobs"] = jobs
    out["batch_size"] = size
    out["peak_rss"] = peak_rss_bytes()
    return out


def child_store(path: Path, factors: int, iterations: int, work: Path) -> dict[str, Any]:
    from segmint.recommend import (
        ALSRecommender,
        Interactions,
        recommend_all,
        recommend_for_user,
    )
    from segmint.store import open_store

    m = load(path)
    for p in (work, Path(str(work) + ".wal")):
        p.unlink(missing_ok=True)
    store = open_store(str(work))
    data = Interactions.from_matrix(m)
    model = ALSRecommender(
        factors=factors, iterations=iterations, regularization=0.1, alpha=1.0, weighting="none"
    )
    out: dict[str, Any] = {"nnz": int(m.nnz), "n_users": m.shape[0]}
    with Timer() as t:
        run = recommend_all(store, model, n=10, interactions=data, user_ids=data.user_ids)
    out["seconds"] = t.seconds
    out["fit_seconds"] = run.metrics["fit_seconds"]
    out["recommend_and_write_seconds"] = t.seconds - run.metrics["fit_seconds"]
    out["rows"] = run.metrics["n_rows"]
    rng = np.random.default_rng(2)
    picks = data.user_ids[rng.integers(0, data.n_users, 500)]
    lat = []
    for uid in picks:  # one lookup per user, as a profile page would do
        t0 = time.perf_counter()
        recommend_for_user(store, str(uid), 10)
        lat.append(time.perf_counter() - t0)
    out["lookup_p50_ms"] = float(np.percentile(lat, 50) * 1000)
    out["lookup_p99_ms"] = float(np.percentile(lat, 99) * 1000)
    store.close()
    out["store_bytes"] = work.stat().st_size
    for p in (work, Path(str(work) + ".wal")):
        p.unlink(missing_ok=True)
    out["peak_rss"] = peak_rss_bytes()
    return out


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", choices=["implicit", "segmint", "floor", "store"])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--factors", type=int, required=True)
    p.add_argument("--iterations", type=int, required=True)
    p.add_argument("--work", type=Path)
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    if a.path == "implicit":
        result = child_implicit(a.data, a.factors, a.iterations)
    elif a.path == "segmint":
        result = child_segmint(a.data, a.factors, a.iterations)
    elif a.path == "floor":
        result = child_floor(a.data, a.factors)
    else:
        result = child_store(a.data, a.factors, a.iterations, a.work)
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
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--per-user", type=float, default=10.0)
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--store", action="store_true", help="also write the run to DuckDB")
    p.add_argument("--skip-implicit", action="store_true")
    a = p.parse_args()

    data = generate(a.out, a.users, a.items, a.per_user)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = a.out / f"recommend-{stamp}.log"
    script = str(Path(__file__).resolve())
    common = ["--data", str(data), "--factors", str(a.factors), "--iterations", str(a.iterations)]

    def child(name: str, *extra: str) -> dict[str, Any]:
        print(f"running {name} ...", flush=True)
        r = run_child([script, "child", name, *common, *extra], log=log)
        print(
            f"  {r['seconds']:.1f} s, peak {fmt_bytes(r['peak_rss'])}, load {_load(r)}",
            flush=True,
        )
        return r

    results: dict[str, Any] = {"facts": machine_facts(), "stamp": stamp, "args": vars(a)}
    results["facts"]["implicit"] = __import__("implicit").__version__
    results["facts"]["numpy"] = np.__version__
    results["facts"]["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if not a.skip_implicit:
        results["implicit"] = child("implicit")
    results["segmint"] = child("segmint")
    results["floor"] = child("floor")
    if a.store:
        results["store"] = child("store", "--work", str(a.out / f"recommend-{stamp}.duckdb"))
    (a.out / f"recommend-{stamp}.json").write_text(json.dumps(results, indent=2, default=str))
    report = render(results, a)
    (a.out / f"recommend-{stamp}.md").write_text(report)
    print()
    print(report)


def render(res: dict[str, Any], a: argparse.Namespace) -> str:
    f = res["facts"]
    seg = res["segmint"]
    imp = res.get("implicit")
    lines = [
        f"{f['date']}, {f['platform']}, {f['cpus']} CPUs, {f.get('memory_gib', '?')} GiB; "
        f"Python {f['python']}, numpy {f['numpy']}, implicit {f['implicit']}.",
        f"Matrix: {fmt_int(seg['n_users'])} users x {fmt_int(seg['n_items'])} items, "
        f"{fmt_int(seg['nnz'])} non-zeros; ALS {a.factors} factors, {a.iterations} "
        "iterations.",
        "",
    ]
    headers = [
        "path",
        "fit s",
        "top-10 all users s",
        "end to end s",
        "ratio",
        "peak RSS",
        "load 1m",
    ]
    rows = []
    if imp:
        rows.append(
            [
                "implicit (its own recommend, filter_already_liked_items)",
                f"{imp['fit_seconds']:.1f}",
                f"{imp['recommend_seconds']:.1f}",
                f"{imp['seconds']:.1f}",
                "1.00x",
                fmt_bytes(imp["peak_rss"]),
                _load(imp),
            ]
        )
    ratio = f"{seg['seconds'] / imp['seconds']:.2f}x" if imp else "-"
    rows.append(
        [
            f"segmint ALSRecommender (lists with reasons, {seg['n_jobs']} threads)",
            f"{seg['fit_seconds']:.1f}",
            f"{seg['recommend_seconds']:.1f}",
            f"{seg['seconds']:.1f}",
            ratio,
            fmt_bytes(seg["peak_rss"]),
            _load(seg),
        ]
    )
    floor = res.get("floor")
    if floor:
        rows.append(
            [
                f"sgemm floor (user x item factor products only, {floor['n_jobs']} threads)",
                "-",
                f"{floor['recommend_seconds']:.1f}",
                "-",
                "-",
                fmt_bytes(floor["peak_rss"]),
                _load(floor),
            ]
        )
    rows.append(
        [
            "segmint, item indices only (no reasons, 1 thread)",
            "-",
            f"{seg['items_only_seconds']:.1f}",
            "-",
            "-",
            "-",
            "-",
        ]
    )
    lines.append(table(headers, rows))
    lines.append("")
    per_million = seg["recommend_seconds"] * 1_000_000 / seg["n_users"]
    verdict = "met" if per_million < 30.0 else "NOT met"
    if seg["n_users"] != 1_000_000:
        verdict += f", scaled linearly from {fmt_int(seg['n_users'])} users"
    cpu = ", ".join(
        f"{name} {r['recommend_cpu_seconds']:.1f} s"
        for name, r in (("implicit", imp), ("segmint", seg), ("floor", floor))
        if r and "recommend_cpu_seconds" in r
    )
    lines.append(
        f"Top-10 with reasons for every user: {seg['recommend_seconds']:.1f} s; per 1M users "
        f"{per_million:.1f} s (target < 30 s: {verdict}). CPU time of the list phase (all "
        f"threads, steadier than wall time on a shared machine): {cpu}."
    )
    lines.append(
        f"Single-user `recommend(user, 10)` after fit (DataFrame with reasons): "
        f"p50 {seg['single_p50_ms']:.2f} ms, p99 {seg['single_p99_ms']:.2f} ms."
    )
    st = res.get("store")
    if st:
        lines.append(
            f"`recommend_all` into DuckDB: {fmt_int(st['rows'])} rows, fit "
            f"{st['fit_seconds']:.1f} s + lists and write {st['recommend_and_write_seconds']:.1f}"
            f" s, store {fmt_bytes(st['store_bytes'])}, peak {fmt_bytes(st['peak_rss'])} "
            f"(load {_load(st)}); `recommend_for_user` from the stored run: "
            f"p50 {st['lookup_p50_ms']:.2f} ms, p99 {st['lookup_p99_ms']:.2f} ms."
        )
    peak = max(r["peak_rss"] for r in (imp, seg, floor, st) if r)
    lines.append(
        f"Peak RSS of any path: {fmt_bytes(peak)} (target < 8 GiB: "
        f"{'met' if peak < 8 * GIB else 'NOT met'})."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
