"""The unsubscribe signing keys (issue 15, point 10): never in the store, a key ring with
ids outside it, rotation that keeps the links already sent working, and the move of the
key earlier versions kept in the store."""

from __future__ import annotations

import base64
import hmac
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from segmint.campaigns import (
    InvalidTokenError,
    KeyRing,
    SmtpSink,
    key_ring,
    make_token,
    plan_campaign,
    retire_key,
    rotate_key,
    send_campaign,
    unsubscribe,
    verify_token,
)
from segmint.campaigns._keys import key_ring_path
from segmint.errors import ConfigError, NotFoundError
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, build_tiny_store, tiny_config

ENV = "SEGMINT_TEST_UNSUBSCRIBE_KEY"


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)


def test_key_file_is_private_and_outside_the_store(tmp_path: Path) -> None:
    ring = key_ring(tmp_path, secret_env=ENV)
    path = key_ring_path(tmp_path)
    assert ring.path == path and path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert doc["active"] == ring.active and [k["id"] for k in doc["keys"]] == [ring.active]
    assert key_ring(tmp_path, secret_env=ENV) == ring  # read again, not replaced


def test_token_names_its_key_and_verifies(tmp_path: Path) -> None:
    ring = key_ring(tmp_path, secret_env=ENV)
    token = make_token(ring, "u1", "email", "marketing")
    assert token.endswith("." + ring.active)
    assert verify_token(ring, token) == ("u1", "email", "marketing")


def test_the_whole_link_pasted_verifies_like_its_token(tmp_path: Path) -> None:
    # a user copies the link from the e-mail, not the token inside it
    ring = key_ring(tmp_path, secret_env=ENV)
    token = make_token(ring, "u1", "email", "marketing")
    for link in (
        f"http://localhost:8000/unsubscribe?token={token}",
        f"https://shop.example/segmint/u/{token}",
        f"https://shop.example/u/{token}/preferences",
        f" https://shop.example/u?lang=en&token={token}&utm=x ",
    ):
        assert verify_token(ring, link) == ("u1", "email", "marketing")
    with pytest.raises(InvalidTokenError, match="signature does not match"):
        verify_token(ring, f"https://shop.example/u?token=X{token[1:]}")


def test_a_token_of_an_old_key_still_verifies_after_rotation(tmp_path: Path) -> None:
    old = key_ring(tmp_path, secret_env=ENV)
    token = make_token(old, "u1")
    new = rotate_key(tmp_path, secret_env=ENV)
    assert new.active != old.active and set(new.keys) == {old.active, new.active}
    assert verify_token(new, token)[0] == "u1"
    assert make_token(new, "u1").endswith("." + new.active)
    # retired: the links it signed stop working
    retired = retire_key(tmp_path, old.active, secret_env=ENV)
    with pytest.raises(InvalidTokenError, match="not in the project's key ring"):
        verify_token(retired, token)


def test_forged_tokens_fail(tmp_path: Path) -> None:
    ring = key_ring(tmp_path, secret_env=ENV)
    made_up = KeyRing({"c0ffee00": b"a key the forger chose"}, active="c0ffee00")
    with pytest.raises(InvalidTokenError, match="names key 'c0ffee00', which is not in"):
        verify_token(ring, make_token(made_up, "u1"))
    # a real key id with the forger's key, and a real token re-labelled with another id
    same_id = KeyRing({ring.active: b"a key the forger chose"}, active=ring.active)
    with pytest.raises(InvalidTokenError, match="signature does not match"):
        verify_token(ring, make_token(same_id, "u1"))
    rotated = rotate_key(tmp_path, secret_env=ENV)
    body, tag, _ = make_token(rotated, "u1").split(".")
    with pytest.raises(InvalidTokenError, match="signature does not match"):
        verify_token(rotated, f"{body}.{tag}.{ring.active}")
    # a token of the old format (no key id) signed by nobody in the ring
    old_format = ".".join(make_token(made_up, "u1").split(".")[:2])
    with pytest.raises(InvalidTokenError, match="signature does not match"):
        verify_token(rotated, old_format)
    for bad in ("garbage", "a.b.c.d", "a.b.bad/id"):
        with pytest.raises(InvalidTokenError, match="malformed"):
            verify_token(ring, bad)


