"""segmint.yaml: every error names the key, the file and the line; valid files round-trip."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from segmint.config import Config, CsvSource, load_config, parse_config
from segmint.errors import ConfigError

VALID = dedent(
    """\
    project: shop
    store: shop.duckdb
    timezone: Europe/Berlin
    currency: EUR
    validation:
      max_amount: 5000
      future_tolerance_hours: 2
    sources:
      people:
        type: csv
        path: data/users.csv
        table: users
        delimiter: ";"
        columns:
          user_id: id
          created_at: signup
          age: {expr: "2024 - born"}
      sales:
        type: jsonl
        path: data/orders.jsonl.gz
        table: orders
        columns: {order_id: oid, user_id: uid, ts: t, amount: amt, status: st}
        values:
          status: {paid: completed}
        timestamp_format: "%d/%m/%Y %H:%M"
        filter: "amt IS NOT NULL"
    cleaning:
      users:
        missing: {age: median, city: {constant: unknown}}
        duplicates: {key: [email], keep: last}
      orders:
        outliers: {amount: {method: iqr, factor: 3}}
    """
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segmint.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_loads_with_types(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID))
    people = config.sources["people"]
    assert isinstance(people, CsvSource) and people.delimiter == ";"
    assert people.columns["age"].expr == "2024 - born"  # type: ignore[union-attr]
    assert config.validation.max_amount == 5000.0
    assert config.root == tmp_path.resolve()
    assert config.store_url == str(tmp_path.resolve() / "shop.duckdb")
    assert config.cleaning_for("users").duplicates.keep == "last"  # type: ignore[union-attr]


def test_valid_config_round_trips(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, VALID))
    dumped = yaml.safe_dump(config.model_dump(mode="json", exclude={"root"}), sort_keys=False)
    (tmp_path / "again").mkdir()
    again = load_config(_write(tmp_path / "again", dumped))
    assert again.model_dump(exclude={"root"}) == config.model_dump(exclude={"root"})


def test_load_config_accepts_folder_or_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: x\n")
    assert load_config(tmp_path).project == "x"
    assert load_config(path).project == "x"


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config.model_dump(exclude={"root"}) == Config().model_dump(exclude={"root"})


def test_unknown_top_level_key_names_key_file_line_and_closest(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: shop\nstore: s.duckdb\ntimezon: UTC\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert f"{path}:3: unknown key 'timezon'" in msg
    assert "did you mean 'timezone'?" in msg


def test_unknown_nested_key_names_its_path_and_line(tmp_path: Path) -> None:
    text = VALID.replace('    delimiter: ";"\n', '    delimeter: ";"\n')
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    line = text.splitlines().index('    delimeter: ";"') + 1
    assert f"{path}:{line}: unknown key 'sources.people.delimeter'" in msg
    assert "did you mean 'delimiter'?" in msg


def test_wrong_type_names_the_key_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, "validation:\n  max_amount: lots\n")
    with pytest.raises(ConfigError, match=r"segmint\.yaml:2: validation\.max_amount: .*'lots'"):
        load_config(path)


def test_wrong_type_of_a_scalar(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: x\ntimezone: [UTC]\n")
    with pytest.raises(ConfigError, match=r"segmint\.yaml:2: timezone: Input should be a valid"):
        load_config(path)


def test_out_of_range_value_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "validation:\n  max_amount: -1\n")
    with pytest.raises(ConfigError, match=r"validation\.max_amount: Input should be greater"):
        load_config(path)


def test_missing_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file\. Create one with `segmint init"):
        load_config(tmp_path / "nowhere")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "project: x\nsources:\n  a: {type: csv\n  b: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "not valid YAML" in msg
    assert msg.startswith(f"{path}:")
    line = int(msg[len(str(path)) + 1 :].split(":", 1)[0])
    assert 3 <= line <= 5


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"))


def test_unknown_source_type_lists_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources:\n  a:\n    type: excel\n    path: x\n    table: orders\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert f"{path}:" in msg and "sources.a" in msg and "'excel'" in msg
    for known in ("csv", "parquet", "jsonl", "postgres", "query"):
        assert f"'{known}'" in msg


def test_unknown_table_names_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources:\n  a:\n    type: csv\n    path: x\n    table: ordrs\n")
    with pytest.raises(ConfigError, match=r"segmint\.yaml:5: sources\.a\.table: .*'ordrs'"):
        load_config(path)


def test_missing_required_key_names_it(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources:\n  a:\n    type: csv\n    table: orders\n")
    with pytest.raises(ConfigError, match=r"sources\.a\.path: Field required"):
        load_config(path)


def test_postgres_source_needs_relation_or_query(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "sources:\n  a:\n    type: postgres\n    dsn: postgresql://x/y\n    table: orders\n",
    )
    with pytest.raises(ConfigError, match="needs exactly one of `relation` or `query`"):
        load_config(path)


def test_store_env_var_unset_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEGMINT_TEST_STORE_URL", raising=False)
    config = load_config(_write(tmp_path, "store: $SEGMINT_TEST_STORE_URL\n"))
    with pytest.raises(ConfigError, match="environment variable SEGMINT_TEST_STORE_URL is not set"):
        _ = config.store_url


def test_store_env_var_set_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMINT_TEST_STORE_URL", "postgresql://u@h/db")
    config = load_config(_write(tmp_path, "store: $SEGMINT_TEST_STORE_URL\n"))
    assert config.store_url == "postgresql://u@h/db"


def test_parse_config_without_a_file(tmp_path: Path) -> None:
    config = parse_config("project: p\n", path=tmp_path / "segmint.yaml")
    assert config.project == "p" and config.root == tmp_path


RECOMMEND = """\
recommend:
  n: 5
  model: als
  event_weights: {product_view: 1, add_to_cart: 4, purchase: 6}
  half_life_days: 45
  segmentation: rfm
  repeat_purchase_categories: [grocery, pets]
  category_cap: 3
  price_bands:
    Champions: {min: 50}
    Hibernating: {max: 30}
  als: {factors: 16, iterations: 10}
