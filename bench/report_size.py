"""Report file size on the demo shop, and the time until Chromium has drawn every chart.

Generates the demo (``--users`` users, seed 5, as tests/report/conftest.py), ingests it,
runs rfm, lifecycle and clusters twice, imports and evaluates the planted campaign, then
builds the report and opens it in headless Chromium (``/usr/bin/chromium``) at 1280 x 900
until every chart has drawn. Prints one JSON line: the file size, how much of it is the
embedded plotly.js (in clear or gzip + base64) and the rest, and the browser time.

Run it with the package on ``PYTHONPATH`` to compare two checkouts on the same demo:

    PYTHONPATH=src .venv/bin/python bench/report_size.py --out /tmp/size-demo
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

SEGMENTATIONS = ["rfm", "lifecycle", "clusters"]
CAMPAIGN = "spring_reactivation_2026"


def build(out: Path, n_users: int) -> Path:
    import segmint
    from segmint.demo import generate_demo
    from segmint.report import build_report

    if not (out / "segmint.yaml").exists():
        generate_demo(out, n_users=n_users, seed=5)
        with segmint.open_project(out) as p:
            p.ingest()
            p.segment(SEGMENTATIONS)
            p.segment(SEGMENTATIONS)
            p.import_campaign(
                CAMPAIGN,
                f"campaigns/{CAMPAIGN}.csv",
                control_share=0.2,
                columns={"user_id": "customer_id"},
            )
            p.evaluate(CAMPAIGN, segmentation="lifecycle", n_resamples=500)
    with segmint.open_project(out) as p:
        return build_report(p, out / "report.html").path


def library_bytes(html: str) -> int:
    """Bytes of the embedded plotly.js: the compressed block, else the clear script."""
    from plotly.offline import get_plotlyjs

    packed = re.search(r'id="plotly-js-gz"[^>]*>([^<]*)<', html)
    if packed:
        return len(packed.group(1).encode())
    return len(get_plotlyjs().encode()) if get_plotlyjs()[:1000] in html else 0


def browser_seconds(path: Path) -> float:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.plotly-graph-div')]"
            ".every(d => d.querySelector('.main-svg'))",
            timeout=120_000,
        )
        seconds = time.perf_counter() - t0
        browser.close()
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="demo folder (created once)")
    ap.add_argument("--users", type=int, default=2000)
    a = ap.parse_args()
    path = build(a.out, a.users)
    html = path.read_text(encoding="utf-8")
    size = path.stat().st_size
    lib = library_bytes(html)
    print(
        json.dumps(
            {
                "users": a.users,
                "bytes": size,
                "plotly_js_bytes": lib,
                "rest_bytes": size - lib,
                "figures": html.count('class="plotly-graph-div"'),
                "browser_seconds": round(browser_seconds(path), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
