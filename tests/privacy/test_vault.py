"""The vault (segmint.store._vault): sealing, keys, blind indexes; the audit chain."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest

from segmint.config import Config
from segmint.errors import ConfigError, StoreError
from segmint.store import (
    Store,
    append_audit,
    is_sealed,
    open_store,
    open_vault,
    verify_audit,
)


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = open_store(str(tmp_path / "s.duckdb"))
    yield s
    s.close()


def _config(tmp_path: Path, **privacy: object) -> Config:
    return Config.model_validate({"privacy": privacy}).model_copy(update={"root": tmp_path})


def test_a_value_seals_and_opens_and_equal_values_seal_equal(store: Store, tmp_path: Path) -> None:
    vault = open_vault(store, _config(tmp_path))
    sealed = vault.seal("ana.lopez@example.com", "users.email")
    assert is_sealed(sealed) and "ana" not in sealed and "example" not in sealed
    assert vault.open(sealed, "users.email") == "ana.lopez@example.com"
    assert vault.seal("ana.lopez@example.com", "users.email") == sealed  # deterministic
    assert vault.seal(sealed, "users.email") == sealed  # never sealed twice
    assert vault.seal(None, "users.email") is None
    assert vault.open("clear@example.com", "users.email") == "clear@example.com"


def test_a_value_moved_to_another_field_or_altered_does_not_open(
    store: Store, tmp_path: Path
) -> None:
    vault = open_vault(store, _config(tmp_path))
    sealed = vault.seal("+49 30 1234567", "users.phone")
    with pytest.raises(StoreError, match="altered"):
        vault.open(sealed, "users.email")
    body = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    with pytest.raises(StoreError, match="altered"):
        vault.open(body, "users.phone")


def test_personal_trait_keys_are_sealed_and_the_rest_stays_readable(
    store: Store, tmp_path: Path
) -> None:
    vault = open_vault(store, _config(tmp_path, personal_traits=["loyalty_card"]))
    traits = {"first_name": "Ana", "homeAddress": {"city": "Berlin"}, "zip_code": "10115",
              "loyalty_card": 1234, "plan": "pro"}  # fmt: skip
    sealed = vault.seal_json(traits, "users.traits")
    assert sealed["zip_code"] == "10115" and sealed["plan"] == "pro"
    assert all(is_sealed(sealed[k]) for k in ("first_name", "homeAddress", "loyalty_card"))
    assert vault.open_json(sealed, "users.traits") == traits


def test_the_sql_blind_index_equals_the_python_one(store: Store, tmp_path: Path) -> None:
    vault = open_vault(store, _config(tmp_path))
    rng = random.Random(5)
    alphabet = "abcXYZ09 .+-@_é中"
    values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))) for _ in range(300)]
    values += ["  Ana.Lopez@Example.COM ", "+49 (30) 123-45", "", "   "]
    con = duckdb.connect()
    con.execute("CREATE TABLE v (i INTEGER, x VARCHAR)")
    con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
    for kind in ("email", "phone", "user"):
        got = dict(con.execute(f"SELECT i, {vault.index_sql('x', kind)} FROM v").fetchall())
        assert [got[i] for i in range(len(values))] == [vault.index(v, kind) for v in values]
    assert vault.index(" Ana@X.com", "email") == vault.index("ana@x.com", "email")
    assert vault.index("+49 30 12345", "phone") == vault.index("+49-30-12345", "phone")


def test_the_keys_are_stored_wrapped_and_a_wrong_master_key_is_named(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMINT_MASTER_KEY", "11" * 32)
    sealed = open_vault(store, _config(tmp_path)).seal("a@b.co", "users.email")
    wrapped = store.query("SELECT kind, wrapped, wrapper FROM privacy_keys ORDER BY kind")
    assert wrapped["kind"].tolist() == ["data", "index"]
    monkeypatch.setenv("SEGMINT_MASTER_KEY", "22" * 32)
    with pytest.raises(ConfigError, match="does not unwrap it: set \\$SEGMINT_MASTER_KEY"):
        open_vault(store, _config(tmp_path), refresh=True)
    monkeypatch.setenv("SEGMINT_MASTER_KEY", "11" * 32)
    assert (
        open_vault(store, _config(tmp_path), refresh=True).open(sealed, "users.email") == "a@b.co"
    )
    monkeypatch.setenv("SEGMINT_MASTER_KEY", "not a key")
    with pytest.raises(ConfigError, match="not 32 bytes"):
        open_vault(store, _config(tmp_path), refresh=True)


def test_without_a_key_a_key_file_is_made_once_readable_by_its_owner_only(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGMINT_MASTER_KEY", raising=False)
    vault = open_vault(store, _config(tmp_path))
    key = tmp_path / ".segmint" / "master.key"
    assert key.stat().st_mode & 0o777 == 0o600
    text = key.read_text()
    sealed = vault.seal("a@b.co", "users.email")
    assert (
        open_vault(store, _config(tmp_path), refresh=True).open(sealed, "users.email") == "a@b.co"
    )
    assert key.read_text() == text
    with pytest.raises(ConfigError, match="does not exist"):
        open_vault(store, _config(tmp_path, master_key_file="nowhere.key"), refresh=True)


class _Kms:
    """A key wrapper as a cloud KMS plugs in (privacy.key_wrapper: module:attribute): here
    an AES-GCM key standing for the remote key."""

    key_id = "kms-test"
    calls = 0

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(b"k" * 32)

    def wrap(self, key: bytes) -> bytes:
        type(self).calls += 1
        return b"n" * 12 + self._aead.encrypt(b"n" * 12, key, b"segmint")

    def unwrap(self, wrapped: bytes) -> bytes:
        type(self).calls += 1
        return self._aead.decrypt(wrapped[:12], wrapped[12:], b"segmint")


kms = _Kms()


def test_a_kms_key_wrapper_plugs_in(store: Store, tmp_path: Path) -> None:
    config = _config(tmp_path, key_wrapper=f"{__name__}:kms")
    vault = open_vault(store, config)
    assert vault.open(vault.seal("x@y.zz", "users.email"), "users.email") == "x@y.zz"
    assert _Kms.calls >= 4  # two keys wrapped, two unwrapped
    assert set(store.query("SELECT wrapper FROM privacy_keys")["wrapper"]) == {"kms-test"}
    assert not (tmp_path / ".segmint" / "master.key").exists()
    with pytest.raises(ConfigError, match="cannot be loaded"):
        open_vault(store, _config(tmp_path, key_wrapper="no.such.module:x"), refresh=True)


def test_encryption_off_stores_clear_values_and_still_indexes(store: Store, tmp_path: Path) -> None:
    vault = open_vault(store, _config(tmp_path, encrypt=False))
    assert vault.seal("a@b.co", "users.email") == "a@b.co"
    assert vault.seal_json({"first_name": "Ana"}, "users.traits") == {"first_name": "Ana"}
    assert vault.index("a@b.co", "email") is not None


def test_the_duckdb_functions_seal_and_open_set_based(store: Store, tmp_path: Path) -> None:
    vault = open_vault(store, _config(tmp_path))
    con = duckdb.connect()
    vault.register(con)
    vault.register(con)  # idempotent
    rows = con.execute(
        "SELECT segmint_seal('users.email', e) AS s, "
        "segmint_open('users.email', segmint_seal('users.email', e)) AS o, "
        "segmint_seal_json('users.traits', t) AS j "
        'FROM (VALUES (\'a@b.co\', \'{"name": "Ana", "plan": "pro"}\'), (NULL, NULL)) v(e, t)'
    ).fetchall()
    assert rows[0][0] == vault.seal("a@b.co", "users.email") and rows[0][1] == "a@b.co"
    assert '"plan": "pro"' in rows[0][2] and "Ana" not in rows[0][2]
    assert rows[1] == (None, None, None)


def test_the_audit_chain_detects_a_change_a_removal_and_a_reorder(store: Store) -> None:
    for i in range(5):
        append_audit(store, "ana", "personal.read", f"u{i}", why="support ticket", n=i)
    check = verify_audit(store)
    assert (check.ok, check.entries, check.head is not None) == (True, 5, True)
    store.execute("UPDATE audit_log SET why = 'nothing to see' WHERE seq = 3")
    bad = verify_audit(store)
    assert (bad.ok, bad.first_bad) == (False, 3) and "changed" in (bad.problem or "")
    store.execute("DELETE FROM audit_log WHERE seq = 3")
    bad = verify_audit(store)
    assert (bad.ok, bad.first_bad) == (False, 4) and "missing" in (bad.problem or "")


def test_the_audit_chain_verifies_on_postgresql(pg_url: str) -> None:
    with open_store(pg_url) as store:
        for i in range(3):
            append_audit(store, "ana", "export", "seg", why="crm", z=i, a={"b": [1, 2]})
        assert verify_audit(store).ok
