"""Scale benchmark (issue 23): features + auto-k on DuckDB and on Spark, 1M to 10M users.

Stores come from bench/_scale_data.py (cached under ``--out``): users in five latent
groups, 20 orders per user, about 3 events per user in the last 120 days and one item line
for 10% of the orders, so every built-in feature does real work. Each configuration runs in
its own process (a fresh DuckDB, a fresh JVM):

* ``duckdb``  ``compute_features(store)`` (every built-in feature, stored as a run) with
  DuckDB out of core (``memory_limit``, a ``temp_directory`` to spill to), then
  ``FeatureScaler(scaling='standard', log1p='auto')`` + ``AutoKMeans('auto', k_min=2,
  k_max=10)`` on the six features of bench/segment.py (what ``run_clustering`` runs: one
  BLAS/OpenMP thread). At ``--users`` sizes and at 10M users / 200M orders.
* ``spark``  ``compute_features(store, engine=SparkEngine(SparkSettings(master=...)))``
  for ``local[1]`` and ``local[2]``: the store's tables are written by DuckDB as a Parquet
  snapshot (timed apart: ``export``), Spark runs the transpiled feature SQL, the rows come
  back as Arrow and are stored as the run; then the same scaling in pandas and
  ``SparkKMeans('auto', k_min=2, k_max=10)`` (k chosen on the same 100k sample by
  AutoKMeans, the final fit on all rows with MLlib). ``--spark-features-only`` skips it.

Peak memory is the peak of the summed RSS of the child and everything it started (the
JVM), sampled every 0.2 s, and the child's own ``VmHWM``. The feature run a child stores is
deleted afterwards (untimed), so the cached store stays as generated.

    .venv/bin/python bench/spark.py                       # 1M, 5M, 10M DuckDB + Spark
    .venv/bin/python bench/spark.py --skip-spark --users 1000000
    .venv/bin/python bench/spark.py --skip-10m --masters 'local[1],local[2]'
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table
from _scale_data import FEATURES, Extras, generate

HERE = Path(__file__).resolve().parent
ORDERS_PER_USER = 20
BIG = (10_000_000, 200_000_000)
EXTRAS = Extras(events_per_user=3, item_share_pct=10)
TARGET_SECONDS = 180.0


# -- memory of a process tree --------------------------------------------------------------


class TreeRss:
    """Samples the summed RSS of this process and its descendants (the JVM a SparkSession
    starts) in a daemon thread; ``peak`` is the highest sum seen, ``cpu_seconds`` the
    user + system CPU time of the tree at the last sample (the process's whole life)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak = 0
        self.cpu_seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def sample(self) -> None:
        import psutil

        me = psutil.Process()
        total = 0
        cpu = 0.0
        for p in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):  # gone between listing and reading
                total += p.memory_info().rss
                times = p.cpu_times()
                cpu += times.user + times.system
        self.peak = max(self.peak, total)
        self.cpu_seconds = cpu

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


# -- children ---------------------------------------------------------------------------------


def _stage_timers(stages: dict[str, float], cpu: dict[str, float]) -> None:
    """Time the parts of compute_features on DuckDB without changing them: the feature
    query into a staged table, the insert into ``features``, the read-back, the dtypes
    (wall seconds in ``stages``, CPU seconds of the process, all threads, in ``cpu``)."""
    import segmint.features._runs as runs
    from segmint.store import Staging

    def timed(owner: Any, name: str, label: Any) -> None:
        inner = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            s, c = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                key = label(args) if callable(label) else label
                stages[key] = stages.get(key, 0.0) + time.perf_counter() - s
                cpu[key] = cpu.get(key, 0.0) + time.process_time() - c

        setattr(owner, name, wrapper)

    timed(Staging, "table", "features.query")
    timed(
        Staging,
        "execute",
        lambda a: "features.insert" if "INSERT INTO features" in a[1] else "features.other",
    )
    timed(Staging, "query", "features.read_back")
    timed(runs, "_normalize", "features.normalize")
    timed(runs, "default_as_of", "features.as_of")


def _auto_k(data: Any, stages: dict[str, float], cpu: dict[str, float]) -> dict[str, Any]:
    from segmint.segments._cluster import AutoKMeans
    from segmint.segments._scaling import FeatureScaler

    with Timer() as t:
        X = data.set_index("user_id")[FEATURES].astype("float64")
        Xs = FeatureScaler(scaling="standard", log1p="auto").fit_transform(X)
    stages["scale"], cpu["scale"] = t.seconds, t.cpu_seconds
    with Timer() as t:
        model = AutoKMeans("auto", k_min=2, k_max=10, random_state=0).fit(Xs)
    stages["auto_k"], cpu["auto_k"] = t.seconds, t.cpu_seconds
    return {"k": int(model.n_clusters_), "algorithm": model.algorithm_}


