"""Behaviour snapshot of the demo (issue 18): record what a 3,000-user demo prints and stores,
then compare two recordings.

    python bench/behaviour_snapshot.py run --rev main /tmp/before   # a git revision's src
    PYTHONPATH=$PWD/src python bench/behaviour_snapshot.py record /tmp/after
    python bench/behaviour_snapshot.py compare /tmp/before /tmp/after   # exit 0 = identical

``record`` runs ``segmint demo --users 3000 --seed 42`` (the whole flow ``make demo`` runs:
generate, ingest, features, segments, refresh, recommender evaluation, recommendations,
personas, campaigns sent to local sinks, measurement, report) in a temporary directory with
the ``segmint`` importable from the current ``PYTHONPATH``, and writes to OUT_DIR:

- ``stdout.txt``: the printed output, normalised by ``normalise_text`` (``stdout.raw.txt``
  keeps the original);
- ``tables/<table>.csv``: every base table of the DuckDB store (listed from
  ``information_schema.tables``), normalised by ``normalise_value`` and the column rules
  below, rows sorted by all columns;
- ``meta.json``: users, seed, the UTC date of the recording, seconds taken, row counts.

What is masked, and why (nothing else is):

- ``TEXT_RULES`` (stdout, every string cell and every string inside JSON): run/load/
  evaluation/export ids carry a wall-clock stamp and a random hex suffix (the name in the
  middle is kept); the temporary directory; e-mail Message-IDs (random); unsubscribe
  tokens (signed with a key generated at random per project); the report's size in MiB.
- ``NOW_RULE``: a timestamp or date on or after the UTC day the recording started is
  derived from the wall clock (the demo's data ends 2026-10-31 and its as-of date is
  2026-11-01): sent/claimed/created times, campaign as-of dates, outcome windows that
  start at the send (their end too, 30 days later), promotion start/end. Masked as <NOW>.
- ``JSON_DURATION_KEYS``: timings (seconds) stored inside JSON metrics.
- ``COLUMN_RULES``: columns that only record when (wall clock) or where (temporary path)
  something ran, listed by table. They are masked whatever their value.
- Floats are written with 9 significant digits (``FLOAT_DIGITS``), in cells and inside
  JSON, so that a change of summation order (a different but equivalent query plan) does
  not count as a change of behaviour; anything beyond that does.

Figures that depend on the wall clock are *not* masked: the demo measures the campaign it
sent "just now" with a pre-period of the 90 days before now, so its pre-period revenue
moves from one day to the next. Record "before" and "after" on the same UTC day (``compare``
warns when the days differ).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import difflib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FLOAT_DIGITS = 9
"""Significant digits kept of every float (cells and JSON numbers)."""

MASK = "<MASKED>"
NOW = "<NOW>"

# (pattern, replacement, reason): applied in this order to stdout and to every string.
TEXT_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"\b\d{8}T\d{6}(?:\d{6})?\b"),
        "<TS>",
        "wall-clock stamp inside run, load and evaluation ids",
    ),
    (
        re.compile(r"\b(x-)\d{14}(?=-)"),
        r"\1<TS>",
        "wall-clock stamp inside export ids",
    ),
    (
        re.compile(r"(<TS>(?:-[A-Za-z0-9_.]+)*?-)[0-9a-f]{6}\b"),
        r"\1<HEX>",
        "random suffix of run and load ids (secrets.token_hex(3) / uuid4)",
    ),
    (
        re.compile(r"<[0-9a-f]{32}@[^>\s]+>"),
        "<MESSAGE-ID>",
        "random e-mail Message-ID",
    ),
    (
        re.compile(r"token=[A-Za-z0-9_\-.]+"),
        "token=<TOKEN>",
        "unsubscribe token signed with a key generated at random per project",
    ),
    (
        re.compile(r"\(\d+(?:\.\d+)? MiB;"),
        "(<SIZE> MiB;",
        "size of the HTML report (embeds ids and times)",
    ),
    (
        re.compile(r"\bin \d+(?:\.\d+)? ?s\b"),
        "in <DURATION>",
        "elapsed seconds",
    ),
]

# table -> {column: reason}; masked whatever the value.
COLUMN_RULES: dict[str, dict[str, str]] = {
    "loads": {
        "location": "absolute path of the temporary demo directory",
        "started_at": "wall clock",
        "finished_at": "wall clock",
    },
    "consents": {"recorded_at": "wall clock of the load"},
    "schema_version": {"applied_at": "wall clock"},
    "feature_runs": {"created_at": "wall clock"},
    "segment_runs": {"created_at": "wall clock"},
    "recommendation_runs": {"created_at": "wall clock"},
    "campaign_runs": {"created_at": "wall clock"},
    "campaign_assignments": {"assigned_at": "wall clock"},
    "campaign_evaluations": {"created_at": "wall clock"},
    "deliveries": {
        "created_at": "wall clock",
        "claimed_at": "wall clock",
        "sent_at": "wall clock",
        "updated_at": "wall clock",
    },
    "exports": {"created_at": "wall clock", "path": "temporary directory"},
    "suppressions": {"created_at": "wall clock"},
}

# keys inside JSON cells whose value is a duration measured on the wall clock (timings
# the recommender evaluation and the batch recommendation store with their metrics);
# an explicit list, so that parameters such as ``session_gap_seconds`` stay compared.
JSON_DURATION_KEYS: frozenset[str] = frozenset(
    {"fit_s", "recommend_s", "fit_seconds", "interactions_seconds", "recommend_seconds"}
)

_ISO = re.compile(
    r"\b(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[+-]\d{2}:?\d{2}| ?UTC|Z)?)?"
)


def _now_rule(day: dt.date) -> Callable[[str], str]:
    """NOW_RULE: replace ISO dates/timestamps on or after ``day`` (the recording's UTC day)."""

    def sub(m: re.Match[str]) -> str:
        try:
            d = dt.date.fromisoformat(m.group(1))
        except ValueError:
            return m.group(0)
        return NOW if d >= day else m.group(0)

    return lambda s: _ISO.sub(sub, s)


# table -> (id column, columns naming the run, column ordering runs of the same name).
# Each run id is replaced by ``<table:name values#n>`` (n-th such run by creation time)
# before the TEXT_RULES apply, so that which run a row belongs to stays compared (the two
# rfm runs of the demo, a month apart, do not collapse into one) while the id's wall-clock
# stamp and random suffix do not.
ALIAS_TABLES: dict[str, tuple[str, list[str], str]] = {
    "feature_runs": ("run_id", ["as_of"], "created_at"),
    "segment_runs": ("run_id", ["segmentation", "as_of"], "created_at"),
    "recommendation_runs": ("run_id", ["kind", "model", "as_of"], "created_at"),
    "campaign_runs": ("run_id", ["campaign"], "created_at"),
    "loads": ("load_id", ["source"], "started_at"),
}


def run_aliases(con: Any, day: dt.date) -> dict[str, str]:
    """Run id -> a name that does not depend on when or with which random suffix it ran."""
    have = {
        r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
    }
    aliases: dict[str, str] = {}
    for table, (id_col, keys, order) in ALIAS_TABLES.items():
        if table not in have:
            continue
        seen: dict[str, int] = {}
        cols = ", ".join(f'"{k}"' for k in keys)
        rows = con.execute(
            f'SELECT "{id_col}", {cols} FROM "{table}" ORDER BY "{order}", "{id_col}"'
        ).fetchall()
        for rid, *vals in rows:
            name = "/".join(normalise_value(v, day=day) for v in vals)
            seen[name] = seen.get(name, 0) + 1
            aliases[str(rid)] = f"<{table}:{name}#{seen[name]}>"
    return aliases


_ALIAS_RE: dict[int, re.Pattern[str]] = {}


def _apply_aliases(text: str, aliases: dict[str, str]) -> str:
    pattern = _ALIAS_RE.get(id(aliases))
    if pattern is None:
        alternatives = sorted(map(re.escape, aliases), key=len, reverse=True)
        pattern = _ALIAS_RE[id(aliases)] = re.compile("|".join(alternatives))
    return pattern.sub(lambda m: aliases[m.group(0)], text)


def normalise_text(
    text: str,
    *,
    tmp: str | None = None,
    day: dt.date | None = None,
    aliases: dict[str, str] | None = None,
) -> str:
    """Mask the volatile parts of a string (stdout or a cell), keep everything else."""
    if aliases:
        text = _apply_aliases(text, aliases)
    if tmp:
        text = text.replace(str(Path(tmp).resolve()), "<TMP>").replace(tmp, "<TMP>")
    for pattern, repl, _ in TEXT_RULES:
        text = pattern.sub(repl, text)
    if day is not None:
        text = _now_rule(day)(text)
    return text


def _float(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return repr(x)
    return format(x, f".{FLOAT_DIGITS}g")


def _json_round(v: Any, norm: Callable[[str], str]) -> Any:
    if isinstance(v, float):
        return float(_float(v)) if math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return norm(v)
    if isinstance(v, list):
        return [_json_round(x, norm) for x in v]
    if isinstance(v, dict):
        return {
            norm(str(k)): MASK if k in JSON_DURATION_KEYS else _json_round(x, norm)
            for k, x in v.items()
        }
    return v


def normalise_value(
    v: Any,
    *,
    tmp: str | None = None,
    day: dt.date | None = None,
    aliases: dict[str, str] | None = None,
) -> str:
    """One cell as a canonical string: floats to 9 significant digits, JSON re-dumped with
    sorted keys and rounded numbers, masks applied to every string."""

    def norm(s: str) -> str:
        return normalise_text(s, tmp=tmp, day=day, aliases=aliases)

    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, int | Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date):
        if day is not None and (v.date() if isinstance(v, dt.datetime) else v) >= day:
            return NOW
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple | dict):
        return json.dumps(_json_round(v, norm), sort_keys=True, ensure_ascii=False)
    s = str(v)
    if s[:1] in "[{":
        try:
            parsed = json.loads(s)
        except ValueError:
            return norm(s)
        return json.dumps(_json_round(parsed, norm), sort_keys=True, ensure_ascii=False)
    return norm(s)