def test_active_key_cannot_be_retired_and_unknown_ids_are_named(tmp_path: Path) -> None:
    ring = key_ring(tmp_path, secret_env=ENV)
    with pytest.raises(ConfigError, match="is the active key: run `segmint campaign rotate-key`"):
        retire_key(tmp_path, ring.active, secret_env=ENV)
    with pytest.raises(NotFoundError, match=rf"no key 'nope'.*its keys: {ring.active}"):
        retire_key(tmp_path, "nope", secret_env=ENV)


def test_damaged_key_file_is_a_clear_error(tmp_path: Path) -> None:
    path = key_ring_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="key file .* is damaged.*restore it from a backup"):
        key_ring(tmp_path, secret_env=ENV)


def test_key_from_the_environment_and_its_rotation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(ENV, "the first secret")
    ring = key_ring(tmp_path, secret_env=ENV)
    assert ring.active.startswith("env-") and ring.env_id == ring.active
    assert not key_ring_path(tmp_path).exists()  # nothing written: the key is in the env
    token = make_token(ring, "u1")
    # rotation: keep the variable's key in the file, then change the variable
    kept = rotate_key(tmp_path, secret_env=ENV)
    assert kept.active == ring.active and key_ring_path(tmp_path).exists()
    monkeypatch.setenv(ENV, "the second secret")
    after = key_ring(tmp_path, secret_env=ENV)
    assert after.active != ring.active and ring.active in after.keys
    assert verify_token(after, token)[0] == "u1"
    assert make_token(after, "u1").endswith("." + after.active)


# -- the key earlier versions kept in the store ------------------------------------------


def _legacy_store(url: str) -> tuple[Store, str]:
    """A store as the previous version left it: its signing key in campaign_secrets."""
    store = build_tiny_store(url)
    legacy = "5e" * 32
    store.execute(
        "CREATE TABLE campaign_secrets (name VARCHAR PRIMARY KEY, value VARCHAR NOT NULL, "
        "created_at TIMESTAMPTZ NOT NULL)"
    )
    store.execute(
        "INSERT INTO campaign_secrets VALUES ('unsubscribe', "
        f"'{legacy}', CAST('2026-01-01 00:00:00+00' AS TIMESTAMPTZ))"
    )
    return store, legacy


def _legacy_token(key: str, user_id: str) -> str:
    """A token as the previous version made it (no key id)."""
    payload = f"{user_id}\x1femail\x1fmarketing".encode()
    tag = hmac.digest(key.encode(), payload, "sha256")[:16]

    def b64(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    return f"{b64(payload)}.{b64(tag)}"


def test_the_store_key_moves_into_the_ring_and_its_links_still_work(tmp_path: Path) -> None:
    store, legacy = _legacy_store(str(tmp_path / "old.duckdb"))
    token = _legacy_token(legacy, "u01")  # in an e-mail sent before the upgrade
    try:
        ring = key_ring(tmp_path, store, secret_env=ENV)
        assert set(ring.keys) == {"legacy", ring.active} and ring.active != "legacy"
        result = unsubscribe(store, token, keys=ring)
        assert result.user_id == "u01" and not result.already_unsubscribed
        # the store no longer holds it; new links are signed with the new key
        n = store.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'campaign_secrets'"
        )
        assert n == 0
        assert key_ring(tmp_path, store, secret_env=ENV) == ring  # moved once
        assert not make_token(ring, "u01").endswith(".legacy")
    finally:
        store.close()
    assert legacy.encode() not in (tmp_path / "old.duckdb").read_bytes()


