"""How long the ``segmint`` command takes to start: ``segmint --help`` and ``segmint --version``
timed side by side with ``python -c pass`` (the interpreter's own start), each in a fresh
process, median of N runs (issue 18: both under 0.5 s wall).

    python bench/cli_start.py                 # the segmint importable from this interpreter
    python bench/cli_start.py --runs 20
    python bench/cli_start.py --src /path/to/other/checkout/src   # another tree, side by side
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ENTRY = "from segmint.cli import main; main()"


def _time(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{argv} failed: {done.stderr.decode()[-500:]}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="runs per command (fresh processes)")
    ap.add_argument("--src", type=Path, action="append", default=[], help="a src/ to time")
    args = ap.parse_args()
    trees = args.src or [Path(__file__).resolve().parents[1] / "src"]
    py = sys.executable
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"median (min-max) of {args.runs} fresh processes each, wall seconds")
    base = dict(os.environ, PYTHONDONTWRITEBYTECODE="0")
    baseline = _time([py, "-c", "pass"], base, args.runs)
    rows = [("python -c pass", "", baseline)]
    for src in trees:
        env = dict(base, PYTHONPATH=str(src.resolve()))
        for flag in ("--help", "--version"):
            # the console script runs exactly this: import segmint.cli, call main()
            rows.append(
                (f"segmint {flag}", str(src), _time([py, "-c", ENTRY, flag], env, args.runs))
            )
    print(f"{'command':<18} {'median':>8} {'min':>7} {'max':>7}  tree")
    for name, tree, t in rows:
        print(f"{name:<18} {statistics.median(t):8.3f} {min(t):7.3f} {max(t):7.3f}  {tree}")


if __name__ == "__main__":
    main()
