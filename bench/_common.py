"""Helpers shared by the benchmark scripts: timing, peak memory, child processes, tables."""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GIB = 1024**3


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far.

    On Linux this is ``VmHWM`` from /proc/self/status: the high-water mark of this
    process's own memory map. ``ru_maxrss`` is not used there because Linux carries it
    across ``fork`` + ``exec``: a child started by a parent holding 3 GiB reports at
    least 3 GiB whatever it does itself.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(kib) * (1 if sys.platform == "darwin" else 1024)


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds`` (wall) and ``t.cpu_seconds`` (user +
    system time of this process, all its threads: steadier than wall time on a shared
    machine)."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0
        self.cpu_seconds = time.process_time() - self._c0


def run_child(argv: Sequence[str], log: Path | None = None) -> dict[str, Any]:
    """Run ``python argv...`` in a fresh process and return the JSON it prints last.

    Each measured path runs in its own process, so its peak RSS is its own.
    """
    cmd = [sys.executable, *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if log is not None:
        with log.open("a", encoding="utf-8") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise RuntimeError(
            f"child failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}"
        )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1])
    result["process_seconds"] = wall
    return result


def machine_facts() -> dict[str, Any]:
    import duckdb
    import pandas as pd

    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
        "cpus": _cpus(),
    }
    try:
        import pyarrow

        facts["pyarrow"] = pyarrow.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import psutil

        facts["memory_gib"] = round(psutil.virtual_memory().total / GIB, 1)
    except ImportError:  # pragma: no cover
        pass
    return facts


def _cpus() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def fmt_bytes(n: float) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB / 2 else f"{n / 1024**2:.0f} MiB"


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = [
        "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in rows
    ]
    return "\n".join([line, sep, *body])