def dump_tables(
    db: Path, out: Path, *, tmp: str, day: dt.date
) -> tuple[dict[str, int], dict[str, str]]:
    """Every base table of ``db`` as ``out/<schema.>table.csv``; returns row counts and the
    run id aliases."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(db), read_only=True)
    try:
        aliases = run_aliases(con, day)
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            name = table if schema == "main" else f"{schema}.{table}"
            cur = con.execute(f'SELECT * FROM "{schema}"."{table}"')
            cols = [d[0] for d in cur.description]
            masked = COLUMN_RULES.get(name, {})
            rows = [
                [
                    MASK if c in masked else normalise_value(v, tmp=tmp, day=day, aliases=aliases)
                    for c, v in zip(cols, row, strict=True)
                ]
                for row in cur.fetchall()
            ]
            rows.sort()
            with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(cols)
                w.writerows(rows)
            counts[name] = len(rows)
    finally:
        con.close()
    return counts, aliases


def record(out_dir: Path, *, users: int, seed: int, pythonpath: str | None = None) -> None:
    """Run the demo in a temporary directory and write its normalised snapshot to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.update(COLUMNS="160", NO_COLOR="1", TERM="dumb")
    day = dt.datetime.now(dt.UTC).date()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segmint-snapshot-") as tmp:
        cmd = [
            sys.executable,
            "-c",
            "from segmint.cli import main; main()",
            "demo",
            "--dir",
            "segmint-demo",
            "--users",
            str(users),
            "--seed",
            str(seed),
        ]
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
        (out_dir / "stdout.raw.txt").write_text(proc.stdout)
        (out_dir / "stderr.txt").write_text(proc.stderr)
        if proc.returncode != 0:
            sys.exit(f"the demo failed (exit {proc.returncode}); see {out_dir / 'stderr.txt'}")
        demo_seconds = time.perf_counter() - started
        tables = out_dir / "tables"
        shutil.rmtree(tables, ignore_errors=True)
        db = Path(tmp) / "segmint-demo" / "demo.duckdb"
        counts, aliases = dump_tables(db, tables, tmp=tmp, day=day)
        stdout = normalise_text(proc.stdout, tmp=tmp, day=day, aliases=aliases)
        (out_dir / "stdout.txt").write_text(stdout)
    meta = {
        "users": users,
        "seed": seed,
        "day": day.isoformat(),
        "pythonpath": env.get("PYTHONPATH", ""),
        "demo_seconds": round(demo_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": counts,
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"recorded {len(counts)} tables, {sum(counts.values()):,} rows to {out_dir} "
        f"(demo {meta['demo_seconds']} s, total {meta['total_seconds']} s)"
    )


def compare(before: Path, after: Path, *, shown: int = 5) -> int:
    """Print what differs between two recordings; 0 when nothing does, else 1."""
    same = True
    mb = json.loads((before / "meta.json").read_text())
    ma = json.loads((after / "meta.json").read_text())
    for key in ("users", "seed"):
        if mb[key] != ma[key]:
            print(f"warning: {key} differs ({mb[key]} vs {ma[key]})")
            same = False
    if mb["day"] != ma["day"]:
        print(
            f"warning: recorded on different days ({mb['day']} vs {ma['day']}): figures of "
            "the campaign sent 'now' (its pre-period) legitimately move; record both the same day"
        )
    tb = {p.stem: p for p in (before / "tables").glob("*.csv")}
    ta = {p.stem: p for p in (after / "tables").glob("*.csv")}
    for name in sorted(tb.keys() | ta.keys()):
        if name not in ta or name not in tb:
            print(f"{name}: only in {'before' if name in tb else 'after'}")
            same = False
            continue
        lb = tb[name].read_text(encoding="utf-8").splitlines()
        la = ta[name].read_text(encoding="utf-8").splitlines()
        if lb == la:
            print(f"{name}: identical ({len(lb) - 1:,} rows)")
            continue
        same = False
        print(f"{name}: DIFFERS ({len(lb) - 1:,} rows before, {len(la) - 1:,} after)")
        if lb[:1] != la[:1]:
            print(
                f"  columns before: {lb[0] if lb else ''}\n  columns after:  {la[0] if la else ''}"
            )
        sb, sa = set(lb[1:]), set(la[1:])
        only_b = [r for r in lb[1:] if r not in sa]
        only_a = [r for r in la[1:] if r not in sb]
        print(f"  {len(only_b):,} rows only before, {len(only_a):,} only after; first:")
        for r in only_b[:shown]:
            print(f"  - {r[:400]}")
        for r in only_a[:shown]:
            print(f"  + {r[:400]}")
    ob = (before / "stdout.txt").read_text().splitlines(keepends=True)
    oa = (after / "stdout.txt").read_text().splitlines(keepends=True)
    diff = list(difflib.unified_diff(ob, oa, "before/stdout.txt", "after/stdout.txt"))
    if diff:
        same = False
        print("stdout: DIFFERS")
        sys.stdout.writelines(diff)
    else:
        print(f"stdout: identical ({len(ob)} lines)")
    print("IDENTICAL" if same else "DIFFERENT")
    return 0 if same else 1


def run_rev(rev: str, out_dir: Path, *, users: int, seed: int) -> None:
    """Record from a temporary git worktree of ``rev`` (its ``src`` on PYTHONPATH)."""
    with tempfile.TemporaryDirectory(prefix="segmint-rev-") as tmp:
        wt = Path(tmp) / "wt"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(wt), rev],
            check=True,
            capture_output=True,
        )
        try:
            record(out_dir, users=users, seed=seed, pythonpath=str(wt / "src"))
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(wt)],
                check=False,
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("record", "run"):
        p = sub.add_parser(name)
        if name == "run":
            p.add_argument("--rev", required=True, help="git revision to record")
        p.add_argument("out_dir", type=Path)
        p.add_argument("--users", type=int, default=3000)
        p.add_argument("--seed", type=int, default=42)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    a = ap.parse_args(argv)
    if a.cmd == "record":
        record(a.out_dir, users=a.users, seed=a.seed)
    elif a.cmd == "run":
        run_rev(a.rev, a.out_dir, users=a.users, seed=a.seed)
    else:
        return compare(a.before, a.after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
