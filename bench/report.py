"""Report benchmark (issue 4 point 7): ``build_report`` on 1M users, and the naive way.

Reuses the cached store of ``bench/segment.py`` (``--users`` users, ``--orders`` orders in
five latent groups; generated once into ``--out``). Then, each step in its own process:

* ``setup`` (timed, not a target; cached in ``--out/report-<users>u/``): a project folder
  whose segmint.yaml points at a private copy of that store; ``compute_features``, then the
  segmentations ``rfm``, ``lifecycle`` and ``clusters`` (k-means, k = 2..10 automatic, on the
  six features of bench/segment.py), run twice so the report has a migration Sankey.
* ``segmint``  ``open_project`` + ``build_report(project, sample=5000)``: every section on
  the latest runs. Timed by the function itself (``ReportResult.seconds``) and as the whole
  process (Python start and imports included); peak RSS; the stage times.
* ``naive``  the same runs drawn the way a notebook would: a 2-D PCA (StandardScaler on
  log1p features) of every user with ``px.scatter(color=segment, hover_data=[user_id])``,
  ``px.histogram`` of the raw assignments of each segmentation, ``px.density_heatmap`` of
  every buyer's raw R and FM scores, each written with ``fig.write_html(path)`` (plotly's
  default: the full plotly.js in every file). Sizes and time.
* ``browser``  headless Chromium (Debian's ``/usr/bin/chromium``) opens the segmint report,
  and the naive scatter file, until every chart has drawn (timeout ``--browser-timeout``).

Targets: the report for 1M users within 30 s, the file within 10 MB.

    .venv/bin/python bench/report.py                     # 1M users / 20M orders
    .venv/bin/python bench/report.py --users 50000 --orders 1000000
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

from _common import GIB, Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table
from segment import FEATURES, generate

HERE = Path(__file__).resolve().parent
MB = 1_000_000
SEGMENTATIONS = ["rfm", "lifecycle", "clusters"]

CONFIG = """\
project: bench-report
store: store.duckdb
segmentations:
  rfm: {{type: rfm}}
  lifecycle: {{type: lifecycle, new_days: 60, active_days: 90, churned_days: 365}}
  clusters:
    type: kmeans
    features: [{features}]
    k: auto
    k_min: 2
    k_max: 10
"""


# -- children -------------------------------------------------------------------------------


def child_setup(src: Path, project: Path) -> dict[str, Any]:
    """Project folder + features + rfm, lifecycle and clusters, twice."""
    import segmint

    project.mkdir(parents=True, exist_ok=True)
    (project / "segmint.yaml").write_text(CONFIG.format(features=", ".join(FEATURES)))
    store = project / "store.duckdb"
    for p in (store, Path(str(store) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.copyfile(src, store)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    with segmint.open_project(project) as p:
        for round_ in (1, 2):
            with Timer() as t:
                run = p.compute_features()
            stages[f"features_{round_}"] = t.seconds
            with Timer() as t:
                p.segment(SEGMENTATIONS, feature_run=run)
            stages[f"segment_{round_}"] = t.seconds
        n_users = int(run.n_users)
    return {
        "seconds": time.perf_counter() - t0,
        "stages": stages,
        "peak_rss": peak_rss_bytes(),
        "n_users": n_users,
    }


def child_segmint(project: Path, out: Path, sample: int) -> dict[str, Any]:
    """open_project + build_report, with the stage times from the callback."""
    t_imports = time.perf_counter()
    import segmint
    from segmint.report import build_report

    imports = time.perf_counter() - t_imports
    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    with segmint.open_project(project) as p:
        res = build_report(
            p,
            out,
            sample=sample,
            callback=lambda s: marks.append((s, time.perf_counter())),
        )
    total = time.perf_counter() - t0
    ends = [t for _, t in marks[1:]] + [t0 + total]
    stages = {name: end - start for (name, start), end in zip(marks, ends, strict=True)}
    html = out.read_text(encoding="utf-8")
    return {
        "seconds": res.seconds,
        "seconds_with_open": total,
        "imports": imports,
        "size": res.size_bytes,
        "peak_rss": peak_rss_bytes(),
        "stages": stages,
        "sections": res.sections,
        "run_ids": res.run_ids,
        "n_figures": html.count('class="plotly-graph-div"'),
    }


def child_naive(project: Path, out_dir: Path) -> dict[str, Any]:
    """Every user plotted, plotly.js in every file (plotly's defaults)."""
    import numpy as np
    import pandas as pd
    import plotly.express as px
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    import segmint

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    with segmint.open_project(project) as p:
        runs = {name: p.segment_run(name) for name in SEGMENTATIONS}
        feats = p.features(runs["clusters"].feature_run_id)
    load = time.perf_counter() - t0

    def write(name: str, fig: Any, started: float) -> None:
        path = out_dir / f"{name}.html"
        fig.write_html(path)  # include_plotlyjs=True: the whole library in every file
        files[name] = {"seconds": time.perf_counter() - started, "size": path.stat().st_size}

    s = time.perf_counter()
    clusters = runs["clusters"].assignments[["user_id", "segment"]]
    x = clusters.merge(feats, on="user_id", how="left")[FEATURES].astype("float64")
    x = x.fillna(x.median())
    for c in ("frequency", "monetary", "avg_order_value"):
        x[c] = np.log1p(x[c].clip(lower=0))
    pcs = PCA(n_components=2, random_state=0).fit_transform(StandardScaler().fit_transform(x))
    frame = pd.DataFrame(
        {
            "pc1": pcs[:, 0],
            "pc2": pcs[:, 1],
            "segment": clusters["segment"].to_numpy(),
            "user_id": clusters["user_id"].to_numpy(),
        }
    )
    write(
        "scatter_all_users",
        px.scatter(frame, x="pc1", y="pc2", color="segment", hover_data=["user_id"]),
        s,
    )
    for name in SEGMENTATIONS:
        s = time.perf_counter()
        write(f"sizes_{name}", px.histogram(runs[name].assignments, y="segment"), s)
    s = time.perf_counter()
    detail = runs["rfm"].assignments["detail"].dropna().astype(str)
    digits = detail.str
    rfm = pd.DataFrame(
        {
            "R": digits[0].astype(int),
            "FM": (digits[1].astype(int) + digits[2].astype(int) + 1) // 2,
        }
    )
    write("rfm_grid", px.density_heatmap(rfm, x="FM", y="R"), s)
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "load": load,
        "files": files,
        "size": sum(f["size"] for f in files.values()),
        "peak_rss": peak_rss_bytes(),
        "n_users": len(frame),
    }


