"""Sealing a batch at a time (segmint.store._siv) gives the bytes of cryptography's own
AES-SIV, and every batch is checked against it before anything is written."""

from __future__ import annotations

import os
import random

import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from segmint.errors import StoreError
from segmint.store import Vault, _siv


def _values(seed: int, n: int) -> list[str | None]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789@.+-_ éü中文😀"
    out: list[str | None] = []
    for _ in range(n):
        k = rng.choice([0, 1, 15, 16, 17, 31, 32, 33, 48, rng.randint(0, 120)])
        out.append(None if rng.random() < 0.05 else "".join(rng.choice(alphabet) for _ in range(k)))
    return out


@pytest.mark.parametrize("key_bytes", [32, 48, 64])
def test_the_batch_equals_the_reference_for_every_length(key_bytes: int) -> None:
    key = os.urandom(key_bytes)
    values = _values(key_bytes, 3000)
    got = _siv.siv_encrypt_many(key, b"users.email", pa.array(values, pa.string()))
    ref = AESSIV(key)
    for v, sealed in zip(values, got.to_pylist(), strict=True):
        if v is None:
            assert sealed is None
        else:
            assert sealed == ref.encrypt(v.encode(), [b"users.email"])


def test_a_wrong_batch_is_refused_before_anything_is_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = os.urandom(64)
    vault = Vault({"k1": key}, "k1", os.urandom(32))
    values = pa.array(["ana@example.com", "bo@example.com", None], pa.string())
    sealed = vault.seal_arrow(values, "users.email").to_pylist()
    assert AESSIV(key).decrypt(sealed[1], [b"users.email"]) == b"bo@example.com"
    good = _siv.siv_encrypt_many

    def flipped(key: bytes, field: bytes, vals: pa.Array) -> pa.Array:
        out = good(key, field, vals).to_pylist()
        out[1] = bytes([out[1][0] ^ 1]) + out[1][1:]
        return pa.array(out, pa.large_binary())

    monkeypatch.setattr(_siv, "siv_encrypt_many", flipped)
    with pytest.raises(StoreError, match="did not open with the reference AES-SIV"):
        vault.seal_arrow(values, "users.email")