def _drop_run(store: Any, run_id: str) -> None:
    """Untimed: remove the measured run so that the cached store stays as generated."""
    store.execute(f"DELETE FROM features WHERE run_id = '{run_id}'")
    store.execute(f"DELETE FROM feature_runs WHERE run_id = '{run_id}'")
    store.execute("CHECKPOINT")


def _imports(stages: dict[str, float]) -> None:
    """Import what the children use before the clock starts (recorded as ``imports``)."""
    with Timer() as t:
        import segmint.features  # noqa: F401
        import segmint.segments._cluster  # noqa: F401
        import segmint.segments._scaling  # noqa: F401
        import segmint.store  # noqa: F401
    stages["imports"] = t.seconds


def child_duckdb(path: Path, memory_limit: str, threads: int | None) -> dict[str, Any]:
    from segmint.features import compute_features
    from segmint.store import open_store

    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    _imports(stages)
    _stage_timers(stages, cpu)
    spill = path.parent / "duckdb-tmp"
    spill.mkdir(exist_ok=True)
    with TreeRss() as tree:
        t0 = time.perf_counter()
        store = open_store(str(path))
        con = store._engine_connection()  # the benchmark sets the engine's limits
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute(f"SET temp_directory = '{spill}'")
        if threads:
            con.execute(f"SET threads = {threads}")
        stages["open_store"] = time.perf_counter() - t0
        with Timer() as t:
            run = compute_features(store)
        stages["features"], cpu["features"] = t.seconds, t.cpu_seconds
        info = _auto_k(run.data, stages, cpu)
        total = time.perf_counter() - t0
    spilled = con.execute("SELECT coalesce(sum(size), 0) FROM duckdb_temporary_files()").fetchall()[
        0
    ][0]
    _drop_run(store, run.run_id)
    store.close()
    return {
        "engine": "duckdb",
        "seconds": total,
        "features_s": stages["features"],
        "auto_k_s": stages["scale"] + stages["auto_k"],
        "stages": stages,
        "stages_cpu": cpu,
        "peak_rss": peak_rss_bytes(),
        "peak_tree_rss": tree.peak,
        "cpu_s": tree.cpu_seconds,
        "n_users": run.n_users,
        "memory_limit": memory_limit,
        "temp_files_at_end": int(spilled),
        **info,
    }


def child_explain(path: Path, memory_limit: str) -> dict[str, Any]:
    """EXPLAIN ANALYZE of the feature query alone (no run stored): where DuckDB's time goes."""
    from segmint.features._catalog import feature_sql
    from segmint.features._runs import default_as_of
    from segmint.store import open_store

    store = open_store(str(path), read_only=True)
    con = store._engine_connection()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{path.parent / 'duckdb-tmp'}'")
    sql = feature_sql(default_as_of(store))
    with Timer() as t:
        plan = con.execute(f"EXPLAIN ANALYZE {sql}").fetchall()
    text = "\n".join(str(row[-1]) for row in plan)
    out = path.parent / f"explain-{path.stem}.txt"
    out.write_text(text)
    store.close()
    return {"seconds": t.seconds, "cpu_s": t.cpu_seconds, "plan": str(out)}


class _SparkLog(logging.Handler):
    """Catches the engine's INFO line 'features on Spark (...): tables Xs (...), query Ys'."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.split: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        import re

        m = re.search(r"tables ([0-9.]+)s.*query ([0-9.]+)s", record.getMessage())
        if m:
            self.split = {"export": float(m.group(1)), "query": float(m.group(2))}


def _spark_auto_k(engine: Any, data: Any, stages: dict[str, float]) -> dict[str, Any]:
    """The same scaling in pandas, then SparkKMeans: k chosen by AutoKMeans on the same
    sample as DuckDB's path, the final fit on all rows with MLlib."""
    from segmint.segments._scaling import FeatureScaler
    from segmint.segments._spark_kmeans import SparkKMeans

    with Timer() as t:
        X = data.set_index("user_id")[FEATURES].astype("float64")
        Xs = FeatureScaler(scaling="standard", log1p="auto").fit_transform(X)
    stages["scale"] = t.seconds
    with Timer() as t:
        model = SparkKMeans(engine, "auto", k_min=2, k_max=10, random_state=0).fit(Xs)
    stages["auto_k"] = t.seconds
    return {"k": int(model.n_clusters_)}


