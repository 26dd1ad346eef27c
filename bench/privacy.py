"""Privacy benchmarks (issue 21): one subcommand per part.

* ``ingest``  1M users (user_id, email, phone, birthday, country, traits with first_name,
  last_name, zip_code) as Parquet in ``bench/out/``, loaded into a fresh DuckDB store with
  ``privacy.encrypt: true`` and ``false``, in the same run, alternating rounds; prints the
  seconds of each round and the ratio (target: encrypted within 1.3x of clear).
* ``forget``  forgetting one user in a 1M-user store (bench/privacy_forget.py, if present).
* ``render``  rendering messages with decryption (bench/privacy_render.py, if present).

Each part is a function taking the parsed arguments, registered in :data:`PARTS`; another
part lives in its own file ``bench/privacy_<part>.py`` exposing ``add_arguments(parser)``
and ``run(args)``, found here by name.

    .venv/bin/python bench/privacy.py ingest                 # 1M users, 3 rounds
    .venv/bin/python bench/privacy.py ingest --users 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Timer, fmt_int, machine_facts, table

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "privacy"


# -- ingest ------------------------------------------------------------------------------


def make_users(n: int, path: Path) -> Path:
    """``n`` users as Parquet (cached by size): distinct e-mails and phones, birthdays over
    80 years, traits with first_name, last_name, zip_code."""
    import duckdb

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        f"""COPY (
        SELECT 'u' || lpad(CAST(i AS VARCHAR), 8, '0') AS user_id,
               'person.' || i || '@example' || (i % 97) || '.com' AS email,
               '+33 6 ' || lpad(CAST(i AS VARCHAR), 8, '0') AS phone,
               DATE '1940-01-01' + CAST(hash(i) % 29000 AS INTEGER) AS birthday,
               ['FR', 'DE', 'ES', 'IT', 'NL'][1 + i % 5] AS country,
               json_object('first_name', 'First' || (i % 5000),
                           'last_name', 'Last' || (i % 20000),
                           'zip_code', lpad(CAST(i % 99999 AS VARCHAR), 5, '0')) AS traits
        FROM range({n}) t(i)
        ) TO '{path}' (FORMAT parquet)"""
    )
    con.close()
    return path


def _project(work: Path, users: Path, *, encrypt: bool) -> Path:
    import yaml

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cfg = {
        "store": "bench.duckdb",
        "timezone": "UTC",
        "privacy": {"encrypt": encrypt},
        "sources": {"users": {"type": "parquet", "path": str(users), "table": "users"}},
    }
    (work / "segmint.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    (work / ".segmint").mkdir()
    (work / ".segmint" / "master.key").write_text("11" * 32 + "\n")
    return work


def _ingest_once(users: Path, *, encrypt: bool) -> dict[str, Any]:
    import segmint

    work = _project(OUT / ("enc" if encrypt else "clear"), users, encrypt=encrypt)
    project = segmint.open_project(work)
    _ = project.store  # schema
    if encrypt:
        from segmint.store import open_vault

        open_vault(project.store, project.config)  # keys made before the clock starts
    with Timer() as t:
        (result,) = project.ingest(["users"], force=True)
    project.close()
    return {"seconds": t.seconds, "cpu": t.cpu_seconds, "inserted": result.rows_inserted}


def run_ingest(args: argparse.Namespace) -> None:
    users = make_users(args.users, OUT / f"users_{args.users}.parquet")
    rows: list[list[str]] = []
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.rounds):
        for encrypt in (False, True) if r % 2 == 0 else (True, False):
            res = _ingest_once(users, encrypt=encrypt)
            times[encrypt].append(res["seconds"])
            rows.append(
                [str(r + 1), "encrypt" if encrypt else "clear", f"{res['seconds']:.2f}",
                 f"{res['cpu']:.2f}", fmt_int(res["inserted"])]
            )  # fmt: skip
    best = {k: min(v) for k, v in times.items()}
    print(f"ingest of {fmt_int(args.users)} users, fresh DuckDB store, {machine_facts()}")
    print(table(["round", "mode", "seconds", "cpu s", "rows"], rows))
    ratio = best[True] / best[False]
    print()
    print(
        table(
            ["clear (best)", "encrypted (best)", "ratio", "target"],
            [[f"{best[False]:.2f} s", f"{best[True]:.2f} s", f"{ratio:.2f}x", "<= 1.30x"]],
        )
    )
    print(json.dumps({"clear": times[False], "encrypt": times[True], "ratio": ratio}))


def _ingest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)


# -- the parts ---------------------------------------------------------------------------

PARTS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[..., None]]] = {
    "ingest": (_ingest_args, run_ingest),
}
"""Part name -> (add its arguments, run it)."""

for _part in ("forget", "render"):  # hooks: bench/privacy_forget.py, bench/privacy_render.py
    if (HERE / f"privacy_{_part}.py").exists():
        _mod = importlib.import_module(f"privacy_{_part}")
        PARTS[_part] = (_mod.add_arguments, _mod.run)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="part", required=True)
    for name, (add_arguments, _) in PARTS.items():
        add_arguments(sub.add_parser(name))
    args = parser.parse_args(argv)
    PARTS[args.part][1](args)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
