"""``segmint privacy rotate-key``: a new data key, every value re-sealed, no row lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from segmint.config import Config
from segmint.errors import StoreError
from segmint.privacy import rotate_key
from segmint.store import Store, open_store, open_vault, verify_audit

USERS = [
    ("u1", "ada@example.com", "+33 1 23 45 67 89", "1990-02-03", {"first_name": "Ada", "zip": "75001"}),
    ("u2", "bob@example.org", None, None, None),
    ("u3", "cleo@example.net", "+49 30 1234567", "1985-12-24", {"last_name": "Li"}),
]  # fmt: skip


@pytest.fixture(params=["duckdb", "postgres"])
def sealed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Config]]:
    """A store with three users: u1 and u2 sealed, u3 in clear (stored before
    encryption), an event with a personal property in clear and one sealed, a quarantined
    row sealed."""
    url = str(tmp_path / "s.duckdb")
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    config = Config(project="t", root=tmp_path, store=url)
    store = open_store(url)
    vault = open_vault(store, config)
    for i, (uid, email, phone, birthday, traits) in enumerate(USERS):
        seal = i < 2
        values = [
            vault.seal(email, "users.email") if seal else email,
            vault.seal(phone, "users.phone") if seal else phone,
            vault.seal(birthday, "users.birthday") if seal else birthday,
            None if traits is None else json.dumps(vault.seal_json(traits, "users.traits") if seal else traits),
        ]  # fmt: skip
        store.execute(
            "INSERT INTO users (user_id, email, phone, birthday, traits) "
            "VALUES (?, ?, ?, ?, CAST(? AS JSON))",
            [uid, *values],
        )
    props = [
        {"email": "ada@example.com", "page": "/"},
        vault.seal_json({"phone": "+1 555"}, "events.properties"),
        {"page": "/x"},
    ]
    for i, p in enumerate(props):
        store.execute(
            "INSERT INTO events (event_id, user_id, event, ts, properties) "
            "VALUES (?, 'u1', 'view', current_timestamp, CAST(? AS JSON))",
            [f"e{i}", json.dumps(p)],
        )
    store.execute(
        'INSERT INTO quarantine (load_id, "row", source, target_table, rule, reason, raw, '
        "kind, field, raw_value) VALUES ('l1', 1, 'users', 'users', 'email', 'bad', "
        "CAST(? AS JSON), 'field_issue', 'email', ?)",
        [
            json.dumps(vault.seal('{"email": "x@y"}', "quarantine.raw")),
            vault.seal("x@y", "quarantine.raw_value"),
        ],
    )
    yield store, config
    store.close()


def _snapshot(store: Store) -> dict[str, list[object]]:
    return {
        "users": store.query("SELECT user_id, email, phone, birthday, CAST(traits AS VARCHAR) AS traits, "
                             "email_index, phone_index FROM users ORDER BY user_id").values.tolist(),
        "events": store.query("SELECT event_id, CAST(properties AS VARCHAR) AS p FROM events ORDER BY event_id").values.tolist(),
        "quarantine": store.query("SELECT CAST(raw AS VARCHAR) AS raw, raw_value FROM quarantine").values.tolist(),
        "keys": store.query("SELECT key_id, kind, retired_at FROM privacy_keys ORDER BY key_id").values.tolist(),
    }  # fmt: skip


def _clear(store: Store, config: Config) -> dict[str, object]:
    vault = open_vault(store, config)
    users = store.query(
        "SELECT user_id, email, phone, birthday, CAST(traits AS VARCHAR) AS traits FROM users ORDER BY user_id"
    )
    events = store.query("SELECT CAST(properties AS VARCHAR) AS p FROM events ORDER BY event_id")
    q = store.query("SELECT CAST(raw AS VARCHAR) AS raw, raw_value FROM quarantine")
    return {
        "users": [
            (r.user_id, vault.open(r.email, "users.email"), vault.open(r.phone, "users.phone"),
             vault.open(r.birthday, "users.birthday"),
             None if not isinstance(r.traits, str) else vault.open_json(json.loads(r.traits), "users.traits"))
            for r in users.itertuples()
        ],
        "events": [vault.open_json(json.loads(p), "events.properties") for p in events["p"]],
        "raw": vault.open(json.loads(q["raw"].iat[0]), "quarantine.raw"),
        "raw_value": vault.open(q["raw_value"].iat[0], "quarantine.raw_value"),
    }  # fmt: skip


def test_rotation_reseals_every_value_with_the_new_key(sealed: tuple[Store, Config]) -> None:
    store, config = sealed
    old_key = open_vault(store, config).current
    before = _clear(store, config)
    report = rotate_key(store, config, actor="tester")
    assert report.new_key != old_key
    assert report.retired == [old_key] and report.removed == [old_key]
    assert _clear(store, config) == before  # every value opens to the same clear text
    users = store.query(
        "SELECT email, phone, birthday, CAST(traits AS VARCHAR) AS t, email_index, phone_index FROM users ORDER BY user_id"
    )
    for col in ("email", "phone", "birthday"):
        for v in users[col].dropna():
            assert v.startswith(f"enc1:{report.new_key}:")  # u3, in clear before, is sealed too
    assert f"enc1:{report.new_key}:" in users["t"].iat[2]  # u3's last_name sealed
    assert "Li" not in users["t"].iat[2]
    # blind indexes computed where missing, from the opened values
    vault = open_vault(store, config)
    assert users["email_index"].tolist() == [vault.index(u[1], "email") for u in USERS]
    assert not isinstance(users["phone_index"].iat[1], str)
    props = store.query("SELECT CAST(properties AS VARCHAR) AS p FROM events ORDER BY event_id")[
        "p"
    ]
    assert "ada@example.com" not in props.iat[0] and '"/"' in props.iat[0]
    assert json.loads(props.iat[2]) == {"page": "/x"}
    by = {(c.table, c.column): c for c in report.columns}
    for c in report.columns:
        assert (c.rows_before, c.values_before) == (c.rows_after, c.values_after)
    assert by["users", "email"].rows_before == 3 and by["users", "email"].resealed == 3
    assert by["users", "email"].sealed_from_clear == 1
    assert by["users", "phone"].values_after == 2
    assert by["quarantine", "raw"].resealed == 1
    assert store.scalar("SELECT count(*) FROM privacy_keys WHERE key_id = ?", [old_key]) == 0
    last = store.query("SELECT action, target, actor FROM audit_log ORDER BY seq DESC LIMIT 1")
    assert last.values.tolist() == [["privacy.rotate_key", report.new_key, "tester"]]
    assert verify_audit(store).ok


def test_rotating_twice_keeps_every_value(sealed: tuple[Store, Config]) -> None:
    store, config = sealed
    before = _clear(store, config)
    first = rotate_key(store, config)
    second = rotate_key(store, config)
    assert second.removed == [first.new_key]
    assert _clear(store, config) == before
    assert store.scalar("SELECT count(*) FROM privacy_keys WHERE kind = 'data'") == 1


def test_a_tampered_value_stops_the_rotation_and_changes_nothing(
    sealed: tuple[Store, Config],
) -> None:
    store, config = sealed
    sealed_phone = store.scalar("SELECT phone FROM users WHERE user_id = 'u1'")
    tampered = sealed_phone[:-3] + ("AAA" if not sealed_phone.endswith("AAA") else "BBB")
    store.execute("UPDATE users SET phone = ? WHERE user_id = 'u1'", [tampered])
    before = _snapshot(store)
    n_audit = store.scalar("SELECT count(*) FROM audit_log")
    with pytest.raises(StoreError, match="users.phone value does not open"):
        rotate_key(store, config)
    assert _snapshot(store) == before
    assert store.scalar("SELECT count(*) FROM audit_log") == n_audit
    # the cached vault still opens what is stored
    assert (
        open_vault(store, config).open(
            store.scalar("SELECT email FROM users WHERE user_id = 'u1'"), "users.email"
        )
        == "ada@example.com"
    )


def test_rotation_refuses_when_encryption_is_off(
    sealed: tuple[Store, Config], tmp_path: Path
) -> None:
    from segmint.errors import ConfigError

    store, config = sealed
    off = config.model_copy(
        update={"privacy": config.privacy.model_copy(update={"encrypt": False})}
    )
    with pytest.raises(ConfigError, match="privacy.encrypt is false"):
        rotate_key(store, off)


def test_new_master_rewraps_every_key(
    sealed: tuple[Store, Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    from segmint.errors import ConfigError
    from segmint.store import MasterKeyWrapper

    store, config = sealed
    before = _clear(store, config)
    new = secrets.token_hex(32)
    report = rotate_key(store, config, new_master=MasterKeyWrapper(bytes.fromhex(new)))
    assert report.master is not None and report.master.startswith("mk-")
    wrappers = store.query("SELECT DISTINCT wrapper FROM privacy_keys")["wrapper"].tolist()
    assert wrappers == [report.master]
    with pytest.raises(ConfigError, match="does not unwrap it"):
        open_vault(store, config, refresh=True)  # the old master key no longer opens the store
    monkeypatch.setenv("SEGMINT_MASTER_KEY", new)
    open_vault(store, config, refresh=True)
    assert _clear(store, config) == before


def test_the_command_reports_counts_and_the_removed_key(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from segmint import open_project
    from segmint.cli import app

    runner = CliRunner()
    root = tmp_path / "shop"
    assert runner.invoke(app, ["init", str(root)]).exit_code == 0
    with open_project(root) as p:
        old = open_vault(p.store, p.config).current
        p.store.execute("INSERT INTO users (user_id, email) VALUES ('u1', 'ann@example.com')")
    done = runner.invoke(app, ["privacy", "rotate-key", "-p", str(root)])
    assert done.exit_code == 0, done.output
    assert f"old key {old} removed: no value uses it" in done.output
    assert "users.email" in done.output and "ann@example.com" not in done.output
    done = runner.invoke(app, ["privacy", "rotate-key", "-p", str(root), "--json"])
    data = json.loads(done.stdout)
    email = next(c for c in data["columns"] if (c["table"], c["column"]) == ("users", "email"))
    assert email["rows_before"] == email["rows_after"] == 1 and email["resealed"] == 1
    done = runner.invoke(app, ["privacy", "rotate-key", "--new-master", "-p", str(root)])
    assert done.exit_code == 2 and "SEGMINT_NEW_MASTER_KEY" in done.output
