"""Custom per-user features: one aggregate SQL expression over one table.

Nothing a user writes is ever pasted into SQL: the expression goes through the allow-list
checker (:func:`segmint._expressions.check_expression`, re-exported here), and the SQL that
runs is generated back from the checked tree. Personal data is never available.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.tokens import TokenType

from segmint._expressions import ALLOWED_FUNCTIONS, check_expression
from segmint.errors import ConfigError
from segmint.store import TABLES

__all__ = [
    "ALLOWED_FUNCTIONS",
    "PERSONAL_COLUMNS",
    "SOURCE_COLUMNS",
    "TRAIT_COLUMNS",
    "CustomFeature",
    "check_expression",
]


# -- custom features -----------------------------------------------------------------------

CustomTable = Literal["orders", "events", "order_items", "users"]


# The columns each source offers to a custom feature. order_items is joined to its order
# and its item; each column may be qualified with the table it comes from.
def _offered(table: str) -> tuple[str, ...]:
    """The columns of a canonical table a feature may read: all but the personal ones."""
    return tuple(c.name for c in TABLES[table].columns if not c.pii)


SOURCE_COLUMNS: dict[str, dict[str, tuple[str, ...]]] = {
    "orders": {"orders": _offered("orders")},
    "events": {"events": _offered("events")},
    "order_items": {
        "order_items": _offered("order_items"),
        "items": ("category", "price"),
        "orders": ("user_id", "ts", "amount", "channel", "status"),
    },
    "users": {"users": _offered("users")},
}

# What to use instead of each personal column (the schema marks them: ``Column.pii``). A
# custom feature or a segment rule never reads them: their values would land in the
# features table and from there in profile exports and reports. ``traits`` (users) and
# ``properties`` (events) are free-form JSON that a CRM or a tracking call fills with
# whatever it has (first names, e-mail addresses, search text), so they are refused whole.
_INSTEAD = {
    "email": "the profile export shows has_email, campaigns read contacts themselves",
    "phone": "campaigns read contacts themselves",
    "birthday": "use age",
    "traits": (
        "free-form user traits may hold names or contacts, so they are never read whole; "
        "read one non-personal key with traits.zip_code (text, NULL where missing; e.g. "
        "max(traits.zip_code) in a custom feature of table users)"
    ),
    "properties": (
        "free-form event properties may hold e-mail addresses, names or search text; use "
        "event, channel or item_id"
    ),
}
PERSONAL_COLUMNS = {
    c.name: "personal data: not usable in features or segment rules"
    + (f"; {_INSTEAD[c.name]}" if c.name in _INSTEAD else "")
    for t in TABLES.values()
    for c in t.columns
    if c.pii
}
"""Personal columns of the store's tables (name -> why it is refused, and what to use
instead): custom features, segment rules and breakdowns may not read them."""

TRAIT_COLUMNS = ("traits",)
"""JSON columns whose keys features (of table ``users``), rules and breakdowns may read, one
non-personal key at a time: ``traits.zip_code`` (text; NULL where missing)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_RESERVED_NAMES = {"user_id", "run_id", *PERSONAL_COLUMNS}


def _check_name(name: str, builtin: Collection[str]) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"custom feature name {name!r} is not a safe identifier: use lower-case letters, "
            "digits and '_', starting with a letter (at most 63 characters)"
        )
    if name in builtin or name in _RESERVED_NAMES:
        raise ConfigError(
            f"custom feature name {name!r} clashes with a built-in feature or column; "
            "choose another name"
        )
    for dialect in ("duckdb", "postgres", "spark"):
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(name)
        if len(tokens) != 1 or tokens[0].token_type != TokenType.VAR:
            raise ConfigError(
                f"custom feature name {name!r} is an SQL keyword in {dialect}; choose another name"
            )


@dataclass(frozen=True)
class CustomFeature:
    """A user-defined feature: one aggregate SQL expression over one table, per user.

    The expression is checked when the feature is created (see :func:`check_expression`)
    and computed with the same as-of cut-off as the built-in features.

    Parameters
    ----------
    name : str
        Column name of the feature: lower-case letters, digits and ``_``; must not clash
        with a built-in feature.
    expr : str
        Aggregate SQL expression in DuckDB's dialect, e.g.
        ``"count(*) FILTER (WHERE channel = 'offline')"``.
    table : {'orders', 'events', 'order_items', 'users'}
        The rows aggregated per user. ``order_items`` also offers ``items.category``,
        ``items.price`` and ``orders.ts``/``amount``/``channel``/``status``. Personal data
        (email, phone, birthday, users' traits, events' properties) is never available.

    Raises
    ------
    segmint.errors.ConfigError
        When the name, the table or the expression is not allowed.

    Notes
    -----
    A user without any row in ``table`` gets NULL, except when the expression is a bare
    ``count(...)``, which gives 0.
    """

    name: str
    expr: str
    table: CustomTable = "orders"

    def __post_init__(self) -> None:
        from segmint.features._catalog import CATALOG

        _check_name(self.name, CATALOG)
        if self.table not in SOURCE_COLUMNS:
            raise ConfigError(
                f"feature {self.name!r}: unknown table {self.table!r}; "
                f"use one of {', '.join(SOURCE_COLUMNS)}"
            )
        self.checked()

    @property
    def context(self) -> str:
        """How messages refer to this feature."""
        return f"feature {self.name!r}"

    def checked(self) -> exp.Expression:
        """The checked sqlglot expression (qualifiers removed)."""
        sources = SOURCE_COLUMNS[self.table]
        columns = {c for cols in sources.values() for c in cols}
        return check_expression(
            self.expr,
            columns,
            aggregates=True,
            context=self.context,
            qualifiers=sources,
            denied_columns=PERSONAL_COLUMNS,
            json_columns=TRAIT_COLUMNS if self.table == "users" else (),
        )
