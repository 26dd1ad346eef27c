"""No personal data in output (issue 21, point 7).

The demo, the service (tracking calls with known e-mails and phones, a decision, the
unsubscribe page, a bad message) and failing loads (a users file with a malformed e-mail
and a bad row holding a known phone; a file that cannot be read at all) run as real
``segmint`` processes with logging at DEBUG (``SEGMINT_LOG=debug``, ``--log-level debug``)
and their temporary files in a folder of the test's own. Every byte they wrote to the
console, every log file and every error file (``segmint-error-*.txt``, the tracebacks of
internal errors) is then searched for every e-mail and phone number known to the test —
the probes and the demo's 1,500 customers — in clear, lower-cased and digits only: none
appears.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from tests.serve.conftest import free_port, wait_ready

PROBE_EMAILS = (
    "Probe.Alice@Example.org",
    "bob.probe@example.net",
    "carol.probe@@example.com",  # malformed: quarantined as a field issue
    "dave.probe@example.com",
)
PROBE_PHONES = ("+49 170 5550199", "+1 (415) 555-0123", "+44 20 7946 0958")
EMAIL_LIKE = re.compile(r"[\w.+-]+@@?[\w-]+(?:\.[\w-]+)+")
QUARANTINE_VIEW = "quarantine view"
DIGIT_RUNS = re.compile(r"\d[\d ()+-]{5,}\d")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


class Run:
    """The test's processes: one environment (debug logging, its own TMPDIR), outputs kept."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp
        self.outputs: dict[str, str] = {}
        self.env = {
            **os.environ,
            "SEGMINT_LOG": "debug",
            "TMPDIR": str(tmp),
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            "COLUMNS": "200",
        }
        self.env.pop("SEGMINT_DEBUG", None)  # internal errors go to files, as for a user

    def segmint(self, label: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "segmint", *args],
            capture_output=True, text=True, env=self.env, timeout=600, check=False,
        )  # fmt: skip
        self.outputs[f"{label} (stdout)"] = proc.stdout
        self.outputs[f"{label} (stderr)"] = proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stderr[-2000:]
        return proc


def _track_calls(url: str, key: str, user: str) -> None:
    """identify with known contacts, track with them in properties, a consent event, a
    batch, a malformed body naming an e-mail; a decision; the unsubscribe page."""
    auth = (key, "")
    with httpx.Client(base_url=url, auth=auth, timeout=10) as c:
        calls = [
            ("/v1/identify", {"userId": "probe-1", "traits": {
                "email": PROBE_EMAILS[0], "phone": PROBE_PHONES[0], "name": "Alice Probe"}}),
            ("/v1/identify", {"anonymousId": "anon-probe", "userId": "probe-2", "traits": {
                "email": PROBE_EMAILS[1], "phone": PROBE_PHONES[1]}}),
            ("/v1/track", {"userId": "probe-1", "event": "Signed Up", "properties": {
                "email": PROBE_EMAILS[0], "phone": PROBE_PHONES[0]}}),
            ("/v1/track", {"userId": "probe-1", "event": "Consent Updated", "properties": {
                "channel": "email", "purpose": "newsletter", "granted": True}}),
            ("/v1/batch", {"batch": [
                {"type": "identify", "userId": "probe-3", "traits": {"email": PROBE_EMAILS[2]}},
                {"type": "track", "userId": "probe-3", "event": "x", "timestamp": "not a time",
                 "properties": {"phone": PROBE_PHONES[2]}},
            ]}),
        ]  # fmt: skip
        for path, body in calls:
            assert c.post(path, json=body).status_code in (200, 400), path
        bad = c.post(
            "/v1/track",
            content=f'{{"userId": "probe-1", "event": "x", "email": "{PROBE_EMAILS[3]}"',
            headers={"Content-Type": "application/json"},
        )
        assert bad.status_code == 400
        wrong = c.post("/v1/identify", json={"userId": ["probe-9"], "traits": {
            "email": PROBE_EMAILS[3]}})  # fmt: skip
        assert wrong.status_code == 400
    _wait_loaded(url, key, user)


