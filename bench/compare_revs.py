"""Run the same benchmark scripts at two git revisions, interleaved, and keep both outputs.

Used for refactors that must not change performance (issue 18): each revision is checked
out in a temporary worktree, and each benchmark runs from that worktree's own ``bench/``
with its ``src`` on ``PYTHONPATH`` and its own ``--out`` directory (so cached stores are
built by the revision that reads them). Runs alternate A, B, A, B ... so load on the
machine falls on both sides alike. The lines of each output that carry figures (the
result tables) are printed side by side per benchmark; the full outputs are kept in
``OUT/<bench>-<rev>-<i>.txt``.

    .venv/bin/python bench/compare_revs.py b3187b8 HEAD --out bench/out/revs \\
        --bench "ingest:--users 200000 --orders 4000000 --formats parquet" \\
        --bench "segment:--users 200000 --orders 4000000 --skip-tutorial"
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"


def worktree(rev: str, base: Path) -> Path:
    """A detached worktree of ``rev`` under ``base`` (reused if present)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    wt = base / f"wt-{sha}"
    if not wt.exists():
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), sha],
            check=True,
            capture_output=True,
        )
    return wt


def run_one(wt: Path, name: str, args: str, out_dir: Path, log: Path) -> float:
    """Run ``bench/<name>.py ARGS --out out_dir`` from ``wt``; the output goes to ``log``."""
    env = dict(os.environ, PYTHONPATH=str(wt / "src"))
    cmd = [str(PYTHON), str(wt / "bench" / f"{name}.py"), *shlex.split(args), "--out", str(out_dir)]
    t0 = time.perf_counter()
    with log.open("w") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=wt).returncode
    wall = time.perf_counter() - t0
    with log.open("a") as fh:
        fh.write(f"\n[exit {rc}, {wall:.1f} s wall]\n")
    return wall


def figure_lines(text: str) -> list[str]:
    """The lines of a benchmark's output that hold its result table."""
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|") or s.startswith("│") or " s " in f" {s} " or "target" in s.lower():
            keep.append(line.rstrip())
    return keep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "revs")
    p.add_argument(
        "--bench", action="append", required=True, help="NAME:ARGS, e.g. 'segment:--users 1000'"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per revision (interleaved)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    trees = {rev: worktree(rev, args.out) for rev in (args.before, args.after)}
    for spec in args.bench:
        name, _, bargs = spec.partition(":")
        for i in range(args.repeat):
            for rev, wt in trees.items():
                data = args.out / f"data-{name}-{wt.name}"
                log = args.out / f"{name}-{wt.name}-{i}.txt"
                wall = run_one(wt, name, bargs, data, log)
                print(f"{name} @ {rev} ({wt.name}) run {i}: {wall:.1f} s wall -> {log}", flush=True)
        for rev, wt in trees.items():
            print(f"\n=== {name} @ {rev} ({wt.name}), run 0 ===")
            print("\n".join(figure_lines((args.out / f"{name}-{wt.name}-0.txt").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