def child_browser(path: Path, timeout_s: float) -> dict[str, Any]:
    """Seconds until headless Chromium has drawn every chart of ``path`` (or the timeout)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        t0 = time.perf_counter()
        done = True
        try:
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.plotly-graph-div')]"
                ".every(d => d.querySelector('.main-svg'))",
                timeout=timeout_s * 1000,
            )
        except PlaywrightTimeout:
            done = False
        seconds = time.perf_counter() - t0
        browser.close()
    return {"seconds": seconds, "done": done, "errors": errors[:5]}


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path", choices=["setup", "segmint", "naive", "browser"])
    p.add_argument("--store", type=Path)
    p.add_argument("--project", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--sample", type=int, default=5000)
    p.add_argument("--timeout", type=float, default=120.0)
    a = p.parse_args(argv)
    load_before = os.getloadavg()
    if a.path == "setup":
        result = child_setup(a.store, a.project)
    elif a.path == "segmint":
        result = child_segmint(a.project, a.out, a.sample)
    elif a.path == "naive":
        result = child_naive(a.project, a.out)
    else:
        result = child_browser(a.out, a.timeout)
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()
    print(json.dumps(result, default=float))


# -- driver -----------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--orders", type=int, default=20_000_000)
    p.add_argument("--sample", type=int, default=5000)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--fresh", action="store_true", help="redo the setup (features and runs)")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--skip-browser", action="store_true")
    p.add_argument("--browser-timeout", type=float, default=120.0)
    a = p.parse_args()

    src = generate(a.out, a.users, a.orders)
    project = a.out / f"report-{a.users}u-{a.orders}o"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    log = a.out / f"report-{stamp}.log"
    script = str(Path(__file__).resolve())
    results: dict[str, Any] = {
        "facts": machine_facts(),
        "stamp": stamp,
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
    }
    results["facts"]["plotly"] = __import__("plotly").__version__

    def child(*args: str) -> dict[str, Any]:
        print(f"running {' '.join(args[:1])} ...", flush=True)
        r = run_child([script, "child", *args], log=log)
        print(f"  {r.get('seconds', 0):.1f} s", flush=True)
        return r

    setup_file = project / "setup.json"
    if a.fresh or not setup_file.exists():
        results["setup"] = child("setup", "--store", str(src), "--project", str(project))
        setup_file.write_text(json.dumps(results["setup"], default=float))
    else:
        results["setup"] = json.loads(setup_file.read_text())
        results["setup"]["cached"] = True
    report = a.out / f"report-{a.users}u.html"
    results["segmint"] = child(
        "segmint", "--project", str(project), "--out", str(report), "--sample", str(a.sample)
    )
    naive_dir = a.out / f"report-naive-{a.users}u"
    if not a.skip_naive:
        results["naive"] = child("naive", "--project", str(project), "--out", str(naive_dir))
    if not a.skip_browser:
        t = str(a.browser_timeout)
        results["browser"] = child("browser", "--out", str(report), "--timeout", t)
        if not a.skip_naive:
            scatter = naive_dir / "scatter_all_users.html"
            results["browser_naive"] = child("browser", "--out", str(scatter), "--timeout", t)
    (a.out / f"report-{stamp}.json").write_text(json.dumps(results, indent=2, default=float))
    text = render(results, a)
    (a.out / f"report-{stamp}.md").write_text(text)
    print()
    print(text)


def _load(r: dict[str, Any]) -> str:
    return f"{r['load_before'][0]:.2f} / {r['load_after'][0]:.2f}"


def render(res: dict[str, Any], a: argparse.Namespace) -> str:
    seg, setup = res["segmint"], res["setup"]
    naive = res.get("naive")
    f = res["facts"]
    headers = ["path", "users", "seconds", "file size", "files", "peak RSS", "load 1m"]
    rows = [
        [
            "segmint `build_report` (function)",
            fmt_int(setup["n_users"]),
            f"{seg['seconds']:.1f}",
            f"{seg['size'] / MB:.2f} MB",
            "1",
            fmt_bytes(seg["peak_rss"]),
            _load(seg),
        ],
        [
            "segmint, whole process (start, imports, open_project)",
            fmt_int(setup["n_users"]),
            f"{seg['process_seconds']:.1f}",
            "",
            "",
            "",
            "",
        ],
    ]
    if naive:
        rows.append(
            [
                "naive: every user plotted, plotly.js in every file",
                fmt_int(naive["n_users"]),
                f"{naive['seconds']:.1f}",
                f"{naive['size'] / MB:.1f} MB",
                str(len(naive["files"])),
                fmt_bytes(naive["peak_rss"]),
                _load(naive),
            ]
        )
    lines = [
        "## Report (issue 4)",
        "",
        "    .venv/bin/python bench/report.py"
        + (f" --users {a.users} --orders {a.orders}" if a.users != 1_000_000 else ""),
        "",
        f"Run {res['stamp']} UTC (`date`: `{res['date']}`); Python {f['python']}, "
        f"DuckDB {f['duckdb']}, pandas {f['pandas']}, plotly {f['plotly']}; {f['cpus']} cores, "
        f"{f.get('memory_gib', '?')} GiB. `load 1m` is the 1-minute load average before / "
        "after each path.",
        "",
        table(headers, rows),
        "",
        f"Setup (not timed as the report; {'cached from an earlier run' if setup.get('cached') else 'this run'}): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in setup["stages"].items())
        + f", peak {fmt_bytes(setup['peak_rss'])}.",
        "",
        "segmint stages (seconds): "
        + ", ".join(f"{k} {v:.2f}" for k, v in seg["stages"].items())
        + f"; imports before the call {seg['imports']:.2f} s.",
        f"Sections with data: {', '.join(seg['sections'])}; {seg['n_figures']} figures.",
    ]
    if naive:
        lines += [
            "",
            "Naive files: "
            + ", ".join(
                f"{k} {v['size'] / MB:.1f} MB ({v['seconds']:.1f} s)"
                for k, v in naive["files"].items()
            )
            + f"; loading the runs {naive['load']:.1f} s.",
        ]
    for key, label in (("browser", "segmint report"), ("browser_naive", "naive scatter file")):
        b = res.get(key)
        if b:
            state = "all charts drawn" if b["done"] else "NOT drawn before the timeout"
            lines.append(
                f"- Headless Chromium, {label}: {b['seconds']:.1f} s ({state}); "
                f"console errors: {len(b['errors'])}."
            )
    ok_time = seg["seconds"] <= 30
    ok_size = seg["size"] <= 10 * MB
    lines += [
        "",
        "Targets:",
        "",
        f"- report for {a.users:,} users within 30 s: {'met' if ok_time else 'NOT met'} "
        f"({seg['seconds']:.1f} s in build_report, {seg['process_seconds']:.1f} s for the "
        "whole process)",
        f"- file within 10 MB: {'met' if ok_size else 'NOT met'} ({seg['size'] / MB:.2f} MB)",
        "",
    ]
    if seg["peak_rss"] >= 4 * GIB:
        lines.insert(-1, f"- note: peak RSS {fmt_bytes(seg['peak_rss'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
