"""Traits (users' JSON ``traits``) in custom features and rules: one non-personal key at a
time, as text, NULL where a user lacks it; the same on DuckDB and PostgreSQL (issue 17)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from segmint.config import RulesSegmentation
from segmint.errors import ConfigError
from segmint.features import CustomFeature, check_expression, features_as_of
from segmint.segments._rules import run_rules
from segmint.store import Store, open_store

AS_OF = datetime(2024, 7, 1, tzinfo=UTC)
USERS = """
INSERT INTO users (user_id, created_at, country, traits) VALUES
    ('u1', '2024-01-01 00:00:00+00', 'DE', '{"plan": "gold", "score": "7.5", "first_name": "Ann"}'),
    ('u2', '2024-01-01 00:00:00+00', 'FR', '{"plan": "basic", "score": 2}'),
    ('u3', '2024-01-01 00:00:00+00', 'FR', '{"other": 1}'),
    ('u4', '2024-01-01 00:00:00+00', NULL, NULL);
"""
CUSTOM = [
    CustomFeature("plan", "max(traits.plan)", "users"),
    CustomFeature("score", "max(TRY_CAST(traits ->> 'score' AS DOUBLE))", "users"),
    CustomFeature("plan2", "max(json_extract_string(traits, 'plan'))", "users"),
]


def _store(url: str) -> Store:
    store = open_store(url)
    store.execute(USERS)
    return store


def _check(store: Store) -> None:
    f = features_as_of(store, AS_OF, CUSTOM).set_index("user_id").sort_index()
    assert f.loc["u1", "plan"] == "gold" and f.loc["u2", "plan"] == "basic"
    assert pd.isna(f.loc["u3", "plan"]) and pd.isna(f.loc["u4", "plan"])  # missing: NULL
    assert f["plan2"].equals(f["plan"].rename("plan2"))
    assert f.loc["u1", "score"] == 7.5 and f.loc["u2", "score"] == 2.0
    assert pd.isna(f.loc["u3", "score"])
    rules = RulesSegmentation(
        type="rules",
        rules=[
            {"segment": "gold", "when": "plan = 'gold'"},
            {"segment": "scored", "when": "score > 1"},
        ],
        default="rest",
    )
    seg = run_rules(rules, f.reset_index(), name="by_plan").set_index("user_id")["segment"]
    assert seg.to_dict() == {"u1": "gold", "u2": "scored", "u3": "rest", "u4": "rest"}


def test_traits_in_custom_features_and_rules_on_duckdb(tmp_path: Path) -> None:
    store = _store(str(tmp_path / "t.duckdb"))
    try:
        _check(store)
    finally:
        store.close()


def test_traits_in_custom_features_and_rules_on_postgresql(pg_url: str) -> None:
    store = _store(pg_url)  # traits is JSONB there: read through CAST(traits AS JSON)
    try:
        _check(store)
    finally:
        store.close()


def test_the_shorthand_and_the_functions_are_the_same_typed_extraction() -> None:
    sqls = {
        CustomFeature("x", e, "users").checked().sql(dialect="duckdb")
        for e in (
            "max(traits.plan)",
            "max(traits ->> 'plan')",
            "max(json_extract_string(traits, 'plan'))",
            "max(json_extract_scalar(traits, '$.plan'))",
        )
    }
    assert sqls == {"MAX(CAST(traits AS JSON) ->> '$.plan')"}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("max(traits.first_name)", "trait 'first_name': personal data"),
        ("max(traits.eMail)", "trait 'eMail': personal data"),
        ("max(traits ->> 'phone_number')", "trait 'phone_number': personal data"),
        ("max(traits.home_address)", "personal data"),
        ("max(CAST(traits AS VARCHAR))", "never read whole"),
        ("max(traits ->> '$.a.b')", "one top-level key"),
        ("max(city ->> 'x')", "JSON keys may only be read from traits"),
    ],
)
def test_personal_or_whole_traits_are_refused(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CustomFeature("x", expr, "users")


def test_traits_are_only_offered_on_the_users_table() -> None:
    with pytest.raises(ConfigError, match="qualifier traits"):
        CustomFeature("x", "max(traits.plan)", "orders")


def test_rules_over_features_cannot_read_json() -> None:
    with pytest.raises(ConfigError, match="JSON keys may only be read"):
        check_expression(
            "json_extract_string(plan, 'x') = 'a'", {"plan"}, aggregates=False, context="r"
        )