def child_spark(
    path: Path, master: str, driver_memory: str, features_only: bool = False
) -> dict[str, Any]:
    import segmint.engines as engines
    from segmint.config import SparkSettings
    from segmint.features import compute_features
    from segmint.store import open_store

    stages: dict[str, float] = {}
    _imports(stages)
    catcher = _SparkLog()
    runs_log = logging.getLogger("segmint.features._runs")
    runs_log.addHandler(catcher)
    runs_log.setLevel(logging.INFO)
    root = path.parent / f"spark-{os.getpid()}"
    settings = SparkSettings(
        master=master,
        conf={
            "spark.driver.memory": driver_memory,
            # the feature rows come back to the driver as Arrow: 5M users are ~1 GiB, over
            # Spark's default limit of 1g (the run fails with "Total size of serialized
            # results ... is bigger than spark.driver.maxResultSize")
            "spark.driver.maxResultSize": driver_memory,
            "spark.sql.shuffle.partitions": "16",
            "spark.local.dir": str(path.parent / "spark-tmp"),
        },
    )
    with TreeRss() as tree:
        t0 = time.perf_counter()
        store = open_store(str(path))
        engine = engines.SparkEngine(settings, root=root)
        with Timer() as t:
            engine.session  # noqa: B018 - start the JVM (timed apart)
        stages["session"] = t.seconds
        with Timer() as t:
            run = compute_features(store, engine=engine)
        stages["compute_features"] = t.seconds
        stages.update(catcher.split)
        info: dict[str, Any] = {"k": None}
        auto_k_s = None
        if not features_only:
            info = _spark_auto_k(engine, run.data, stages)
            auto_k_s = stages["scale"] + stages["auto_k"]
        total = time.perf_counter() - t0
    _drop_run(store, run.run_id)
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    export = stages.get("export", 0.0)
    return {
        "engine": f"spark {master}",
        "seconds": total,
        "export_s": export,
        "features_s": stages["compute_features"] - export,
        "auto_k_s": auto_k_s,
        "stages": stages,
        "peak_rss": peak_rss_bytes(),
        "peak_tree_rss": tree.peak,
        "cpu_s": tree.cpu_seconds,
        "n_users": run.n_users,
        **info,
    }


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("engine", choices=["duckdb", "spark", "explain"])
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--memory-limit", default="8GB")
    p.add_argument("--threads", type=int)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--features-only", action="store_true")
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    if a.engine == "explain":
        result = child_explain(a.store, a.memory_limit)
    elif a.engine == "duckdb":
        result = child_duckdb(a.store, a.memory_limit, a.threads)
    else:
        result = child_spark(a.store, a.master, a.driver_memory, a.features_only)
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, default=float))


# -- driver -----------------------------------------------------------------------------------


