"""The workspace's speed on the 50,000-user demo: every page's server response (p50/p95 over
repeated requests from a signed-in client) and the overview's first load in Chromium (a
new browser context each time: nothing cached), side by side with the usual way a marketer
got the same picture before: opening the self-contained HTML report (report.html).

    .venv/bin/python bench/workspace.py [--project segmint-demo] [--repeat 30]

Targets (issue 20): every page under 300 ms at p95; the overview's first load under 2 s.
The project is built with ``segmint demo --users 50000`` when the folder does not exist.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME, PASSWORD = "bench", "bench-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_project(path: Path, users: int) -> None:
    if (path / "segmint.yaml").exists():
        return
    cmd = [str(BIN / "segmint"), "demo", "--dir", str(path), "--users", str(users)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def add_bench_user(path: Path) -> None:
    subprocess.run(
        [str(BIN / "segmint"), "users", "add", NAME, "--role", "editor", "--password-stdin",
         "-p", str(path)],
        input=PASSWORD + "\n", text=True, check=True, capture_output=True,
    )  # fmt: skip


def start_service(path: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [str(BIN / "segmint"), "serve", "-p", str(path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("segmint serve did not start")


def signed_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/login").text
    token = re.search(r'name="login_token" value="([^"]+)"', form)
    assert token
    r = client.post(
        "/login", data={"name": NAME, "password": PASSWORD, "login_token": token.group(1)}
    )
    assert r.status_code == 303, r.status_code
    return client


def pages(path: Path) -> list[tuple[str, str]]:
    """(label, URL path) of every page, with real names and ids from the store."""
    import duckdb

    con = duckdb.connect(str(next(path.glob("*.duckdb"))), read_only=True)
    try:

        def one(sql: str) -> Any:
            row = con.execute(sql).fetchone()
            return None if row is None else row[0]

        user = one("SELECT user_id FROM orders GROUP BY user_id ORDER BY count(*) DESC LIMIT 1")
        load = one(
            "SELECT load_id FROM loads ORDER BY rows_rejected DESC, finished_at DESC LIMIT 1"
        )
        campaign = one(
            "SELECT campaign FROM campaign_evaluations ORDER BY complete DESC, created_at DESC "
            "LIMIT 1"
        )
        sent = one("SELECT campaign FROM deliveries GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")
    finally:
        con.close()
    out = [
        ("overview", "/"),
        ("overview, live part", "/overview/live"),
        ("segments", "/segments"),
        ("segment (rfm)", "/segments/rfm"),
        ("segment (clusters)", "/segments/clusters"),
        ("members (rfm)", "/segments/rfm/members"),
        ("members, searched", "/segments/rfm/members?q=C00012"),
        ("rule editor, new", "/segments/new"),
        ("rule editor, vip", "/segments/vip/edit"),
        ("people search", "/people"),
        ("person (most orders)", f"/people/{user}"),
        ("campaigns", "/campaigns"),
        ("strategy form", "/campaigns/strategy?segmentation=rfm&segment=At%20Risk"),
        ("new campaign form", "/campaigns/new?segmentation=rfm"),
        ("quality", "/quality"),
        ("quarantine of a load", f"/quality/{load}"),
        ("jobs", "/jobs"),
        ("settings", "/settings"),
    ]
    if sent:
        out += [
            ("campaign (plan, 3 messages)", f"/campaigns/{sent}"),
            ("send confirmation", f"/campaigns/{sent}/send"),
            ("send progress, live part", f"/campaigns/{sent}/progress"),
        ]
    if campaign:
        out.append(("results", f"/campaigns/{campaign}/results"))
    return out


def time_pages(
    client: httpx.Client, targets: list[tuple[str, str]], repeat: int
) -> list[dict[str, Any]]:
    rows = []
    for label, target in targets:
        status = client.get(target).status_code  # warm: first use opens caches
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = client.get(target)
            times.append((time.perf_counter() - t0) * 1000)
            status = r.status_code
        times.sort()
        rows.append(
            {
                "page": label,
                "path": target,
                "status": status,
                "p50": statistics.median(times),
                "p95": times[max(0, int(round(0.95 * len(times))) - 1)],
                "bytes": len(r.content),
            }
        )
    return rows


def first_loads(url: str, cookie: str, report: Path, repeat: int) -> dict[str, list[float]]:
    """Milliseconds to the load event in a new browser context (nothing cached): the
    overview with a session cookie, and the HTML report opened from disk."""
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {"overview": [], "report": []}
    script = "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.add_cookies([{"name": "segmint_session", "value": cookie, "url": url}])
            page = ctx.new_page()
            page.goto(url + "/", wait_until="load")
            assert "/login" not in page.url
            out["overview"].append(float(page.evaluate(script)))
            ctx.close()
            if report.exists():
                ctx = browser.new_context(viewport={"width": 1280, "height": 900})
                page = ctx.new_page()
                page.goto(report.resolve().as_uri(), wait_until="load")
                out["report"].append(float(page.evaluate(script)))
                ctx.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, default=ROOT / "segmint-demo")
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    ensure_project(args.project, args.users)
    add_bench_user(args.project)
    targets = pages(args.project)  # before the service owns the store file
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_service(args.project, port)
    try:
        client = signed_in(url)
        try:
            rows = time_pages(client, targets, args.repeat)
            cookie = client.cookies["segmint_session"]
            loads = first_loads(url, cookie, args.project / "report.html", args.loads)
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    cpu = os.cpu_count()
    print(f"\nworkspace on {args.project} ({args.users:,} users), {cpu} cores, "
          f"{time.strftime('%Y-%m-%d')}, {args.repeat} requests per page")  # fmt: skip
    print("| page | path | status | p50 ms | p95 ms | KiB |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['page']} | `{r['path']}` | {r['status']} | {r['p50']:.0f} | {r['p95']:.0f} | "
              f"{r['bytes'] / 1024:.0f} |")  # fmt: skip
    worst = max(rows, key=lambda r: r["p95"])
    print(f"\nslowest page at p95: {worst['page']} {worst['p95']:.0f} ms (target < 300 ms)")
    print("\n| first load (load event, new browser context) | median ms | max ms |")
    print("|---|---:|---:|")
    for name, values in loads.items():
        if values:
            label = (
                "workspace overview (signed in)"
                if name == "overview"
                else "report.html (the usual way)"
            )
            print(f"| {label} | {statistics.median(values):.0f} | {max(values):.0f} |")
    print("\ntarget: the overview's first load < 2000 ms")


if __name__ == "__main__":
    main()
