"""Campaign fixtures: a small demo shop (built once), hand-made stores, local sinks."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.privacy.sealing import seal_users

import segmint
from segmint.campaigns import SmtpSink, WebhookSink, default_playbook
from segmint.config import Config
from segmint.store import Store, open_store, open_vault

TODAY = date(2026, 11, 27)


@pytest.fixture(scope="session")
def demo_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,500-user demo shop, ingested, with rfm (a month ago and now) and lifecycle."""
    from segmint.demo import generate_demo
    from segmint.features import default_as_of

    root = tmp_path_factory.mktemp("campaign-demo")
    generate_demo(root, n_users=1500, seed=3)
    with segmint.open_project(root) as p:
        p.ingest()
        from datetime import timedelta

        before = p.compute_features(as_of=default_as_of(p.store) - timedelta(days=30))
        p.segment("rfm", feature_run=before)
        p.segment(["rfm", "lifecycle"])
        seal_users(p.store, open_vault(p.store, p.config))  # as the loader does (issue 21)
    return root


def write_playbook(root: Path, playbook: dict[str, Any] | str) -> None:
    """Replace the playbook: section of root/segmint.yaml."""
    path = root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    pb = yaml.safe_load(playbook)["playbook"] if isinstance(playbook, str) else playbook
    doc["playbook"] = pb
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


@pytest.fixture()
def demo(demo_base: Path, tmp_path: Path) -> Path:
    """A private copy of the demo project (its store included)."""
    root = tmp_path / "demo"
    shutil.copytree(demo_base, root, ignore=shutil.ignore_patterns("exports", "truth"))
    return root


def demo_playbook(
    root: Path, *, smtp_port: int = 1025, webhook_url: str | None = None
) -> dict[str, Any]:
    """The default playbook for the demo project, pointed at local sinks."""
    with segmint.open_project(root) as p:
        pb = yaml.safe_load(default_playbook(p.config, store=p.store, today=TODAY))["playbook"]
    pb["channels"]["email"]["port"] = smtp_port
    pb["channels"]["email"]["host"] = "127.0.0.1"
    pb["channels"]["email"].pop("rate_per_second", None)
    pb["channels"]["push"]["url"] = webhook_url or "http://127.0.0.1:9/push"
    pb["channels"]["push"]["secret_env"] = None
    pb["channels"]["push"]["backoff"] = 0.01
    return pb


def open_demo(root: Path, playbook: dict[str, Any] | None = None) -> tuple[Store, Config]:
    if playbook is not None:
        write_playbook(root, playbook)
    p = segmint.open_project(root)
    return p.store, p.config


@pytest.fixture()
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture()
def webhook_sink() -> Iterator[WebhookSink]:
    with WebhookSink() as sink:
        yield sink


# -- a tiny hand-made store whose answers can be computed by hand -------------------------