def _wait_loaded(url: str, key: str, user: str) -> None:
    """Until the probes are in the store (the loader ran: the anonymous id is known to the
    decisions), then decisions for a probe and a known customer."""
    deadline = time.monotonic() + 60
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, timeout=10, headers=headers) as c:
        while True:
            d = c.get("/v1/decide", params={"anonymous_id": "anon-probe"})
            if d.status_code == 200 and d.json()["user_id"] == "probe-2":
                break
            assert time.monotonic() < deadline, d.text
            time.sleep(0.3)
        assert c.get("/v1/decide/probe-1").is_success
        assert c.get(f"/v1/decide/{user}").json()["known"] is True


def _unsubscribe(url: str, root: Path, user: str) -> None:
    from segmint.campaigns import key_ring, make_token

    token = make_token(key_ring(root), user)
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get(f"/u/{token}").status_code == 200
        assert c.post(f"/u/{token}").status_code == 200
        assert c.get("/u/not-a-token").status_code in (400, 404)


def _serve(run: Run, user: str) -> None:
    keys = run.segmint("keys", "keys", "create", "probe", "--scope", "admin", "-p", str(run.root),
                       "--json")  # fmt: skip
    key = re.search(r'"(?:secret|key)":\s*"([^"]+)"', keys.stdout)
    assert key is not None, keys.stdout
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = run.tmp / "serve.out", run.tmp / "serve.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "segmint", "serve", "-p", str(run.root), "--port", str(port),
             "--log-level", "debug"],
            stdout=o, stderr=e, env=run.env,
        )  # fmt: skip
        try:
            wait_ready(url, proc)
            _track_calls(url, key.group(1), user)
            _unsubscribe(url, run.root, user)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - a hung shutdown
                proc.kill()
    run.outputs["serve (stdout)"] = out.read_text(errors="replace")
    run.outputs["serve (stderr)"] = err.read_text(errors="replace")