"""


def test_recommend_section_loads_with_types(tmp_path: Path) -> None:
    rec = load_config(_write(tmp_path, RECOMMEND)).recommend
    assert rec.n == 5 and rec.model == "als"
    assert rec.event_weights == {"product_view": 1.0, "add_to_cart": 4.0, "purchase": 6.0}
    assert rec.price_bands["Champions"].min == 50.0
    assert rec.price_bands["Hibernating"].max == 30.0
    assert rec.als.factors == 16 and rec.als.regularization == 0.1  # unset keys keep defaults
    assert rec.in_stock_only and rec.exclude_purchased


def test_recommend_defaults_compare_six_models(tmp_path: Path) -> None:
    rec = load_config(_write(tmp_path, "project: p\n")).recommend
    assert rec.models == [
        "popularity",
        "segment_popularity",
        "item_knn",
        "als",
        "content",
        "hybrid",
    ]
    assert rec.event_weights == {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("recommend:\n  modles: [als]\n", r":2: unknown key 'recommend.modles' \(did you mean"),
        ("recommend:\n  models: [alss]\n", r":2: recommend\.models\.0: Input should be"),
        ("recommend:\n  price_bands:\n    VIP: {min: 9, max: 1}\n", r":3: .*above max"),
        ("recommend:\n  event_weights: {product_view: -1}\n", r"must be >= 0"),
        ("recommend:\n  category_cap: 0\n", r":2: recommend\.category_cap: Input should be"),
    ],
)
def test_recommend_section_errors_name_the_key_and_line(
    tmp_path: Path, text: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, text))


# -- hostile and careless files (issue 15): bounded, one clear error each ---------------

BOMB = "project: x\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else ', '.join(['x'] * 9)}]\n"
    for i in range(9)
)


def _bounded(fn, *, seconds: float = 2.0, mib: float = 50.0) -> None:  # noqa: ANN001
    import time
    import tracemalloc

    tracemalloc.start()
    started = time.perf_counter()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - started < seconds
    assert peak < mib * 2**20


def test_an_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path) -> None:
    def load() -> None:
        with pytest.raises(ConfigError, match=r"segmint.yaml:\d+: this block expands to more"):
            load_config(_write(tmp_path, BOMB))

    _bounded(load)


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="alias refers to the block that contains it"):
        load_config(_write(tmp_path, "project: &a [*a]\n"))


@pytest.mark.parametrize(
    "text",
    [
        "project: " + "[" * 5000 + "]" * 5000 + "\n",
        "project: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
        "project: x\nz:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 700)),
    ],
    ids=["flow-lists", "flow-maps", "block"],
)
def test_deep_nesting_is_refused_in_bounded_time(tmp_path: Path, text: str) -> None:
    def load() -> None:
        with pytest.raises(ConfigError, match="nested too deeply"):
            load_config(_write(tmp_path, text))

    _bounded(load)


def test_anchors_and_merge_keys_still_work(tmp_path: Path) -> None:
    text = dedent(
        """\
        project: shop
        sources:
          a: &csv
            type: csv
            path: a.csv
            table: users
            columns: {user_id: id}
          b:
            <<: *csv
            path: b.csv
        """
    )
    config = load_config(_write(tmp_path, text))
    assert config.sources["b"].path == "b.csv"
    assert config.sources["b"].columns == {"user_id": "id"}


def test_two_sources_with_the_same_name_are_an_error_with_both_lines(tmp_path: Path) -> None:
    text = dedent(
        """\
        project: shop
        sources:
          crm:
            type: csv
            path: a.csv
            table: users
          crm:
            type: csv
            path: b.csv
            table: users
        """
    )
    with pytest.raises(ConfigError, match=r"segmint.yaml:7: key 'crm' is given twice .*line 3"):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("block", "line", "match"),
    [
        (
            "columns:\n      user_id: id\n      emial: mail\n",
            7,
            "'emial' \\(did you mean 'email'\\?\\)",
        ),
        ("values:\n      gendr: {m: male}\n", 7, "'gendr' \\(did you mean 'gender'\\?\\)"),
    ],
    ids=["columns", "values"],
)
def test_a_typo_in_our_column_name_is_an_error_with_a_did_you_mean(
    tmp_path: Path, block: str, line: int, match: str
) -> None:
    text = "project: x\nsources:\n  crm:\n    type: csv\n    path: a.csv\n    table: users\n    "
    with pytest.raises(ConfigError, match=rf"segmint.yaml:{line}: .*{match}.*table users"):
        load_config(_write(tmp_path, text + block))


def test_a_typo_in_a_cleaning_column_is_an_error(tmp_path: Path) -> None:
    text = "project: x\ncleaning:\n  orders:\n    outliers: {amout: {method: iqr}}\n"
    with pytest.raises(ConfigError, match="cleaning.orders.outliers: 'amout' \\(did you mean"):
        load_config(_write(tmp_path, text))


def test_invalid_utf8_names_the_line_and_byte(tmp_path: Path) -> None:
    (tmp_path / "segmint.yaml").write_bytes(b"project: shop\ntimezone: Caf\xe9\n")
    with pytest.raises(ConfigError, match=r"segmint.yaml:2: not valid UTF-8 \(byte 0xe9"):
        load_config(tmp_path)


def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    (tmp_path / "segmint.yaml").write_text("project: x\n" + "# pad\n" * 300_000)
    with pytest.raises(ConfigError, match="a configuration is at most"):
        load_config(tmp_path)


def test_a_folder_named_segmint_yaml_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "segmint.yaml").mkdir()
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(tmp_path)


CSV_HEAD = "project: x\nsources:\n  shop:\n    type: csv\n    path: a.csv\n    table: orders\n"


@pytest.mark.parametrize(
    ("block", "match"),
    [
        (
            "    encoding: latn-1\n",
            r"segmint.yaml:7: sources\.shop\.encoding: .*encoding 'latn-1' is not an encoding "
            r"Python knows; did you mean 'latin-1'\?",
        ),
        ("    encoding: utf8x\n", r"encoding 'utf8x' is not an encoding .*did you mean 'utf8'\?"),
        ("    encoding: base64\n", r"encoding 'base64' is not a text encoding"),
        (
            "    decimal: ','\n    thousands: ','\n",
            r"thousands ',' is also the decimal mark: they must differ",
        ),
        ("    decimal: ','\n", r"decimal ',' is also the delimiter"),
        ("    delimiter: ';'\n    thousands: ';'\n", r"thousands ';' is also the delimiter"),
        ("    thousands: '5'\n", r"thousands '5': it must be one character other than a digit"),
        ("    decimal: ';'\n", r"sources\.shop\.decimal: Input should be '\.' or ','"),
        (
            "    formats: {ts: 'dd.mmm.yyyy'}\n",
            r"formats\.ts: 'm' in 'dd\.mmm\.yyyy' is not a part of a date",
        ),
        ("    formats: {ts: '%d.%m.%Q'}\n", r"formats\.ts: '%d\.%m\.%Q' is not a strptime format"),
        ("    formats: {amount: '%d.%m.%Y'}\n", r"'amount' is not a timestamp or date column"),
        ("    formats: {tss: '%d.%m.%Y'}\n", r"'tss' \(did you mean 'ts'\?\)"),
        (
            "    timestamp_format: 'hh:mm'\n    timezone: Europe/Berln\n",
            r"did you mean 'Europe/Berlin'",
        ),
    ],
    ids=[
        "unknown_encoding",
        "unknown_encoding_2",
        "not_a_text_encoding",
        "thousands_is_decimal",
        "decimal_is_delimiter",
        "thousands_is_delimiter",
        "thousands_digit",
        "decimal_not_a_mark",
        "pattern_bad_token",
        "strptime_bad_specifier",
        "format_on_a_number",
        "format_on_an_unknown_column",
        "source_timezone_typo",
    ],
)
def test_csv_options_are_checked_when_the_config_loads(
    tmp_path: Path, block: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, CSV_HEAD + block))


def test_csv_options_load_and_patterns_become_strptime(tmp_path: Path) -> None:
    block = (
        "    delimiter: ';'\n    decimal: ','\n    thousands: '.'\n    encoding: cp1252\n"
        "    formats: {ts: 'dd/mm/yyyy hh:mm'}\n    timestamp_format: 'yyyy-mm-ddThh:mm:ss'\n"
    )
    source = load_config(_write(tmp_path, CSV_HEAD + block)).sources["shop"]
    assert isinstance(source, CsvSource)
    assert (source.decimal, source.thousands, source.encoding) == (",", ".", "cp1252")
    assert source.formats == {"ts": "%d/%m/%Y %H:%M"}
    assert source.timestamp_format == "%Y-%m-%dT%H:%M:%S"


@pytest.mark.parametrize(
    ("pattern", "strptime"),
    [
        ("dd.mm.yyyy", "%d.%m.%Y"),
        ("dd/mm/yy", "%d/%m/%y"),
        ("DD.MM.YYYY HH:MM", "%d.%m.%Y %H:%M"),  # MM after HH: minutes (as in Excel)
        ("dd.MM.yyyy HH:mm:ss", "%d.%m.%Y %H:%M:%S"),
        ("mm/dd/yyyy", "%m/%d/%Y"),
        ("%d.%m.%Y", "%d.%m.%Y"),
    ],
)
def test_date_patterns(pattern: str, strptime: str) -> None:
    from segmint.config import strptime_format

    assert strptime_format(pattern) == strptime


def test_engine_spark_and_its_section_load_and_bad_values_name_the_line(tmp_path: Path) -> None:
    text = (
        "project: x\nengine: spark\nspark:\n  master: local[4]\n"
        "  conf: {spark.driver.memory: 8g, spark.sql.adaptive.enabled: true, "
        "spark.sql.shuffle.partitions: 64}\n"
        "  tables:\n    orders: {format: parquet, path: /lake/orders/}\n"
    )
    config = load_config(_write(tmp_path, text))
    assert config.engine == "spark" and config.spark.master == "local[4]"
    assert config.spark.conf == {  # YAML's booleans and numbers as Spark's text
        "spark.driver.memory": "8g",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.shuffle.partitions": "64",
    }
    assert config.spark.tables["orders"].path == "/lake/orders/"
    for master in ("local", "local[*]", "local[2,3]", "spark://h1:7077,h2:7077", "yarn"):
        assert (
            load_config(_write(tmp_path, f"spark: {{master: '{master}'}}\n")).spark.master == master
        )
    with pytest.raises(
        ConfigError, match=r"yaml:4: spark\.master: .*'lokal\[2\]' is not a Spark master"
    ):
        load_config(_write(tmp_path, "project: x\nengine: spark\nspark:\n  master: lokal[2]\n"))
    with pytest.raises(ConfigError, match=r"spark\.tables\.orders: .*a csv table needs `path`"):
        load_config(_write(tmp_path, "spark: {tables: {orders: {format: csv}}}\n"))
    with pytest.raises(ConfigError, match=r"spark\.tables\.orders: .*needs `url` and `dbtable`"):
        load_config(_write(tmp_path, "spark: {tables: {orders: {format: jdbc, url: 'jdbc:x'}}}\n"))
    assert load_config(_write(tmp_path, "engine: duckdb\n")).engine == "duckdb"


def test_project_timezone_typo_is_an_error_with_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"yaml:1: timezone: .*did you mean 'Asia/Shanghai'"):
        load_config(_write(tmp_path, "timezone: Asia/Shangai\n"))


@pytest.mark.parametrize(
    ("block", "match"),
    [
        ("type: dbscan, features: [recency], k: 4", r"k: dbscan finds the number of clusters"),
        ("type: hdbscan, features: [recency], k_max: 6", r"k_max: hdbscan finds the number"),
        ("type: kmeans, features: [recency], n_components: 2", r"n_components is used only with"),
    ],
)
def test_clustering_keys_the_method_would_ignore_are_refused(
    tmp_path: Path, block: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, f"segmentations:\n  s: {{{block}}}\n"))
