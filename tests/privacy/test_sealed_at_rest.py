"""Personal data is sealed at load time (issue 21): no known e-mail or phone number is found
in the DuckDB file, a PostgreSQL dump, the quarantine, the tracking spool or any file the
project wrote; reloads still count rows as unchanged; erased people are not loaded again."""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from tests.serve.conftest import Served

import segmint
from segmint.errors import ConfigError
from segmint.serve import create_app
from segmint.serve._auth import create_key
from segmint.store import Vault, is_sealed, open_vault

EMAILS = ["Alice.Martin@example.org", "bob.dupont@example.net", "chloe+news@example.com"]
PHONES = ["+33 6 12 34 56 78", "+49 151 2345 6789", "06 98 76 54 32"]
TRACKED_EMAIL = "Tracked.Person@example.io"
TRACKED_PHONE = "+1 415 555 0199"

USERS_CSV = (
    "user_id,email,phone,birthday,country\n"
    f"u1,{EMAILS[0]},{PHONES[0]},1980-04-12,FR\n"
    f"u2,{EMAILS[1]},{PHONES[1]},1975-12-01,DE\n"
    f"u3,{EMAILS[2]},{PHONES[2]},1990-07-30,FR\n"
    # malformed e-mail: a field issue (the value NULL), the row kept in the quarantine
    "u4,not-an-email,+33 7 11 22 33 44,1985-01-01,FR\n"
)
ORDERS_CSV = "order_id,user_id,ts,amount\no1,u1,2024-01-02 10:00:00,12.5\no2,u9,2024-01-03,3\n"


def needles() -> list[bytes]:
    """Every form of the known contacts a leak would show."""
    out: set[str] = set()
    for e in [*EMAILS, TRACKED_EMAIL]:
        out |= {e, e.lower()}
    for p in [*PHONES, TRACKED_PHONE, "+33 7 11 22 33 44"]:
        digits = re.sub(r"\D", "", p)
        out |= {p, digits, digits[-9:]}
    return [n.encode() for n in out]


def write_project(root: Path, store: str = "p.duckdb", *, encrypt: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "in").mkdir(exist_ok=True)
    (root / "in" / "users.csv").write_text(USERS_CSV, encoding="utf-8")
    (root / "in" / "orders.csv").write_text(ORDERS_CSV, encoding="utf-8")
    (root / "segmint.yaml").write_text(
        f"project: sealed\nstore: {store}\n"
        f"privacy: {{encrypt: {'true' if encrypt else 'false'}}}\n"
        "sources:\n"
        "  users: {type: csv, path: in/users.csv, table: users}\n"
        "  orders: {type: csv, path: in/orders.csv, table: orders}\n",
        encoding="utf-8",
    )


