"""Rendering with decryption (issue 21): messages/s with sealed personal data vs in clear.

The synthetic store of ``bench/campaign.py`` (e-mails, 5 % malformed, consents,
suppressions, the frequency cap, five segments, 3 stored recommendations per user) plus a
``first_name`` trait, in two copies: one with ``privacy.encrypt: false`` (values in
clear, blind indexes filled) and one sealed as the loader seals it (``users.email`` and
the ``first_name`` trait AES-SIV sealed, the indexes filled), set-based with the vault's
DuckDB functions. Each copy is planned (campaign ``everyone``) and its treatment group
rendered, chunk by chunk, in its own process: the rows read from the store, the e-mail and
first name opened (sealed copy), the contexts built, the templates rendered. Target: at
least 10,000 messages/s with decryption.

    .venv/bin/python bench/privacy_render.py                    # 80,000 users (~50k messages)
    .venv/bin/python bench/privacy_render.py --users 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import campaign as base  # bench/campaign.py: the synthetic store and the playbook
from _common import Timer, fmt_int, machine_facts, peak_rss_bytes, run_child, table

HERE = Path(__file__).resolve().parent
NAMES = ("Ann", "Bob", "Chloé", "Dan", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jon")


def config(root: Path, *, encrypt: bool) -> Any:
    cfg = base.config()
    return cfg.model_copy(
        update={
            "root": root,
            "privacy": cfg.privacy.model_copy(update={"encrypt": encrypt}),
        }
    )


def prepare(src: Path, work: Path, *, encrypt: bool) -> Path:
    """A copy of the synthetic store with first names, indexes and (``encrypt``) sealed
    values; the master key under ``work``."""
    import duckdb

    from segmint.store import open_store, open_vault

    if work.exists():
        shutil.rmtree(work)
    path = base._copy(src, work)
    store = open_store(str(path))
    vault = open_vault(store, config(work, encrypt=encrypt))
    store.close()
    names = ", ".join(f"'{n}'" for n in NAMES)
    con = duckdb.connect(str(path))
    vault.register(con)
    email_ok = f"regexp_matches(email, '{base_email_pattern()}')"
    con.execute(
        f"""UPDATE users SET
            traits = CAST(json_object('first_name', [{names}][CAST(1 + hash(user_id) % 10 AS BIGINT)],
                                      'zip_code', '10115') AS JSON),
            email_index = CASE WHEN {email_ok} THEN {vault.index_sql("email", "email")} END"""
    )
    if encrypt:
        con.execute(
            "UPDATE users SET email = segmint_seal('users.email', email), "
            "traits = CAST(segmint_seal_json('users.traits', CAST(traits AS VARCHAR)) AS JSON)"
        )
    con.execute("CHECKPOINT")
    con.close()
    return path


def base_email_pattern() -> str:
    from segmint.campaigns._audience import EMAIL_PATTERN

    return EMAIL_PATTERN.replace("'", "''")


def child_render(path: Path, chunk: int, encrypt: bool) -> dict[str, Any]:
    from segmint.campaigns import plan_campaign
    from segmint.campaigns._messages import MessageBuilder
    from segmint.store import lit, open_store, verify_audit

    store = open_store(str(path))
    cfg = config(path.parent, encrypt=encrypt)
    plan = plan_campaign(store, cfg, "everyone")
    builder = MessageBuilder(store, cfg, "everyone", plan.run_id, plan.segment_run_id)
    n = 0
    opened = 0
    last = ""
    sample = None
    with Timer() as total:
        while True:
            rows = builder.rows(f"a.idempotency_key > {lit(last)}", limit=chunk)
            if rows.empty:
                break
            messages = builder.messages(rows)
            opened += builder.n_opened
            builder.audit("bench", why="bench: render")  # one entry per chunk, as a send
            n += len(messages)
            last = str(rows["idempotency_key"].iloc[-1])
            if sample is None:
                m = messages[0].message
                sample = {"to_is_clear": "@" in (m.to or ""), "body_head": m.body[:12]}
    check = verify_audit(store)
    store.close()
    return {
        "seconds": total.seconds,
        "n_messages": n,
        "messages_per_second": n / total.seconds,
        "values_opened": opened,
        "audit_entries": check.entries,
        "audit_ok": check.ok,
        "sample": sample,
    }


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--store", type=Path)
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--encrypt", action="store_true")
    a = p.parse_args(argv)
    out = child_render(a.store, a.chunk, a.encrypt)
    out["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out, default=str))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=80_000)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--chunk", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    src = a.out / f"campaign-{a.users}.duckdb"
    base.generate(src, a.users)
    script = str(Path(__file__).resolve())
    results: dict[str, dict[str, Any]] = {}
    for _ in range(a.repeat):  # alternating, the best of each: a shared machine is noisy
        for encrypt in (False, True):
            key = "sealed" if encrypt else "clear"
            path = prepare(src, a.out / f"privacy-render-{key}", encrypt=encrypt)
            args = ["--store", str(path), "--chunk", str(a.chunk)]
            r = run_child([script, "child", *args, *(["--encrypt"] if encrypt else [])])
            if key not in results or r["seconds"] < results[key]["seconds"]:
                results[key] = r
    rows = [
        [
            k,
            fmt_int(r["n_messages"]),
            f"{r['seconds']:.2f} s",
            fmt_int(r["messages_per_second"]),
            fmt_int(r["values_opened"]),
            str(r["audit_entries"]) + (" ok" if r["audit_ok"] else " BROKEN"),
            f"{r['peak_rss_bytes'] / 2**20:.0f} MiB",
        ]
        for k, r in results.items()
    ]
    ratio = results["sealed"]["messages_per_second"] / results["clear"]["messages_per_second"]
    facts = machine_facts()
    load = os.getloadavg()[0]
    print(f"{facts}\n{a.users:,} users, chunks of {a.chunk:,}, best of {a.repeat}, load {load:.1f}")
    print(
        table(
            [
                "store",
                "messages",
                "render",
                "messages/s",
                "personal values read",
                "audit entries",
                "peak RSS",
            ],
            rows,
        )
    )
    print(f"sealed / clear: {ratio:.2f}x the rate (target: >= 10,000 messages/s sealed)")


if __name__ == "__main__":
    main()
