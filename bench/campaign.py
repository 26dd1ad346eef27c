"""Campaign benchmark (issue 6): audience building, rendering and sending at 1M users.

A synthetic store (cached in ``--out``) with ``--users`` users: e-mail addresses (5 %
invalid), birthdays, consent histories (80 % granted, some withdrawn later, 1 %
unsubscribed), 0.5 % suppressed, 10 % of users with two recent deliveries by another
campaign (so the frequency cap bites), a segmentation run with five segments (40/30/20/9/1
%), and a stored batch of 3 recommendations per user over 5,000 items. Then each path in
its own process (peak RSS is its own):

* ``audience``  ``plan_campaign`` for a campaign over all five segments: the audience SQL
  (every exclusion by reason), the holdout split, the stored audience and assignments, the
  template check. Target: under 10 s.
* ``audience-naive``  the same audience the way a script would: the tables read into
  pandas, then a Python loop over users that looks each one up in dicts (latest consent,
  unsubscribe, suppression, cap, address) and builds each audience row, with a hashlib
  holdout.
* ``render``  the plan's treatment group rendered with segmint's renderer: contexts from
  the store in chunks (users, segment, offer, recommendations, signed unsubscribe link),
  each template compiled once. Target: at least 20,000 messages/s.
* ``render-naive``  the same contexts, each message rendered with
  ``jinja2.Template(source).render(**ctx)`` (the template parsed again per message), on a
  sample of ``--naive-sample`` messages.
* ``send``  ``send_campaign`` of a campaign on the 1 % segment to a local aiosmtpd sink
  running in another process, with the hand-over journal: one commit of the log per
  message (``group_size=1``) and per hundred (``group_size=100``, the default); and, side
  by side, ``group_size=100`` with hand-over switched off (the plain claim / send / mark
  protocol, which resends the last group after a kill), to show what the journal costs.

    .venv/bin/python bench/campaign.py                       # 1M users
    .venv/bin/python bench/campaign.py --users 100000 --out bench/out

Writes ``docs/_bench_campaign.md`` (machine, date, load average, the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import Timer, fmt_bytes, fmt_int, machine_facts, peak_rss_bytes, run_child, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TEMPLATE_BODY = (
    "Hi {{ first_name or 'there' }},\n\n"
    "{{ offer.label | capitalize }} for you{% if favourite_category %} in "
    "{{ favourite_category }}{% endif %}.\n"
    "{% if recommendations %}Picked for you:\n{% for r in recommendations %}"
    "  - {{ r.title }} ({{ '%.2f' | format(r.price) }} {{ currency }})\n{% endfor %}{% endif %}"
    "\n--\n{{ shop }} · unsubscribe: {{ unsubscribe_url }}\n"
)
TEMPLATE_SUBJECT = "{{ offer.label | capitalize }} - {{ segment }} picks"

SEGMENTS = ("A", "B", "C", "D", "E")
SHARES = (0.40, 0.30, 0.20, 0.09, 0.01)


def playbook(smtp_port: int = 1025) -> dict[str, Any]:
    strategy = {
        "offer": {"type": "discount", "value": 15},
        "channels": ["email"],
        "template": "offer",
        "include_recommendations": True,
        "n_recommendations": 3,
    }
    return {
        "holdout": 0.1,
        "frequency_cap": {"max_messages": 2, "window_days": 7},
        "channels": {
            "email": {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp_port,
                "from": "Bench <news@bench.example>",
            }
        },
        "templates": {"offer": {"subject": TEMPLATE_SUBJECT, "body": TEMPLATE_BODY}},
        "strategies": {"bench": {s: strategy for s in SEGMENTS}},
        "campaigns": {
            "everyone": {"segmentation": "bench", "segments": list(SEGMENTS)},
            "small": {"segmentation": "bench", "segments": ["E"]},
        },
    }


def config(smtp_port: int = 1025) -> Any:
    from segmint.config import Config

    return Config.model_validate({"project": "bench", "playbook": playbook(smtp_port)})


# -- setup ---------------------------------------------------------------------------------


def generate(path: Path, n_users: int) -> dict[str, Any]:
    """The synthetic store, built with SQL in DuckDB (cached)."""
    import duckdb

    from segmint.store import open_store

    if path.exists():
        return {"cached": True}
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    t0 = time.perf_counter()
    open_store(str(tmp)).close()  # the store's schema; the synthetic rows go in with SQL
    con = duckdb.connect(str(tmp))
    n = int(n_users)
    con.execute(
        f"""INSERT INTO users (user_id, created_at, email, birthday, country, city, gender, age)
        SELECT printf('U%08d', i), TIMESTAMPTZ '2023-01-01 00:00:00+00' + to_days(i % 900),
               CASE WHEN hash(i, 1) % 20 = 0 THEN printf('user%d-at-example.com', i)
                    ELSE printf('user%d@example.com', i) END,
               DATE '1960-01-01' + to_days(CAST(hash(i, 2) % 16000 AS INTEGER)),
               ['DE', 'FR', 'NL', 'ES', 'IT'][CAST(1 + hash(i, 3) % 5 AS BIGINT)], 'City',
               ['F', 'M', 'X'][CAST(1 + hash(i, 4) % 3 AS BIGINT)], 20 + CAST(hash(i, 5) % 50 AS INTEGER)
        FROM range({n}) t(i)"""
    )
    con.execute(
        f"""INSERT INTO consents (user_id, channel, purpose, ts, granted, source)
        SELECT printf('U%08d', i), 'email', 'marketing', TIMESTAMPTZ '2024-01-01 00:00:00+00',
               hash(i, 6) % 10 < 8, 'signup' FROM range({n}) t(i)
        UNION ALL
        SELECT printf('U%08d', i), 'email', 'marketing', TIMESTAMPTZ '2025-06-01 00:00:00+00',
               FALSE, CASE WHEN hash(i, 7) % 5 = 0 THEN 'unsubscribe' ELSE 'preferences' END
        FROM range({n}) t(i) WHERE hash(i, 8) % 20 = 0"""
    )
    con.execute(
        f"""INSERT INTO suppressions (user_id, address, channel, reason, created_at)
        SELECT printf('U%08d', i), NULL, NULL, 'hard bounce', TIMESTAMPTZ '2026-01-01 00:00:00+00'
        FROM range({n}) t(i) WHERE hash(i, 9) % 200 = 0"""
    )
    con.execute(
        f"""INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, channel,
               status, attempts, ambiguous, created_at, sent_at)
        SELECT 'other|' || printf('U%08d', i) || '|' || k, 'other', 'c-0', printf('U%08d', i),
               CAST(k AS VARCHAR), 'email', 'sent', 1, FALSE, now(), now()
        FROM range({n}) t(i), range(2) s(k) WHERE hash(i, 10) % 10 = 0"""
    )
    con.execute(
        "INSERT INTO segment_runs (run_id, segmentation, method, created_at, as_of, n_users) "
        f"VALUES ('s-bench', 'bench', 'rules', now(), now(), {n})"
    )
    cuts = [sum(SHARES[: i + 1]) for i in range(len(SHARES))]
    case = " ".join(
        f"WHEN (hash(i, 11) % 10000) < {int(c * 10000)} THEN '{s}'"
        for s, c in zip(SEGMENTS, cuts, strict=True)
    )
    con.execute(
        "INSERT INTO segment_assignments (run_id, user_id, segment) "
        f"SELECT 's-bench', printf('U%08d', i), CASE {case} ELSE 'E' END FROM range({n}) t(i)"
    )
    con.execute(
        """INSERT INTO items (item_id, title, category, price, in_stock)
        SELECT printf('I%05d', j), 'Item ' || j, ['books', 'home', 'toys', 'beauty'][CAST(1 + j % 4 AS BIGINT)],
               round(5 + (hash(j) % 20000) / 100.0, 2), TRUE FROM range(5000) t(j)"""
    )
    con.execute(
        "INSERT INTO recommendation_runs (run_id, kind, created_at, model, n, n_users) "
        f"VALUES ('r-bench', 'batch', now(), 'bench', 3, {n})"
    )
    con.execute(
        f"""INSERT INTO recommendations (run_id, user_id, "rank", item_id, score, model, reason)
        SELECT 'r-bench', printf('U%08d', i), CAST(r + 1 AS INTEGER),
               printf('I%05d', CAST(hash(i, r) % 5000 AS INTEGER)), 1.0 / (r + 1), 'bench',
               'similar buyers' FROM range({n}) t(i), range(3) s(r) ORDER BY 2, 3"""
    )
    con.execute("CHECKPOINT")
    con.close()
    tmp.rename(path)
    return {"cached": False, "seconds": round(time.perf_counter() - t0, 1)}


def _copy(src: Path, work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    dst = work / "store.duckdb"
    for p in (dst, Path(str(dst) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.copyfile(src, dst)
    return dst


# -- children ------------------------------------------------------------------------------


def child_audience(path: Path) -> dict[str, Any]:
    from segmint.campaigns import plan_campaign
    from segmint.store import open_store

    with Timer() as total:
        store = open_store(str(path))
        plan = plan_campaign(store, config(), "everyone")
    store.close()
    return {
        "seconds": total.seconds,
        "plan_seconds": plan.seconds,
        "n_members": int(plan.funnel["remaining"].iloc[0]),
        "n_eligible": plan.n_eligible,
        "n_treatment": plan.n_treatment,
        "funnel": plan.funnel.to_dict("records"),
    }


def child_audience_naive(path: Path) -> dict[str, Any]:
    import hashlib
    import re

    from segmint.campaigns._audience import EMAIL_PATTERN
    from segmint.store import open_store

    with Timer() as total:
        store = open_store(str(path))
        members = store.query(
            "SELECT user_id, segment FROM segment_assignments WHERE run_id = 's-bench'"
        )
        users = store.query("SELECT user_id, email FROM users")
        consents = store.query(
            "SELECT user_id, channel, purpose, ts, granted, source FROM consents ORDER BY ts"
        )
        suppressed = set(store.query("SELECT user_id FROM suppressions")["user_id"])
        recent = store.query(
            "SELECT user_id, count(*) AS n FROM deliveries WHERE status IN ('sent', 'sending') "
            "AND sent_at >= now() - INTERVAL 7 DAY GROUP BY user_id"
        )
        email_of = dict(zip(users["user_id"], users["email"], strict=True))
        latest: dict[tuple[str, str, str], tuple[bool, str]] = {}
        for u, ch, purpose, _ts, granted, source in consents.itertuples(index=False):
            latest[(u, ch, purpose)] = (bool(granted), source)
        unsubscribed = {k[0] for k, (g, s) in latest.items() if not g and s == "unsubscribe"}
        n_recent = dict(zip(recent["user_id"], recent["n"], strict=True))
        pattern = re.compile(EMAIL_PATTERN)
        rows = []
        reasons: dict[str, int] = {}
        for u, seg in members.itertuples(index=False):
            if u in unsubscribed:
                reason = "unsubscribed"
            elif not latest.get((u, "email", "marketing"), (False, ""))[0]:
                reason = "no consent"
            elif u in suppressed:
                reason = "suppressed"
            elif n_recent.get(u, 0) >= 2:
                reason = "frequency cap"
            elif not pattern.match(email_of.get(u) or ""):
                reason = "no address"
            else:
                h = hashlib.md5(f"everyone:{u}".encode(), usedforsecurity=False).hexdigest()
                arm = "control" if int(h[:13], 16) / 16**13 < 0.1 else "treatment"
                rows.append(
                    {
                        "user_id": u,
                        "segment": seg,
                        "channel": "email",
                        "arm": arm,
                        "idempotency_key": f"everyone|{u}|main",
                    }
                )
                continue
            reasons[reason] = reasons.get(reason, 0) + 1
    store.close()
    return {
        "seconds": total.seconds,
        "n_eligible": len(rows),
        "n_treatment": sum(r["arm"] == "treatment" for r in rows),
        "excluded": reasons,
    }


def _planned(path: Path) -> tuple[Any, Any, Any]:
    from segmint.campaigns import plan_campaign
    from segmint.campaigns._messages import MessageBuilder
    from segmint.store import open_store

    store = open_store(str(path))
    cfg = config().model_copy(update={"root": path.parent})  # its key ring goes there
    plan = plan_campaign(store, cfg, "everyone")
    return store, plan, MessageBuilder(store, cfg, "everyone", plan.run_id, plan.segment_run_id)


def child_render(path: Path, chunk: int) -> dict[str, Any]:
    from segmint.store import lit

    store, plan, builder = _planned(path)
    n = 0
    fetch = build = 0.0
    last = ""
    sample = None
    with Timer() as total:
        while True:
            t0 = time.perf_counter()
            rows = builder.rows(f"a.idempotency_key > {lit(last)}", limit=chunk)
            t1 = time.perf_counter()
            if rows.empty:
                break
            messages = builder.messages(rows)
            t2 = time.perf_counter()
            fetch += t1 - t0
            build += t2 - t1
            n += len(messages)
            last = str(rows["idempotency_key"].iloc[-1])
            if sample is None:
                sample = {"subject": messages[0].message.subject, "body": messages[0].message.body}
    store.close()
    return {
        "seconds": total.seconds,
        "n_messages": n,
        "messages_per_second": n / total.seconds,
        "fetch_seconds": fetch,
        "render_seconds": build,
        "sample": sample,
    }


def child_render_naive(path: Path, n_sample: int) -> dict[str, Any]:
    from jinja2 import Template

    store, plan, builder = _planned(path)
    rows = builder.rows("TRUE", limit=n_sample)
    contexts = builder.contexts(rows)  # the same plain dicts; only the rendering differs
    with Timer() as total:
        out = []
        for ctx in contexts:
            subject = Template(TEMPLATE_SUBJECT).render(**ctx)
            body = Template(TEMPLATE_BODY).render(**ctx)
            out.append((subject, body))
    store.close()
    return {
        "seconds": total.seconds,
        "n_messages": len(out),
        "messages_per_second": len(out) / total.seconds,
    }


def child_send(path: Path, port: int, group_size: int, handover: bool = True) -> dict[str, Any]:
    from segmint.campaigns import plan_campaign, send_campaign
    from segmint.campaigns._channels import EmailChannel
    from segmint.store import open_store

    if not handover:  # the plain protocol: the channel never calls the hand-over hook
        init = EmailChannel.__init__

        def no_handover(self: Any, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            self.supports_handover = False

        EmailChannel.__init__ = no_handover  # type: ignore[method-assign]
    store = open_store(str(path))
    cfg = config(port).model_copy(update={"root": path.parent})
    plan = plan_campaign(store, cfg, "small")
    report = send_campaign(store, cfg, "small", plan=plan, group_size=group_size)
    store.close()
    return {
        "seconds": report.seconds,
        "sent": report.sent,
        "messages_per_second": report.messages_per_second,
        "n_treatment": plan.n_treatment,
    }


def child_sink() -> None:
    """An SMTP sink in its own process: prints its port, counts until stdin closes."""
    sys.path.insert(0, str(ROOT / "src"))
    from segmint.campaigns._sink import SmtpSink

    with SmtpSink(keep_messages=False) as sink:
        print(json.dumps({"port": sink.port}), flush=True)
        sys.stdin.read()
        print(json.dumps({"received": sink.n_received}), flush=True)


def child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what")
    p.add_argument("--store", type=Path)
    p.add_argument("--chunk", type=int, default=50_000)
    p.add_argument("--sample", type=int, default=20_000)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--group", type=int, default=1)
    p.add_argument("--no-handover", action="store_true")
    a = p.parse_args(argv)
    if a.what == "sink":
        child_sink()
        return
    if a.what == "audience":
        out = child_audience(a.store)
    elif a.what == "audience-naive":
        out = child_audience_naive(a.store)
    elif a.what == "render":
        out = child_render(a.store, a.chunk)
    elif a.what == "render-naive":
        out = child_render_naive(a.store, a.sample)
    elif a.what == "send":
        out = child_send(a.store, a.port, a.group, handover=not a.no_handover)
    else:
        raise SystemExit(f"unknown child {a.what}")
    out["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out, default=str))


# -- parent --------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child_main(sys.argv[2:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=HERE / "out")
    p.add_argument("--naive-sample", type=int, default=5_000)
    p.add_argument("--skip-naive-audience", action="store_true")
    p.add_argument("--report", type=Path, default=ROOT / "docs" / "_bench_campaign.md")
    a = p.parse_args()
    script = str(Path(__file__).resolve())
    base = a.out / f"campaign-{a.users}u"
    base.mkdir(parents=True, exist_ok=True)
    log = base / "children.log"
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    with Timer() as t_setup:
        setup = generate(base / "base.duckdb", a.users)
    print(f"setup: {setup} ({t_setup.seconds:.1f} s)", flush=True)
    results: dict[str, Any] = {}

    def child(name: str, *args: str) -> dict[str, Any]:
        store = _copy(base / "base.duckdb", base / "work")
        r = run_child([script, "child", name, "--store", str(store), *args], log=log)
        print(f"{name} {' '.join(args)}: {r.get('seconds', 0):.2f} s", flush=True)
        return r

    results["audience"] = child("audience")
    if not a.skip_naive_audience:
        results["audience-naive"] = child("audience-naive")
    results["render"] = child("render")
    results["render-naive"] = child("render-naive", "--sample", str(a.naive_sample))
    sink = subprocess.Popen(
        [sys.executable, script, "child", "sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdin is not None
    port = json.loads(sink.stdout.readline())["port"]
    results["send-1"] = child("send", "--port", str(port), "--group", "1")
    results["send-100"] = child("send", "--port", str(port), "--group", "100")
    results["send-100-plain"] = child(
        "send", "--port", str(port), "--group", "100", "--no-handover"
    )
    sink.stdin.close()
    received = json.loads(sink.stdout.readline())["received"]
    sink.wait(10)
    results["sink_received"] = received
    load_after = os.getloadavg()

    au, rn, rnv = results["audience"], results["render"], results["render-naive"]
    rows = [
        [
            "audience (SQL in DuckDB)",
            f"{fmt_int(au['n_members'])} members -> {fmt_int(au['n_treatment'])} treated",
            f"{au['seconds']:.2f} s (plan {au['plan_seconds']:.2f} s)",
            fmt_bytes(au["peak_rss_bytes"]),
            "< 10 s",
        ]
    ]
    if "audience-naive" in results:
        an = results["audience-naive"]
        rows.append(
            [
                "audience, Python loop per user",
                f"{fmt_int(an['n_eligible'])} eligible",
                f"{an['seconds']:.2f} s",
                fmt_bytes(an["peak_rss_bytes"]),
                "",
            ]
        )
    rows += [
        [
            "render (compiled once, contexts from the store)",
            f"{fmt_int(rn['n_messages'])} messages",
            f"{rn['seconds']:.1f} s = {fmt_int(rn['messages_per_second'])} msg/s "
            f"(fetch {rn['fetch_seconds']:.1f} s)",
            fmt_bytes(rn["peak_rss_bytes"]),
            ">= 20,000 msg/s",
        ],
        [
            "render, Template(src).render per message",
            f"{fmt_int(rnv['n_messages'])} messages",
            f"{rnv['seconds']:.1f} s = {fmt_int(rnv['messages_per_second'])} msg/s",
            fmt_bytes(rnv["peak_rss_bytes"]),
            "",
        ],
    ]
    for key, label in (
        ("send-1", "send to a local aiosmtpd sink, journal, group_size=1"),
        ("send-100", "send to a local aiosmtpd sink, journal, group_size=100"),
        ("send-100-plain", "send, no hand-over journal, group_size=100"),
    ):
        s = results[key]
        rows.append(
            [
                label,
                f"{fmt_int(s['sent'])} messages",
                f"{s['seconds']:.1f} s = {fmt_int(s['messages_per_second'])} msg/s",
                fmt_bytes(s["peak_rss_bytes"]),
                "reported",
            ]
        )
    md = table(["path", "size", "time", "peak RSS", "target"], rows)
    facts = machine_facts()
    text = (
        f"## Campaigns ({fmt_int(a.users)} users) — bench/campaign.py\n\n"
        f"Run {started:%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: "
        f"{facts['cpus']} cores, {facts.get('memory_gib', '?')} GiB, {facts['platform']}, "
        f"Python {facts['python']}, DuckDB {facts['duckdb']}. Load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (other engineers share the "
        "machine).\n\n"
        + md
        + f"\n\nThe sink received {fmt_int(received)} messages (the three send runs). Funnel of the "
        "audience:\n\n"
        + table(
            ["step", "excluded", "remaining"],
            [[f["step"], fmt_int(f["excluded"]), fmt_int(f["remaining"])] for f in au["funnel"]],
        )
        + "\n"
    )
    print(text)
    a.report.write_text(text, encoding="utf-8")
    (base / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {a.report}")


if __name__ == "__main__":
    main()