def _failing_loads(run: Run) -> None:
    """A users file with a malformed e-mail and a bad row holding a known phone (rows
    quarantined), and a file that cannot be read (a row with too many fields)."""
    folder = run.root / "probe"
    folder.mkdir()
    (folder / "users.csv").write_text(
        "id,mail,tel,signup\n"
        f"probe-10,{PROBE_EMAILS[2]},{PROBE_PHONES[1]},2024-01-01\n"
        f"probe-11,{PROBE_EMAILS[3]},{PROBE_PHONES[2]},not a date\n"
        f",{PROBE_EMAILS[3]},{PROBE_PHONES[0]},2024-01-01\n",
        encoding="utf-8",
    )
    (folder / "broken.csv").write_text(
        "id,mail,tel\n"
        f'probe-12,"{PROBE_EMAILS[1]},{PROBE_PHONES[0]}\n'
        f"probe-13,{PROBE_EMAILS[0]},{PROBE_PHONES[1]},extra,fields,here\n",
        encoding="utf-8",
    )
    path = run.root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    columns = {"user_id": "id", "email": "mail", "phone": "tel"}
    doc["sources"]["probe_users"] = {
        "type": "csv", "path": "probe/users.csv", "table": "users",
        "columns": {**columns, "created_at": "signup"},
    }  # fmt: skip
    doc["sources"]["probe_broken"] = {
        "type": "csv", "path": "probe/broken.csv", "table": "users", "columns": columns,
    }  # fmt: skip
    # fails outright: a wrong type (the engine's error quotes the value it could not cast)
    doc["sources"]["probe_typed"] = {
        "type": "query", "table": "users", "columns": {**columns, "age": "n"},
        "query": f"SELECT 'probe-30' AS id, '{PROBE_EMAILS[3]}' AS mail, "
        f"'{PROBE_PHONES[2]}' AS tel, CAST('{PROBE_EMAILS[3]}' AS INTEGER) AS n",
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    run.segmint("ingest users", "ingest", "-s", "probe_users", "-p", str(run.root), ok=False)
    run.segmint("ingest broken", "ingest", "-s", "probe_broken", "-p", str(run.root), ok=False)
    typed = run.segmint("ingest typed", "ingest", "-s", "probe_typed", "-p", str(run.root),
                        ok=False)  # fmt: skip
    assert typed.returncode != 0 and "cannot read it" in typed.stderr
    run.segmint(QUARANTINE_VIEW, "quarantine", "users", "-p", str(run.root), ok=False)
    run.segmint("status", "status", "-p", str(run.root), ok=False)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Run:
    base = tmp_path_factory.mktemp("no-pii")
    tmp = base / "tmp"
    tmp.mkdir()
    run = Run(base / "demo", tmp)
    run.segmint("demo", "demo", "--users", "1500", "-p", str(run.root))
    user = str(pd.read_csv(run.root / "exports" / "customers.csv")["customer_id"].iloc[0])
    _serve(run, user)
    _failing_loads(run)
    for path in [*run.root.rglob("*.log"), *tmp.rglob("*")]:
        if path.is_file() and path.suffix in (".log", ".txt", ".err", ".out"):
            run.outputs[str(path)] = path.read_text(errors="replace")
    return run


def _known(root: Path) -> tuple[set[str], set[str]]:
    """Every e-mail (clear and lower-case) and phone (clear and digits only) of the test."""
    customers = pd.read_csv(root / "exports" / "customers.csv", dtype=str)
    emails = {*PROBE_EMAILS, *customers["email_address"].dropna()}
    phones = {*PROBE_PHONES, *customers["phone_number"].dropna()}
    return emails | {e.lower() for e in emails}, phones | {_digits(p) for p in phones}


def _found(text: str, emails: set[str], phones: set[str]) -> set[str]:
    hits = {m for m in EMAIL_LIKE.findall(text) if m in emails or m.lower() in emails}
    for m in DIGIT_RUNS.findall(text):
        if m in phones or _digits(m) in phones:
            hits.add(m)
    hits |= {p for p in PROBE_PHONES if p in text or _digits(p) in text}
    hits |= {e for e in PROBE_EMAILS if e in text or e.lower() in text.lower()}
    return hits


def test_the_probes_went_through(ran: Run) -> None:
    """The run did what it should: the probes reached the store, the bad rows the
    quarantine, the broken file failed, the service logged its requests."""
    import segmint

    with segmint.open_project(ran.root, read_only=True) as p:
        users = set(p.store.query("SELECT user_id FROM users WHERE user_id LIKE 'probe-%'")[
            "user_id"])  # fmt: skip
        assert {"probe-1", "probe-2", "probe-10"} <= users
        assert int(p.store.scalar("SELECT count(*) FROM quarantine")) > 0
    assert "POST /v1/identify 200" in ran.outputs["serve (stderr)"]
    assert any("DEBUG" in text for text in ran.outputs.values())
    assert len("".join(ran.outputs.values())) > 10_000


def _leaks(ran: Run, *, view: bool) -> dict[str, Any]:
    emails, phones = _known(ran.root)
    leaks: dict[str, Any] = {}
    for where, text in ran.outputs.items():
        if where.startswith(QUARANTINE_VIEW) != view:
            continue
        found = _found(text, emails, phones)
        if found:
            leaks[where] = sorted(found)[:5]
    return leaks


def test_no_email_or_phone_in_any_output_or_log(ran: Run) -> None:
    leaks = _leaks(ran, view=False)
    assert leaks == {}, f"personal data in output: {leaks}"


def test_the_quarantine_view_shows_no_email_or_phone(ran: Run) -> None:
    leaks = _leaks(ran, view=True)
    assert leaks == {}, f"personal data in the quarantine view: {leaks}"


def test_engine_errors_and_log_lines_lose_the_values_they_quote() -> None:
    from segmint._redact import redact_values

    emails = {"ann@example.com", "Ann.B@Example.org"}
    phones = {"+49 170 5550199", "+1 (415) 555-0123"}
    leaky = (
        "Conversion Error: Could not convert string 'ann@example.com' to INT32",
        'invalid input syntax for type integer: "+49 170 5550199"',
        "DETAIL:  Key (email)=(ann@example.com) already exists.",
        "sent to Ann.B@Example.org via +1 (415) 555-0123",
    )
    for text in leaky:
        assert _found(text, emails, phones)  # the scan sees it
        assert not _found(redact_values(text), emails, phones), redact_values(text)
    kept = "No magic bytes found at end of file '/srv/x.parquet'; 1000000 rows at 2026-12-04 21:43"
    assert redact_values(kept) == kept
