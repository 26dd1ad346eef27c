"""Run many ``segmint`` command lines fast, each in its own forked process, and measure it.

Used by the hostile-input test (tests/test_hostile_inputs.py), which starts this module as
a subprocess: the parent imports the CLI once (about 2 s), then forks one child per case,
so a case costs its own work only. Each child changes into its case folder, sends stdout
and stderr to files and runs the command line as ``segmint`` would; the parent watches it
(wall time and resident memory, read from /proc every 20 ms), kills it past the limits and
reaps it with ``wait4`` for its exit code and peak RSS.

Usage: ``python -m tests._cli_runner CASES.json RESULTS.json``, where CASES.json is a list
of ``{"id", "dir", "argv", "timeout_s", "max_rss_mib"}``; RESULTS.json receives, per case,
``{"id", "exit", "signal", "killed", "seconds", "peak_rss_mib", "stdout", "stderr"}``.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

PARALLEL = 2
POLL_S = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")


def _child(case: dict[str, Any]) -> None:
    """In the forked child: run one command line and leave with its exit code."""
    code = 1
    try:
        os.chdir(case["dir"])
        out = os.open("stdout.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open("stderr.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        from segmint.cli import main

        sys.argv = ["segmint", *case["argv"]]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # anything escaping main is what the test looks for: print it
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def run_cases(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pending = list(cases)
    running: dict[int, tuple[dict[str, Any], float, int]] = {}  # pid -> case, start, peak
    results: dict[str, dict[str, Any]] = {}
    killed: dict[int, str] = {}
    while pending or running:
        while pending and len(running) < PARALLEL:
            case = pending.pop(0)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                _child(case)
            running[pid] = (case, time.monotonic(), 0)
        time.sleep(POLL_S)
        for pid in list(running):
            case, started, peak = running[pid]
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == 0:
                rss = _rss(pid)
                running[pid] = (case, started, max(peak, rss))
                elapsed = time.monotonic() - started
                if pid not in killed:
                    if elapsed > case["timeout_s"]:
                        killed[pid] = f"over {case['timeout_s']} s"
                    elif rss > case["max_rss_mib"] * 2**20:
                        killed[pid] = f"over {case['max_rss_mib']} MiB"
                    if pid in killed:
                        os.kill(pid, signal.SIGKILL)
                continue
            del running[pid]
            folder = Path(case["dir"])
            results[case["id"]] = {
                "id": case["id"],
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "killed": killed.pop(pid, None),
                "seconds": round(time.monotonic() - started, 3),
                "peak_rss_mib": round(max(peak, usage.ru_maxrss * 1024) / 2**20, 1),
                "stdout": _read(folder / "stdout.txt"),
                "stderr": _read(folder / "stderr.txt"),
            }
    return [results[c["id"]] for c in cases]


def _read(path: Path, limit: int = 200_000) -> str:
    try:
        with path.open("rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    # what a child needs, imported once before forking: a case then costs its own work
    # only. BLAS is held to one thread, so that no thread pool exists at the fork (pyarrow's
    # jemalloc starts a background thread, which jemalloc re-creates in a child).
    import duckdb  # noqa: F401
    import jinja2.sandbox  # noqa: F401
    import openpyxl  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import sqlglot  # noqa: F401

    import segmint.campaigns  # noqa: F401
    import segmint.cli  # noqa: F401
    import segmint.features  # noqa: F401
    import segmint.profiles  # noqa: F401
    import segmint.project  # noqa: F401
    import segmint.segments  # noqa: F401

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    results = run_cases(cases)
    Path(sys.argv[2]).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