def _secrets(root: Path) -> list[bytes]:
    doc = json.loads(key_ring_path(root).read_text())
    return [k["secret"].encode() for k in doc["keys"]]


def test_no_key_in_the_duckdb_file_after_plan_and_send(tmp_path: Path, smtp_sink: SmtpSink) -> None:
    path = tmp_path / "s.duckdb"
    store, legacy = _legacy_store(str(path))
    pb = dict(TINY_PLAYBOOK)
    pb["channels"] = {"email": dict(pb["channels"]["email"], port=smtp_sink.port)}
    config = tiny_config(pb, root=tmp_path)
    plan_campaign(store, config, "gold_once")
    report = send_campaign(store, config, "gold_once")
    assert report.sent == 4 and smtp_sink.n_received == 4
    store.close()
    data = path.read_bytes()
    keys = [*_secrets(tmp_path), legacy.encode()]
    assert len(keys) == 3
    for key in keys:
        assert key not in data and key.decode().upper().encode() not in data


@pytest.mark.postgres
def test_no_key_in_a_postgresql_dump_after_plan_and_send(
    pg_url: str, tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    store, legacy = _legacy_store(pg_url)
    try:
        token = _legacy_token(legacy, "u02")
        pb = dict(TINY_PLAYBOOK)
        pb["channels"] = {"email": dict(pb["channels"]["email"], port=smtp_sink.port)}
        config = tiny_config(pb, root=tmp_path)
        plan_campaign(store, config, "gold_once")
        assert send_campaign(store, config, "gold_once").sent == 4
        ring = key_ring(tmp_path, store, secret_env=ENV)
        assert unsubscribe(store, token, keys=ring).user_id == "u02"
        schema = str(store.scalar("SELECT current_schema()"))
        tables = store.query(
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'"
        )["table_name"].tolist()
        assert "campaign_secrets" not in tables and "deliveries" in tables
        rows = "\n".join(store.query(f"SELECT * FROM {t}").to_csv() for t in tables)
    finally:
        store.close()
    dump = subprocess.run(
        ["pg_dump", "--no-owner", "-n", schema, "-d", pg_url.split("?")[0]],
        capture_output=True,
        check=True,
        env={**os.environ, "PGOPTIONS": ""},
    ).stdout
    assert b"deliveries" in dump
    for key in [*_secrets(tmp_path), legacy.encode()]:
        assert key not in dump and key.decode() not in rows


# -- the command ----------------------------------------------------------------------


def test_rotate_key_command(tmp_path: Path) -> None:
    from segmint.cli import app

    runner = CliRunner()
    (tmp_path / "segmint.yaml").write_text(
        f"project: shop\nstore: s.duckdb\nplaybook:\n  secret_env: {ENV}\n"
    )
    first = runner.invoke(app, ["campaign", "rotate-key", "-p", str(tmp_path), "--json"])
    assert first.exit_code == 0, first.output
    doc = json.loads(first.stdout)
    assert len(doc["keys"]) == 2 and all("secret" not in k for k in doc["keys"])
    old = next(k["id"] for k in doc["keys"] if not k["active"])
    ring = key_ring(tmp_path, secret_env=ENV)
    assert ring.active == doc["active"] and old in ring.keys
    table = runner.invoke(app, ["campaign", "rotate-key", "-p", str(tmp_path)])
    assert table.exit_code == 0 and "signs new links" in table.stdout
    retired = runner.invoke(app, ["campaign", "rotate-key", "-p", str(tmp_path), "--retire", old])
    assert retired.exit_code == 0
    assert "links it signed no longer work" in retired.stderr.replace("\n", " ")
    assert old not in key_ring(tmp_path, secret_env=ENV).keys
    active = key_ring(tmp_path, secret_env=ENV).active
    refused = runner.invoke(
        app, ["campaign", "rotate-key", "-p", str(tmp_path), "--retire", active]
    )
    assert refused.exit_code == 2 and "Traceback" not in refused.output
    assert "is the active key" in refused.stderr