def _ints(text: str) -> list[int]:
    return [int(x.replace("_", "")) for x in text.split(",") if x.strip()]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=_ints, default=[1_000_000, 5_000_000])
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--memory-limit", default="8GB", help="DuckDB memory_limit in the children")
    p.add_argument("--masters", default="local[1],local[2]")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument("--skip-10m", action="store_true")
    p.add_argument("--skip-spark", action="store_true")
    p.add_argument("--skip-duckdb", action="store_true")
    p.add_argument("--spark-features-only", action="store_true")
    p.add_argument(
        "--render", type=Path, nargs="+", help="print the table of earlier runs' JSON files"
    )
    a = p.parse_args()
    if a.render:
        print(render(_merge(a.render)))
        return

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = a.out / f"spark-{stamp}.log"
    script = str(Path(__file__).resolve())
    results: dict[str, Any] = {"facts": machine_facts(), "stamp": stamp, "runs": []}
    results["facts"]["pyspark"] = _pyspark_version()
    generation: dict[str, float] = {}

    def store(n_users: int, n_orders: int) -> Path:
        t0 = time.perf_counter()
        path = generate(a.out, n_users, n_orders, EXTRAS)
        generation[f"{n_users}"] = time.perf_counter() - t0
        return path

    def child(path: Path, n_orders: int, *args: str) -> None:
        print(f"running {' '.join(args)} on {path.name} ...", flush=True)
        try:
            r = run_child([script, "child", *args, "--store", str(path)], log=log)
        except RuntimeError as exc:
            print(f"  FAILED: {str(exc)[-1500:]}", flush=True)
            return
        r["n_orders"] = n_orders
        results["runs"].append(r)
        print(
            f"  {r['seconds']:.1f} s (features {r['features_s']:.1f}), "
            f"peak {fmt_bytes(r['peak_tree_rss'])}",
            flush=True,
        )
        (a.out / f"spark-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))

    sizes = [(n, n * ORDERS_PER_USER) for n in a.users]
    for n_users, n_orders in sizes:
        path = store(n_users, n_orders)
        if not a.skip_duckdb:
            child(path, n_orders, "duckdb", "--memory-limit", a.memory_limit)
        if not a.skip_spark:
            for master in a.masters.split(","):
                child(
                    path,
                    n_orders,
                    "spark",
                    "--master",
                    master.strip(),
                    "--driver-memory",
                    a.driver_memory,
                    *(["--features-only"] if a.spark_features_only else []),
                )
    if not a.skip_10m and not a.skip_duckdb:
        path = store(*BIG)
        child(path, BIG[1], "duckdb", "--memory-limit", a.memory_limit)
    results["generation_s"] = generation
    (a.out / f"spark-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))
    report = render(results)
    (a.out / f"spark-{stamp}.md").write_text(report)
    print()
    print(report)


def _merge(paths: list[Path]) -> dict[str, Any]:
    """The runs of several result files as one (the facts and stamp of the last)."""
    merged: dict[str, Any] = {"runs": [], "generation_s": {}}
    for path in paths:
        res = json.loads(path.read_text())
        merged["runs"] += res["runs"]
        merged["generation_s"].update(res.get("generation_s") or {})
        merged["facts"], merged["stamp"] = res["facts"], res["stamp"]
    return merged


def _pyspark_version() -> str:
    try:
        import pyspark

        return str(pyspark.__version__)
    except ImportError:  # pragma: no cover
        return "-"


def render(res: dict[str, Any]) -> str:
    headers = [
        "engine",
        "users",
        "orders",
        "export s",
        "features s",
        "auto-k s",
        "total s",
        "CPU s",
        "peak memory",
        "k",
        "load 1m",
    ]
    rows = []
    for r in sorted(res["runs"], key=lambda r: (r["n_users"], r["engine"])):
        auto_k = r.get("auto_k_s")
        rows.append(
            [
                r["engine"],
                fmt_int(r["n_users"]),
                fmt_int(r["n_orders"]),
                f"{r['export_s']:.1f}" if "export_s" in r else "-",
                f"{r['features_s']:.1f}",
                "-" if auto_k is None else f"{auto_k:.1f}",
                f"{r['seconds']:.1f}",
                f"{r['cpu_s']:.0f}" if "cpu_s" in r else "-",
                fmt_bytes(r["peak_tree_rss"]),
                "-" if r.get("k") is None else str(r["k"]),
                f"{r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}",
            ]
        )
    f = res["facts"]
    lines = [
        "## Scale (issue 23)",
        "",
        f"Run {res['stamp']} UTC; Python {f['python']}, DuckDB {f['duckdb']}, "
        f"PySpark {f['pyspark']}, pandas {f['pandas']}; {f['cpus']} cores, "
        f"{f.get('memory_gib', '?')} GiB. `total` is open to auto-k (Spark: JVM start, export "
        "and features, plus auto-k when it runs on Spark); `peak memory` is the summed RSS of "
        "the child and its JVM; `CPU s` is the user + system time of the child and its JVM "
        "over the child's life (steadier than wall time on a shared machine); `load 1m` is "
        "the 1-minute load average before / after.",
        "",
        table(headers, rows),
        "",
        "Stages (seconds):",
        "",
    ]
    for r in res["runs"]:
        st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        lines.append(f"- {r['engine']} {fmt_int(r['n_users'])}: {st}")
        if r.get("stages_cpu"):
            st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages_cpu"].items())
            lines.append(f"  - CPU seconds: {st}")
    gen = res.get("generation_s") or {}
    if gen:
        lines += [
            "",
            "Store generation or cache hit (s): "
            + ", ".join(f"{fmt_int(int(k))} users {v:.0f}" for k, v in gen.items()),
        ]
    big = [r for r in res["runs"] if r["engine"] == "duckdb" and r["n_users"] >= 9_000_000]
    if big:
        r = big[0]
        ok = r["features_s"] + r["auto_k_s"] <= TARGET_SECONDS
        lines += [
            "",
            f"Target: DuckDB features + auto-k at {fmt_int(r['n_users'])} users under "
            f"{TARGET_SECONDS:.0f} s: {'met' if ok else 'NOT met'} "
            f"({r['features_s'] + r['auto_k_s']:.1f} s)",
        ]
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
