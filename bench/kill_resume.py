"""Kill-and-resume at random moments (issue 6): duplicates and losses, counted at a server.

A 1,500-user demo project (built once, cached in ``--out``) plans ``winback_at_risk``
(about 160 treated users) pointed at a real aiosmtpd server on loopback. Each trial
copies the project, starts ``send_campaign`` in a subprocess, waits until the server has
a random number of messages plus a random 0-3 ms (to land anywhere in a message's
cycle), ``SIGKILL``s the sender, runs it again to the end, and counts per recipient what
the server received. Two modes, alternating, same kill points:

* ``journal``: segmint as shipped (hand-over journal: e-mail's end-of-data line after a
  journal line);
* ``no journal``: the same code with hand-over switched off in the child
  (``EmailChannel.supports_handover = False``): the usual claim / send / mark protocol,
  where a row left ``sending`` is resent.

    .venv/bin/python bench/kill_resume.py --trials 20

Prints the totals per mode (received, duplicates, lost, unconfirmed in the log).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CAMPAIGN = "winback_at_risk"
CHILD = (
    "import sys, segmint\n"
    "from segmint.campaigns import send_campaign\n"
    "from segmint.campaigns._channels import EmailChannel\n"
    "if sys.argv[3] == 'off':\n"
    "    EmailChannel.supports_handover = False\n"
    "    _init = EmailChannel.__init__\n"
    "    def __init__(self, *a, **k):\n"
    "        _init(self, *a, **k); self.supports_handover = False\n"
    "    EmailChannel.__init__ = __init__\n"
    "p = segmint.open_project(sys.argv[1])\n"
    "r = send_campaign(p.store, p.config, sys.argv[2], group_size=int(sys.argv[4]))\n"
    "print(r.sent, r.unconfirmed, r.resent_ambiguous)\n"
)


def build(base: Path) -> Path:
    import segmint
    from segmint.demo import generate_demo
    from segmint.features import default_as_of

    if (base / "segmint.yaml").exists():
        return base
    base.mkdir(parents=True, exist_ok=True)
    generate_demo(base, n_users=1500, seed=3)
    with segmint.open_project(base) as p:
        p.ingest()
        from datetime import timedelta

        before = p.compute_features(as_of=default_as_of(p.store) - timedelta(days=30))
        p.segment("rfm", feature_run=before)
        p.segment(["rfm", "lifecycle"])
    return base


def prepare(root: Path, port: int) -> tuple[set[str], int]:
    import segmint
    from segmint.campaigns import default_playbook, plan_campaign

    with segmint.open_project(root) as p:
        pb = yaml.safe_load(default_playbook(p.config, store=p.store))["playbook"]
    pb["channels"]["email"].update(host="127.0.0.1", port=port)
    pb["channels"]["email"].pop("rate_per_second", None)
    path = root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["playbook"] = pb
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with segmint.open_project(root) as p:
        plan = plan_campaign(p.store, p.config, CAMPAIGN)
        treated = p.store.query(
            "SELECT lower(u.email) AS email FROM campaign_audiences a JOIN users u "
            f"ON u.user_id = a.user_id WHERE a.run_id = '{plan.run_id}' AND a.arm = 'treatment'"
        )
    return set(treated["email"]), plan.n_treatment


def trial(
    base: Path, work: Path, mode: str, kill_after: int, jitter: float, group: int
) -> dict[str, Any]:
    from segmint.campaigns._sink import SmtpSink

    root = work / f"{mode}"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(base, root, ignore=shutil.ignore_patterns("exports", "truth", ".segmint"))
    with SmtpSink(keep_messages=False) as sink:
        treated, n = prepare(root, sink.port)
        args = [sys.executable, "-c", CHILD, str(root), CAMPAIGN, mode, str(group)]
        child = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not sink.wait_for(min(kill_after, n - 1), timeout=120):
            raise SystemExit(child.communicate()[1])
        end = time.perf_counter() + jitter
        while time.perf_counter() < end:
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=30)
        time.sleep(0.2)
        at_kill = sink.n_received
        resumed = subprocess.run(args, capture_output=True, text=True, timeout=300)
        if resumed.returncode != 0:
            raise SystemExit(resumed.stderr)
        _sent, unconfirmed, resent = (int(x) for x in resumed.stdout.split())
        got = sink.by_recipient
        return {
            "treated": n,
            "received": sink.n_received,
            "at_kill": at_kill,
            "duplicates": sum(c - 1 for c in got.values()),
            "lost": len(treated - set(got)),
            "unconfirmed": unconfirmed,
            "resent_ambiguous": resent,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--group", type=int, default=1, help="group_size of the sender")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=HERE / "out" / "kill_resume")
    args = ap.parse_args()
    base = build(args.out / "base")
    rng = random.Random(args.seed)
    totals: dict[str, dict[str, int]] = {}
    for i in range(args.trials):
        kill_after, jitter = rng.randint(1, 150), rng.uniform(0, 0.003)
        for mode in ("on", "off"):
            r = trial(base, args.out / "work", mode, kill_after, jitter, args.group)
            t = totals.setdefault(mode, {"trials": 0})
            t["trials"] += 1
            for k, v in r.items():
                t[k] = t.get(k, 0) + v
            print(f"trial {i + 1:>3} {mode:>3}: {r}", flush=True)
    print(f"\n{args.trials} kills per mode, group_size={args.group}")
    print(
        "| mode | trials | treated | received | duplicates | lost | unconfirmed (not resent) | resent after an unclear end |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for mode, label in (("on", "journal (segmint)"), ("off", "no journal (claim/send/mark)")):
        t = totals[mode]
        print(
            f"| {label} | {t['trials']} | {t['treated']:,} | {t['received']:,} | {t['duplicates']} "
            f"| {t['lost']} | {t['unconfirmed']} | {t['resent_ambiguous']} |"
        )


if __name__ == "__main__":
    main()