USERS = [
    # user_id, email, birthday
    ("u01", "ann@example.com", "1990-11-28"),  # consent; birthday tomorrow
    ("u02", "bob@example.com", "1985-01-02"),  # consent; birthday after new year
    ("u03", "not-an-address", "1980-06-01"),  # consent, invalid e-mail
    ("u04", "dan@example.com", "1992-03-03"),  # consent then withdrawn
    ("u05", "eve@example.com", "1970-07-07"),  # unsubscribed
    ("u06", "fay@example.com", "2000-02-29"),  # suppressed
    ("u07", "gus@example.com", "1999-09-09"),  # denied then granted (latest wins)
    ("u08", "hal@example.com", "1988-08-08"),  # no consent row at all
    ("u09", "ivy@example.com", "1977-12-31"),  # consent, at the frequency cap
    ("u10", "jon@example.com", "1966-05-05"),  # consent; was already in the segment before
]
CONSENTS = [
    ("u01", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u02", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u03", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u04", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u04", "email", "2025-01-01 00:00:00", False, "preference centre"),
    ("u05", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u05", "email", "2025-01-01 00:00:00", False, "unsubscribe"),
    ("u06", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u07", "email", "2024-01-01 00:00:00", False, "signup"),
    ("u07", "email", "2025-06-01 00:00:00", True, "preference centre"),
    ("u09", "email", "2024-01-01 00:00:00", True, "signup"),
    ("u10", "email", "2024-01-01 00:00:00", True, "signup"),
]


def build_tiny_store(url: str, *, seal: bool = True) -> Store:
    """Users (their personal values sealed), consents, two runs of 'life' (u10 already
    'gold' in the first), a suppression of u06 and two recent deliveries of u09 by another
    campaign."""
    store = open_store(url)

    rows = ", ".join(
        f"('{u}', '{e}', CAST('{b}' AS DATE), CAST('2024-01-01 00:00:00+00' AS TIMESTAMPTZ))"
        for u, e, b in USERS
    )
    store.execute(f"INSERT INTO users (user_id, email, birthday, created_at) VALUES {rows}")
    # what the loader does (issue 21): the birthday's month-day in clear, the rest sealed
    store.execute(
        "UPDATE users SET birthday_md = CAST(EXTRACT(MONTH FROM CAST(birthday AS DATE)) * 100 "
        "+ EXTRACT(DAY FROM CAST(birthday AS DATE)) AS INTEGER)"
    )
    if seal:
        seal_users(store, open_vault(store, tiny_config()))
    rows = ", ".join(
        f"('{u}', '{c}', 'marketing', CAST('{t}+00' AS TIMESTAMPTZ), {str(g).upper()}, '{s}')"
        for u, c, t, g, s in CONSENTS
    )
    store.execute(
        f"INSERT INTO consents (user_id, channel, purpose, ts, granted, source) VALUES {rows}"
    )
    for run, created, members in (
        ("s-1-life", "2026-10-01 00:00:00", ["u10"]),
        ("s-2-life", "2026-11-01 00:00:00", [u for u, _, _ in USERS]),
    ):
        store.execute(
            "INSERT INTO segment_runs (run_id, segmentation, method, created_at, as_of, n_users) "
            f"VALUES ('{run}', 'life', 'rules', CAST('{created}+00' AS TIMESTAMPTZ), "
            f"CAST('{created}+00' AS TIMESTAMPTZ), {len(members)})"
        )
        rows = ", ".join(f"('{run}', '{u}', 'gold')" for u in members)
        store.execute(f"INSERT INTO segment_assignments (run_id, user_id, segment) VALUES {rows}")
    store.execute(
        "INSERT INTO suppressions (user_id, address, channel, reason, created_at) VALUES "
        "('u06', NULL, NULL, 'hard bounce', CAST('2026-01-01 00:00:00+00' AS TIMESTAMPTZ))"
    )
    for k in (1, 2):
        store.execute(
            "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, channel, "
            f"status, attempts, ambiguous, created_at, sent_at) VALUES ('other|u09|{k}', "
            f"'other', 'c-0', 'u09', '{k}', 'email', 'sent', 1, FALSE, "
            "current_timestamp, current_timestamp)"
        )
    return store


TINY_PLAYBOOK: dict[str, Any] = {
    "holdout": 0.0,
    "frequency_cap": {"max_messages": 2, "window_days": 7},
    "channels": {"email": {"type": "email", "host": "127.0.0.1", "port": 9, "from": "s@x.org"}},
    "templates": {"hello": {"subject": "Hi {{ user_id }}", "body": "{{ offer.label }}"}},
    "strategies": {"life": {"gold": {"template": "hello"}}},
    "campaigns": {
        "gold_once": {"segmentation": "life", "segments": ["gold"]},
        "gold_new": {
            "segmentation": "life",
            "segments": ["gold"],
            "trigger": {"type": "lifecycle_transition"},
        },
        "gold_birthday": {
            "segmentation": "life",
            "segments": ["gold"],
            "trigger": {"type": "birthday", "within_days": 7},
        },
    },
}


def tiny_config(playbook: dict[str, Any] | None = None, root: Path | None = None) -> Config:
    """A config without a file; its root (where send runs keep their hand-over journal) is
    ``root`` or a new temporary folder, never the working directory."""
    config = Config.model_validate({"playbook": playbook or TINY_PLAYBOOK})
    return config.model_copy(update={"root": root or Path(tempfile.mkdtemp(prefix="segmint-"))})


@pytest.fixture()
def tiny(tmp_path: Path) -> Iterator[Store]:
    store = build_tiny_store(str(tmp_path / "tiny.duckdb"))
    yield store
    store.close()
