"""User-defined features and the expression allow-list."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from segmint.errors import ConfigError
from segmint.features import CustomFeature, check_expression, compute_features, load_features
from segmint.store import Store

AS_OF = datetime(2024, 7, 1, tzinfo=UTC)


def _values(store: Store, *custom: CustomFeature) -> pd.DataFrame:
    return compute_features(store, as_of=AS_OF, custom=custom).data.set_index("user_id")


# -- allowed --------------------------------------------------------------------------------


def test_order_feature_with_filter(tiny_store: Store) -> None:
    frame = _values(
        tiny_store, CustomFeature("offline_orders", "count(*) FILTER (WHERE channel = 'offline')")
    )
    assert frame["offline_orders"].tolist() == [1, 0, 0, 0]  # u3 and u5: 0, not NULL
    assert str(frame["offline_orders"].dtype) == "Int64"


def test_ratio_with_case_and_nullif(tiny_store: Store) -> None:
    expr = "sum(CASE WHEN status = 'completed' THEN amount ELSE 0 END) / nullif(count(*), 0)"
    frame = _values(tiny_store, CustomFeature("spend_per_order", expr))
    assert frame.loc["u1", "spend_per_order"] == pytest.approx(220 / 5)
    assert frame.loc["u2", "spend_per_order"] == pytest.approx(25 / 2)
    assert pd.isna(frame.loc["u3", "spend_per_order"])


def test_order_items_see_item_and_order_columns_qualified_or_not(tiny_store: Store) -> None:
    frame = _values(
        tiny_store,
        CustomFeature(
            "books_units",
            "sum(quantity) FILTER (WHERE items.category = 'books' AND orders.status = 'completed')",
            table="order_items",
        ),
        CustomFeature("distinct_items", "count(DISTINCT order_items.item_id)", table="order_items"),
    )
    assert frame.loc["u1", "books_units"] == 2  # o1 only: o4 refunded, o5 after as-of
    assert frame.loc["u2", "books_units"] == 1
    assert frame.loc["u1", "distinct_items"] == 3  # o5 (after as-of) is not counted


def test_event_and_user_features(tiny_store: Store) -> None:
    frame = _values(
        tiny_store,
        CustomFeature("views", "count_if(event IN ('page_view', 'product_view'))", table="events"),
        CustomFeature(
            "days_first_to_last_event", "date_diff('day', min(ts), max(ts))", table="events"
        ),
        CustomFeature("is_german", "max(CASE WHEN country = 'DE' THEN 1 ELSE 0 END)", "users"),
    )
    assert frame.loc["u1", "views"] == 2  # e7 is at the as-of instant
    assert frame.loc["u1", "days_first_to_last_event"] == 121  # 03-01 -> 06-30
    assert frame["is_german"].tolist() == [1, 0, 0, 0]


def test_text_feature_keeps_its_type(tiny_store: Store) -> None:
    frame = _values(tiny_store, CustomFeature("top_currency", "max(upper(currency))"))
    assert frame.loc["u1", "top_currency"] == "EUR"


def test_new_custom_column_is_added_to_the_features_table(tiny_store: Store) -> None:
    compute_features(tiny_store, as_of=AS_OF, run_id="f-1")
    run = compute_features(
        tiny_store, as_of=AS_OF, run_id="f-2", custom=[CustomFeature("max_amount", "max(amount)")]
    )
    assert run.features[-1] == "max_amount"
    assert "max_amount" not in load_features(tiny_store, "f-1").columns
    values = load_features(tiny_store, "f-2")["max_amount"]
    assert values.iloc[:2].tolist() == [100.0, 25.0]
    assert values.iloc[2:].isna().all()


def test_check_expression_for_segment_rules() -> None:
    tree = check_expression(
        "recency_days <= 30 AND (frequency >= 3 OR favourite_category IN ('books', 'toys'))",
        {"recency_days", "frequency", "favourite_category"},
        aggregates=False,
        context="rule 1",
    )
    assert tree.sql(dialect="duckdb").startswith("recency_days <= 30 AND")


def test_check_expression_regenerates_sql_from_the_tree() -> None:
    tree = check_expression(
        '"Orders".Amount > 10',
        {"amount"},
        aggregates=False,
        context="x",
        qualifiers={"orders": {"amount"}},
    )
    assert tree.sql(dialect="duckdb") == "amount > 10"


# -- refused --------------------------------------------------------------------------------

INJECTIONS = [
    ("1); DROP TABLE users; --", "';'"),
    ("(SELECT max(amount) FROM orders)", "subquer"),
    ("read_csv('/etc/passwd')", "function read_csv is not allowed in feature 'x'"),
    ("read_parquet('s3://bucket/x')", "function read_parquet is not allowed"),
    ("count(*) + glob('*')", "function glob is not allowed"),
    ("amount /*x*/ ; DELETE FROM orders", "comment"),
    ("sum(amount) -- trailing", "comment"),
    ("max(getenv('HOME'))", "function getenv is not allowed"),
    ("max(current_setting('x'))", "function current_setting is not allowed"),
    ("max(pg_sleep(5))", "function pg_sleep is not allowed"),
    ('"users".email || (select 1)', "subquer"),
    ("sum(amount) OVER ()", "window function"),
    ("sum(amount) FILTER (WHERE ts > (SELECT max(ts) FROM events))", "subquer"),
    ("count(*) FILTER (WHERE order_id IN (SELECT order_id FROM orders))", "subquer"),
    ("DROP TABLE users", "DROP"),
    ("DELETE FROM orders", "DELETE"),
    ("max(amount); SELECT 1", "';'"),
    ("max(query('SELECT 1'))", "function query is not allowed"),
    ("max(secret_amount)", "unknown column secret_amount"),
    ("max(users.amount)", "qualifier users"),
    ("max(amount) + now()", "function now is not allowed"),
    ("max(ts) - current_date", "function current_date is not allowed"),
    ("sum(max(amount))", "aggregate inside an aggregate"),
    ("amount", "outside an aggregate function"),
    ("count(orders.*)", "'\\*' outside count"),
    ("max(amount::JSON)", "cast to JSON"),
    ("", "empty expression"),
]


@pytest.mark.parametrize(("expr", "message"), INJECTIONS)
def test_refused_expressions(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CustomFeature("x", expr)


def test_personal_data_is_refused() -> None:
    with pytest.raises(ConfigError, match="column email \\(personal data"):
        CustomFeature("x", "count(DISTINCT email)", table="users")


def test_unknown_column_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean amount"):
        CustomFeature("x", "sum(amout)")


def test_unknown_function_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="function medain is not allowed \\(did you mean median"):
        CustomFeature("x", "medain(amount)")


def test_aggregates_are_refused_in_row_conditions() -> None:
    with pytest.raises(ConfigError, match="aggregate function sum.*in rule 2"):
        check_expression("sum(monetary) > 3", {"monetary"}, aggregates=False, context="rule 2")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("frequency", "clashes with a built-in"),
        ("user_id", "clashes"),
        ("Bad Name", "not a safe identifier"),
        ('x"; DROP TABLE users; --', "not a safe identifier"),
        ("select", "SQL keyword"),
    ],
)
def test_refused_names(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CustomFeature(name, "count(*)")


def test_unknown_table_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown table 'consents'"):
        CustomFeature("x", "count(*)", table="consents")  # type: ignore[arg-type]


def test_duplicate_names_are_refused(tiny_store: Store) -> None:
    with pytest.raises(ConfigError, match="defined twice"):
        compute_features(
            tiny_store,
            as_of=AS_OF,
            custom=[CustomFeature("a", "count(*)"), CustomFeature("a", "max(amount)")],
        )


def test_expression_that_does_not_type_is_refused_before_anything_runs(tiny_store: Store) -> None:
    feature = CustomFeature("x", "sum(status)")
    with pytest.raises(ConfigError, match="feature 'x' does not compile"):
        compute_features(tiny_store, as_of=AS_OF, custom=[feature])
    # nothing stored, no column added (every table exists from the store's open)
    assert tiny_store.scalar("SELECT count(*) FROM feature_runs") == 0
    assert "x" not in tiny_store.query("SELECT * FROM features LIMIT 0").columns


# -- personal data (issue 15) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "table", "column", "instead"),
    [
        ("max(CAST(traits AS VARCHAR))", "users", "traits", "never read whole"),
        ("count(DISTINCT phone)", "users", "phone", "campaigns read contacts"),
        ("max(birthday)", "users", "birthday", "use age"),
        ("max(CAST(properties AS VARCHAR))", "events", "properties", "use event, channel"),
        ("max(length(CAST(events.properties AS VARCHAR)))", "events", "properties", "use event"),
    ],
)
def test_personal_columns_are_refused_with_what_to_use_instead(
    expr: str, table: str, column: str, instead: str
) -> None:
    # issue 15: max(CAST(traits AS VARCHAR)) was accepted and first names reached the export
    with pytest.raises(ConfigError, match=rf"column {column} \(personal data.*{instead}"):
        CustomFeature("x", expr, table)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["email", "phone", "birthday", "traits", "properties"])
def test_a_custom_feature_cannot_take_the_name_of_a_personal_column(name: str) -> None:
    with pytest.raises(ConfigError, match="clashes"):
        CustomFeature(name, "count(*)")


# -- bounded, checked before anything runs (issue 15) --------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("max(" + "(" * 300 + "amount" + ")" * 300 + ")", "nested 301 deep.*at most 20"),
        ("max(" + "NOT " * 400 + "amount > 1)", "nested 401 deep"),
        ("max(" + "- " * 900 + "amount)", "nested 901 deep"),
        ("count_if(" + "NOT (" * 15 + "amount > 1" + ")" * 15 + ")", "nested 31 deep"),
        ("max(date_diff('secret', ts, ts))", "unit 'secret' of date_diff: use one of"),
        ("max(date_diff('dayz', ts, ts))", r"unit 'dayz' of date_diff \(did you mean 'day'\?\)"),
        ("max(date_trunc('fortnight', ts))", "unit 'fortnight' of date_trunc"),
        ("max(extract(secret FROM ts))", "unit 'secret' of extract"),
        ("max(date_diff(status, ts, ts))", "unit 'status' of date_diff"),
        ("max(date_diff('da' || 'y', ts, ts))", "unit of date_diff must be a quoted word"),
    ],
)
def test_deep_nesting_and_unknown_units_are_refused_at_check_time(expr: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CustomFeature("x", expr)


def test_the_deepest_allowed_expression_computes(tiny_store: Store) -> None:
    expr = "max(" + "(" * 19 + "amount" + ")" * 19 + ")"
    frame = _values(tiny_store, CustomFeature("deep", expr))
    assert frame.loc["u1", "deep"] == 100.0


@pytest.mark.parametrize(
    "unit", ["microsecond", "second", "minute", "hour", "day", "month", "year"]
)
def test_known_units_are_accepted(unit: str) -> None:
    CustomFeature("x", f"max(date_diff('{unit}', ts, ts))")
    CustomFeature("y", f"max(date_trunc('{unit}', ts))")
    CustomFeature("z", f"max(extract({unit} FROM ts))")


@pytest.mark.parametrize(
    "expr",
    [
        "max(date_diff('week', ts, ts))",  # Mondays crossed (DuckDB) vs whole weeks (PostgreSQL)
        "max(date_trunc('century', ts))",  # 2000 vs 2001
        "max(extract(dow FROM ts))",  # generated as DAYOFWEEK, unknown to PostgreSQL
    ],
)
def test_units_the_stores_disagree_on_are_refused(expr: str) -> None:
    with pytest.raises(ConfigError, match="unit '.*' of .*: use one of"):
        CustomFeature("x", expr)


# -- failures when rows are computed (issue 15) ---------------------------------------------


@pytest.mark.parametrize(
    ("expr", "engine"),
    [
        ("max(CAST(status AS INT))", "Could not convert string"),
        ("sum(CAST(amount AS SMALLINT) * 1000)", "Overflow"),
        ("sum(CAST(amount * 1e10 AS INT))", "out of range"),
    ],
)
def test_a_feature_failing_on_a_value_is_named_with_its_expression(
    tiny_store: Store, expr: str, engine: str
) -> None:
    features = [CustomFeature("fine", "max(amount)"), CustomFeature("broken", expr)]
    with pytest.raises(ConfigError, match=rf"feature 'broken' failed when computed: .*{engine}"):
        compute_features(tiny_store, as_of=AS_OF, custom=features)
    with pytest.raises(ConfigError, match=r"its expression is 'MAX|its expression is 'SUM"):
        compute_features(tiny_store, as_of=AS_OF, custom=features)
    stored = "SELECT count(*) FROM feature_runs"
    assert tiny_store.scalar(stored) == 0  # nothing stored, the transaction rolled back
    assert "fine" not in tiny_store.query("SELECT * FROM features LIMIT 0").columns


def test_features_as_of_names_the_failing_feature_too(tiny_store: Store) -> None:
    from segmint.features import features_as_of

    with pytest.raises(ConfigError, match="feature 'broken' failed when computed"):
        features_as_of(tiny_store, AS_OF, [CustomFeature("broken", "max(CAST(status AS INT))")])