def track_identify(p: segmint.Project) -> None:
    """An identify with an e-mail and a phone through the real tracking API, loaded."""
    key = create_key(p.store, "web", "write")
    with Served(create_app(p)) as s, httpx.Client(base_url=s.url, auth=(key, "")) as c:
        r = c.post(
            "/v1/identify",
            json={"userId": "u1", "traits": {"email": TRACKED_EMAIL, "phone": TRACKED_PHONE,
                                             "first_name": "Alice", "plan": "pro"}},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            n = p.store.scalar("SELECT count(*) FROM loads WHERE source LIKE 'tracking:%'")
            if n:
                break
            time.sleep(0.2)
        assert n, "the tracking loader did not load the identify"
        # the spool, while the service lives (a loaded file is deleted when it stops)
        spool = list((Path(p.root) / ".segmint" / "spool").glob("spool-*.jsonl"))
        assert spool and all(f.read_bytes().startswith(b"enc1:") for f in spool)
        assert scan(spool) == []


def scan(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        data = path.read_bytes()
        found += [f"{path.name}: {n.decode()}" for n in needles() if n in data]
    return found


def project_files(root: Path) -> list[Path]:
    """Every file under the project except the input files its config points at."""
    return [f for f in root.rglob("*") if f.is_file() and "in" not in f.relative_to(root).parts]


def test_no_known_contact_is_stored_in_clear_in_duckdb(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    write_project(root)
    with segmint.open_project(root) as p:
        users, orders = p.ingest()
        assert (users.rows_inserted, users.field_issues) == (4, 1)
        track_identify(p)
        stored = p.store.query("SELECT * FROM users WHERE user_id = 'u1'").iloc[0]
        vault = open_vault(p.store, p.config)
        assert is_sealed(stored["email"]) and is_sealed(stored["birthday"])
        # the identify merged over the stored row, the loader sealed it again
        assert vault.open(stored["email"], "users.email") == TRACKED_EMAIL
        assert vault.open(stored["birthday"], "users.birthday") == "1980-04-12"
        assert stored["email_index"] == vault.index(TRACKED_EMAIL, "email")
        assert int(stored["birthday_md"]) == 412
        q = p.quarantine()  # the reader's view: opened
        assert "not-an-email" in " ".join(str(v) for v in q["raw"])
        assert list(q[q["kind"] == "field_issue"]["raw_value"]) == ["not-an-email"]
        raw_stored = p.store.query("SELECT CAST(raw AS VARCHAR) AS r FROM quarantine")["r"]
        assert all("not-an-email" not in str(r) for r in raw_stored)
        assert "not-an-email" not in str(p.store.scalar("SELECT raw_value FROM quarantine"))
        p.store.execute("CHECKPOINT")
    leaks = scan(project_files(root))
    assert leaks == [], leaks


def test_no_known_contact_in_a_postgres_dump(tmp_path: Path, pg_url: str) -> None:
    root = tmp_path / "proj"
    write_project(root, store=pg_url)
    with segmint.open_project(root) as p:
        users, _ = p.ingest()
        assert users.rows_inserted == 4
        again = p.ingest(force=True)
        assert again[0].rows_unchanged == 4 and again[0].rows_updated == 0
        vault = open_vault(p.store, p.config)
        email = p.store.scalar("SELECT email FROM users WHERE user_id = 'u2'")
        assert vault.open(email, "users.email") == EMAILS[1]
    base, _, opts = pg_url.partition("?")
    schema = re.search(r"search_path%3D(\w+)", opts).group(1)  # type: ignore[union-attr]
    dump = subprocess.run(
        ["/usr/bin/pg_dump", "--schema", schema, base], capture_output=True, check=True
    ).stdout
    assert b"users" in dump and b"enc1:" in dump
    assert [n for n in needles() if n in dump] == []


def test_a_reload_counts_unchanged_and_encrypt_false_stores_clear(tmp_path: Path) -> None:
    root = tmp_path / "sealed"
    write_project(root)
    with segmint.open_project(root) as p:
        p.ingest()
        (again, _) = p.ingest(force=True)
        assert (again.rows_inserted, again.rows_updated, again.rows_unchanged) == (0, 0, 4)
    clear = tmp_path / "clear"
    write_project(clear, encrypt=False)
    with segmint.open_project(clear) as p:
        p.ingest()
        row = p.store.query("SELECT * FROM users WHERE user_id = 'u1'").iloc[0]
        assert row["email"] == EMAILS[0] and row["birthday"] == "1980-04-12"
        vault = open_vault(p.store, p.config)
        assert row["email_index"] == vault.index(EMAILS[0].upper(), "email")
        assert row["phone_index"] == vault.index("+33612345678", "phone")
        (again, _) = p.ingest(force=True)
        assert again.rows_unchanged == 4


def test_stored_clear_rows_become_sealed_as_updates(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root, encrypt=False)
    with segmint.open_project(root) as p:
        p.ingest()
    text = (root / "segmint.yaml").read_text().replace("encrypt: false", "encrypt: true")
    (root / "segmint.yaml").write_text(text)
    with segmint.open_project(root) as p:
        (users, _) = p.ingest(force=True)
        assert users.rows_updated == 4
        assert is_sealed(p.store.scalar("SELECT phone FROM users WHERE user_id = 'u3'"))


def test_erased_people_are_not_loaded_again(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root)
    with segmint.open_project(root) as p:
        p.ingest()
        vault = open_vault(p.store, p.config)
        p.store.execute("DELETE FROM orders")
        p.store.execute("DELETE FROM users WHERE user_id IN ('u1', 'u2')")
        # u1 forgotten by user id; u2 by e-mail index only (another id in a later file)
        p.store.execute(
            "INSERT INTO erasures (subject, email_index, erased_at, actor, request_id) VALUES "
            "(?, ?, now(), 'test', 'r1'), (?, ?, now(), 'test', 'r2')",
            [vault.index("u1", "user"), vault.index(EMAILS[0], "email"),
             vault.index("gone", "user"), vault.index(EMAILS[1].upper(), "email")],
        )  # fmt: skip
        users, orders = p.ingest(force=True)
        assert users.rejected_by_rule.get("erased") == 2
        assert users.rows_read == users.rows_accepted + users.rows_rejected
        assert orders.rejected_by_rule.get("erased") == 1  # o1 of u1
        ids = set(p.store.query("SELECT user_id FROM users")["user_id"])
        assert ids == {"u3", "u4"}
        q = p.store.query("SELECT reason, raw FROM quarantine WHERE rule = 'erased'")
        assert len(q) == 3 and q["raw"].isna().all()  # u1, u2, o1
        assert set(q["reason"]) == {"this person asked to be forgotten"}


def test_a_wrong_master_key_is_a_clear_config_error(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root)
    with segmint.open_project(root) as p:
        p.ingest()
    (root / ".segmint" / "master.key").write_text("22" * 32 + "\n")
    with segmint.open_project(root) as p, pytest.raises(ConfigError, match="SEGMINT_MASTER_KEY"):
        p.ingest(force=True)


def test_a_derived_column_cannot_be_mapped(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_project(root)
    (root / "segmint.yaml").write_text(
        "store: p.duckdb\nsources:\n  users:\n    type: csv\n    path: in/users.csv\n"
        "    table: users\n    columns: {user_id: user_id, email_index: email}\n"
    )
    with pytest.raises(Exception, match="computed by the loader"):
        segmint.open_project(root).config  # noqa: B018


def test_the_sql_blind_index_equals_vault_index() -> None:
    import duckdb

    rng = random.Random(5)
    vault = Vault({"k1": os.urandom(64)}, "k1", os.urandom(32))
    alphabet = "aZ09 +-.@_éüÉ中😀\t\n٣"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(500)]
    con = duckdb.connect()
    con.register("v", pa.table({"x": values}))
    for kind in ("email", "phone", "user"):
        got = [r[0] for r in con.execute(f"SELECT {vault.index_sql('x', kind)} FROM v").fetchall()]
        assert got == [vault.index(x, kind) for x in values], kind


def test_batch_sealing_equals_aessiv_and_opens() -> None:
    import duckdb

    rng = random.Random(3)
    key = os.urandom(64)
    vault = Vault({"k1": key}, "k1", os.urandom(32))
    values: list[str | None] = [None, "", "a" * 15, "b" * 16, "c" * 17, "é" * 20]
    values += [
        "".join(rng.choice("ab@.中😀") for _ in range(rng.randint(0, 90))) for _ in range(300)
    ]
    sealed = vault.seal_arrow(pa.array(values, pa.string()), "users.email").to_pylist()
    siv = AESSIV(key)
    assert sealed == [
        None if v is None else siv.encrypt(v.encode(), [b"users.email"]) for v in values
    ]
    con = duckdb.connect()
    vault.register(con)
    con.register("v", pa.table({"x": pa.array(values, pa.string())}))
    texts = [
        r[0] for r in con.execute(f"SELECT {vault.seal_sql('x', 'users.email')} FROM v").fetchall()
    ]
    assert texts == [vault.seal(v, "users.email") for v in values]
    assert [vault.open(t, "users.email") for t in texts] == values
