"""Typed configuration: ``segmint.yaml`` loaded into pydantic models.

An unknown key, a wrong type or a missing file raises :class:`~segmint.errors.ConfigError`
naming the key, the file and the line.
"""

from __future__ import annotations

import functools
import re
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from segmint._playbook import CAMPAIGN_MODELS, CAMPAIGN_TAGS, Playbook
from segmint.errors import ConfigError
from segmint.store import TABLES

__all__ = [
    "SparkSettings",
    "SparkTable",
    "CleaningRules",
    "ClusterSegmentation",
    "Config",
    "ConsentVocabulary",
    "CustomFeatureConfig",
    "FeaturesConfig",
    "LifecycleSegmentation",
    "RfmSegmentation",
    "RecommendConfig",
    "RulesSegmentation",
    "Segmentation",
    "SupervisedTarget",
    "TreeSegmentation",
    "ValueTiersSegmentation",
    "CsvSource",
    "JsonlSource",
    "ParquetSource",
    "PostgresSource",
    "PredictSettings",
    "PropensitySegmentation",
    "QuerySource",
    "Source",
    "ValidationSettings",
    "load_config",
]

CONFIG_FILE = "segmint.yaml"
CANONICAL_TABLES = ("users", "items", "orders", "order_items", "events", "consents")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_columns(table: str, names: Any, where: str) -> None:
    """Raise (a ValueError pydantic reports with the key's line) when ``names`` holds a
    name that is not a column of the canonical ``table``: a typo (``emial``) would
    otherwise be ignored and leave the column empty."""
    import difflib

    known = TABLES[table].source_columns
    derived = [n for n in names if n in TABLES[table].column_names and n not in known]
    if derived:
        raise ValueError(
            f"{where}: {', '.join(map(repr, derived))} of table {table} "
            f"{'is' if len(derived) == 1 else 'are'} computed by the loader (a blind index or "
            "a value derived from another column) and cannot be mapped from a source: remove "
            f"{'it' if len(derived) == 1 else 'them'} from the mapping"
        )
    unknown = [n for n in names if n not in known]
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        problems.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"{where}: {', '.join(problems)} {'is not a column' if len(unknown) == 1 else 'are not columns'}"
        f" of table {table} (its columns: {', '.join(known)}); the keys are our column "
        "names, the values your file's"
    )


_PATTERN = {"yyyy": "%Y", "yy": "%y", "mm": "%m", "dd": "%d", "hh": "%H", "ss": "%S", "t": "T"}


def strptime_format(fmt: str, *, where: str = "") -> str:
    """The strptime format (DuckDB's, as ``strptime``) of a date or timestamp format.

    A format holding ``%`` is strptime already (``%d.%m.%Y %H:%M``). Otherwise it is a
    pattern: ``yyyy`` (year), ``yy`` (two-digit year), ``mm`` (month), ``dd`` (day),
    ``hh`` (hour, 00-23), ``mm`` (minutes when right after ``hh`` or right before
    ``ss``, as in Excel), ``ss`` (seconds), in any case; other characters stand for
    themselves (``dd.mm.yyyy``, ``dd/mm/yyyy hh:mm``, ``yyyy-mm-ddThh:mm:ss``).
    Raises a ValueError (naming ``where``, if given) for anything else.
    """
    import re

    at = f"{where}: " if where else ""

    if "%" not in fmt:
        parts = re.split(r"(?i)(yyyy|yy|mm|dd|hh|ss|t|[a-z]+)", fmt)
        out = []
        for i, part in enumerate(parts):
            if i % 2 == 0:
                out.append(part)
                continue
            token = part.lower()
            if token not in _PATTERN:
                raise ValueError(
                    f"{at}{part!r} in {fmt!r} is not a part of a date: write the format "
                    "with dd, mm, yyyy (or yy), hh, mm, ss (e.g. 'dd.mm.yyyy hh:mm') or as "
                    "strptime (e.g. '%d.%m.%Y %H:%M')"
                )
            minutes = token == "mm" and (
                (i >= 2 and parts[i - 2].lower() == "hh")
                or (i + 2 < len(parts) and parts[i + 2].lower() == "ss")
            )
            out.append("%M" if minutes else _PATTERN[token])
        fmt = "".join(out)
    if not re.search(r"%[^%]", fmt.replace("%%", "")):
        raise ValueError(f"{at}{fmt!r} holds no part of a date (such as %d or dd)")
    problem = _engine_refuses("SELECT try_strptime('', ?)", fmt)
    if problem:
        reason = problem.removeprefix("Invalid Input Error: ")
        raise ValueError(f"{at}{fmt!r} is not a strptime format: {reason}")
    return fmt


@functools.lru_cache(maxsize=256)
def _engine_refuses(sql: str, value: str) -> str | None:
    """The first line of DuckDB's error running ``sql`` with ``value`` bound, or None:
    a setting (a time zone, a format) is checked by the engine that will use it."""
    import duckdb

    with _CHECKER_LOCK:
        try:
            _checker().execute(sql, [value])
        except duckdb.Error as exc:
            return str(exc).splitlines()[0]
    return None


_CHECKER_LOCK = threading.Lock()


@functools.cache
def _checker() -> Any:
    """One in-memory DuckDB connection for checking settings (opening one takes ~30 ms)."""
    import duckdb

    return duckdb.connect()


def check_timezone(value: str) -> str:
    """``value`` if the engine knows it as a time zone (``Europe/Berlin``, ``UTC``), else
    a ValueError with the closest known names (a typo would otherwise fail every load)."""
    import difflib

    if _engine_refuses("SELECT timezone(?, TIMESTAMP '2000-01-01')", value) is None:
        return value
    with _CHECKER_LOCK:
        rows = _checker().execute("SELECT name FROM pg_timezone_names()").fetchall()
    names = [str(r[0]) for r in rows]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"timezone {value!r} is not a time zone{hint} (a name of the tz database, such as "
        "UTC, Europe/Berlin or Asia/Shanghai)"
    )


class ColumnExpr(_Strict):
    """A computed column: a DuckDB SQL expression over the source's columns."""

    expr: str


ColumnRef = str | ColumnExpr


class _SourceBase(_Strict):
    table: Literal["users", "items", "orders", "order_items", "events", "consents"]
    columns: dict[str, ColumnRef] = Field(
        default_factory=dict,
        description="our column name -> the source's column name (or {expr: SQL})",
    )
    values: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per our column, a map from the source's values to ours (e.g. status)",
    )
    timezone: str | None = Field(
        default=None, description="timezone of naive timestamps; default: the project's"
    )
    timestamp_format: str | None = Field(
        default=None,
        description="format of every timestamp column without one under "
        "`formats:`, e.g. '%d/%m/%Y %H:%M' or 'dd/mm/yyyy hh:mm'",
    )
    formats: dict[str, str] = Field(
        default_factory=dict,
        description="per our timestamp or date column, the format of its values: strptime "
        "('%d.%m.%Y') or a pattern ('dd.mm.yyyy'); a value not matching it is quarantined",
    )
    filter: str | None = Field(
        default=None,
        description="DuckDB SQL condition over source columns; rows failing it are "
        "quarantined with reason 'filtered out by source filter'",
    )

    @field_validator("columns", "values")
    @classmethod
    def _our_columns(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        table = info.data.get("table")
        if table is not None:
            _known_columns(table, value, info.field_name or "columns")
        return value

    @field_validator("timezone")
    @classmethod
    def _source_timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)

    @field_validator("timestamp_format")
    @classmethod
    def _timestamp_format(cls, value: str | None) -> str | None:
        return None if value is None else strptime_format(value)

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        table = info.data.get("table")
        if table is not None:
            _known_columns(table, value, "formats")
            dated = [c.name for c in TABLES[table].columns if c.type in ("TIMESTAMPTZ", "DATE")]
            other = [name for name in value if name not in dated]
            if other:
                raise ValueError(
                    f"formats: {', '.join(map(repr, other))} "
                    f"{'is not a' if len(other) == 1 else 'are not'} timestamp or date "
                    f"column{'s' if len(other) > 1 else ''} of table {table} (those are: "
                    f"{', '.join(dated)})"
                )
        return {name: strptime_format(fmt, where=f"formats.{name}") for name, fmt in value.items()}


class CsvSource(_SourceBase):
    type: Literal["csv"]
    path: str
    delimiter: str = ","
    header: bool = Field(
        default=True,
        description="false: no header line; the columns are named as DuckDB names them, "
        "column0, column1, ... (zero-padded to one width from 10 columns on)",
    )
    encoding: str = Field(
        default="utf-8",
        description="any text encoding Python knows (latin-1, cp1252, gb18030, shift_jis, "
        "utf-16, ...); other than UTF-8, the file is copied once as UTF-8 before reading",
    )
    decimal: Literal[".", ","] = Field(
        default=".", description="the decimal mark of numbers: '.' or ',' (1234,56)"
    )
    thousands: str | None = Field(
        default=None,
        description="the thousands separator of numbers, e.g. '.' (1.234,56), ',', ' ' or "
        '"\'"; numbers must then group their digits by three',
    )

    @model_validator(mode="after")
    def _one_character_delimiter(self) -> CsvSource:
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise ValueError(
                f"delimiter {self.delimiter!r} cannot separate fields: it must be one "
                "character other than a quote or a line break, e.g. ',', ';', '|' or a tab "
                '(write it "\\t")'
            )
        return self

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        return check_encoding(value)

    @model_validator(mode="after")
    def _number_marks(self) -> CsvSource:
        if self.thousands is None:
            return self
        t = self.thousands
        if len(t) != 1 or t.isdigit() or t in '+-"\r\n':
            raise ValueError(
                f"thousands {t!r}: it must be one character other than a digit, a sign, a "
                "quote or a line break, e.g. '.', ',', ' ' or \"'\""
            )
        if t == self.decimal:
            raise ValueError(
                f"thousands {t!r} is also the decimal mark: they must differ (for 1.234,56 "
                "write decimal: ',' and thousands: '.')"
            )
        if t == self.delimiter:
            raise ValueError(
                f"thousands {t!r} is also the delimiter: a number would be split into "
                "two fields; use another delimiter (e.g. ';') or leave thousands out"
            )
        return self

    @model_validator(mode="after")
    def _decimal_not_delimiter(self) -> CsvSource:
        if self.decimal == self.delimiter:
            raise ValueError(
                f"decimal {self.decimal!r} is also the delimiter: a number would be split "
                "into two fields; files with decimal commas are usually separated by ';' "
                "(delimiter: ';')"
            )
        return self


# Text codecs Python knows that are not file encodings.
_NOT_FILE_ENCODINGS = frozenset(
    {"undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape"}
)


def check_encoding(value: str) -> str:
    """``value`` if Python knows it as a text encoding of files (latin-1, cp1252, gb18030,
    utf-16, ...), else a ValueError with the closest known name."""
    import codecs
    import difflib
    import encodings.aliases

    try:
        info = codecs.lookup(value)
    except LookupError:
        info = None
    if info is not None and info._is_text_encoding and info.name not in _NOT_FILE_ENCODINGS:
        return value
    names = {n.replace("_", "-") for n in encodings.aliases.aliases}
    names |= {n.replace("_", "-") for n in encodings.aliases.aliases.values()}
    wanted = value.lower().replace("_", "-")
    close = difflib.get_close_matches(wanted, sorted(names), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    what = "is not a text encoding" if info is not None else "is not an encoding Python knows"
    raise ValueError(
        f"encoding {value!r} {what}{hint} (e.g. utf-8, latin-1, cp1252, gb18030, shift_jis, utf-16)"
    )


class ParquetSource(_SourceBase):
    type: Literal["parquet"]
    path: str


class JsonlSource(_SourceBase):
    type: Literal["jsonl"]
    path: str


class PostgresSource(_SourceBase):
    type: Literal["postgres"]
    dsn: str = Field(description="postgresql://... or the name of an env var holding it ($NAME)")
    relation: str | None = Field(default=None, description="schema.table to read")
    query: str | None = Field(default=None, description="a SELECT to read instead of a table")

    @model_validator(mode="after")
    def _one_of(self) -> PostgresSource:
        if (self.relation is None) == (self.query is None):
            raise ValueError("a postgres source needs exactly one of `relation` or `query`")
        return self


class QuerySource(_SourceBase):
    """A DuckDB SQL query over files, for shaping an export (e.g. invoices from lines)."""

    type: Literal["query"]
    query: str = Field(description="DuckDB SQL; {here} is replaced by this file's folder")


Source = Annotated[
    CsvSource | ParquetSource | JsonlSource | PostgresSource | QuerySource,
    Field(discriminator="type"),
]


class ValidationSettings(_Strict):
    max_amount: float = Field(default=100_000.0, gt=0, description="larger amounts are absurd")
    max_quantity: int = Field(default=10_000, gt=0)
    future_tolerance_hours: float = Field(default=24.0, ge=0)
    min_date: str = Field(default="1990-01-01", description="earlier timestamps are rejected")


MissingStrategy = Literal["drop", "median", "mode"]


class ConstantFill(_Strict):
    constant: str | float | int | bool


class OutlierRule(_Strict):
    method: Literal["iqr", "percentile"] = "iqr"
    factor: float = Field(default=1.5, gt=0, description="IQR multiplier")
    lower: float = Field(default=0.01, ge=0, le=1, description="lower percentile")
    upper: float = Field(default=0.99, ge=0, le=1, description="upper percentile")
    action: Literal["cap", "report"] = "cap"


class DuplicateRule(_Strict):
    key: list[str] = Field(description="columns that identify a duplicate (e.g. [email])")
    keep: Literal["first", "last"] = "first"
    order_by: str | None = Field(default=None, description="column ordering first/last")


class CleaningRules(_Strict):
    missing: dict[str, MissingStrategy | ConstantFill] = Field(default_factory=dict)
    outliers: dict[str, OutlierRule] = Field(default_factory=dict)
    duplicates: DuplicateRule | None = None


class CustomFeatureConfig(_Strict):
    """A user-defined feature: an aggregate SQL expression over one table, per user."""

    expr: str
    table: Literal["orders", "events", "order_items", "users"] = "orders"


class FeaturesConfig(_Strict):
    as_of: str = Field(
        default="latest",
        description="'latest' (the day after the newest order/event), 'today', or YYYY-MM-DD",
    )
    custom: dict[str, CustomFeatureConfig] = Field(default_factory=dict)


class RfmSegmentation(_Strict):
    """RFM quintile scores and the standard named segment map (see docs/segments.md)."""

    type: Literal["rfm"]


class LifecycleSegmentation(_Strict):
    """new / active / silent / churned from tenure and days since last activity."""

    type: Literal["lifecycle"]
    new_days: int = Field(default=30, gt=0, description="signed up at most this many days ago")
    active_days: int = Field(default=90, gt=0, description="active within this many days")
    churned_days: int = Field(default=365, gt=0, description="inactive at least this long")


class ValueTiersSegmentation(_Strict):
    """high-value / potential / general by quantiles of one feature among buyers."""

    type: Literal["value_tiers"]
    feature: str = "monetary"
    high: float = Field(default=0.8, gt=0, lt=1, description="quantile for high-value")
    potential: float = Field(default=0.5, gt=0, lt=1, description="quantile for potential")


class RuleSpec(_Strict):
    segment: str
    when: str = Field(description="SQL condition over feature columns")


class RulesSegmentation(_Strict):
    """An ordered list of (segment, condition); the first match wins, else the default."""

    type: Literal["rules"]
    rules: list[RuleSpec]
    default: str = "Other"


class ClusterSegmentation(_Strict):
    """Clustering on chosen features."""

    type: Literal["kmeans", "ward", "dbscan", "hdbscan", "gmm"]
    features: list[str]
    k: int | Literal["auto"] = "auto"
    k_min: int = Field(default=2, ge=2)
    k_max: int = Field(default=10, ge=2)
    scaling: Literal["standard", "robust"] = "standard"
    log1p: list[str] | Literal["auto"] = "auto"
    reduce: Literal["pca", "factor"] | None = None
    n_components: int | None = None
    sample_size: int = Field(default=10_000, gt=100, description="rows for silhouette etc.")
    random_state: int = 0

    @model_validator(mode="after")
    def _no_ignored_keys(self) -> ClusterSegmentation:
        """Refuse a key this method would ignore (a setting that seems to work must work)."""
        given = self.model_fields_set
        if self.type in ("dbscan", "hdbscan"):
            unused = [k for k in ("k", "k_min", "k_max") if k in given]
            if unused:
                raise ValueError(
                    f"{', '.join(unused)}: {self.type} finds the number of clusters itself "
                    "from the density of the data; remove the key, or use kmeans, ward or gmm "
                    "to choose k"
                )
        if "n_components" in given and self.reduce is None:
            raise ValueError(
                "n_components is used only with reduce: pca or reduce: factor; add one, or "
                "remove n_components"
            )
        return self


class SupervisedTarget(_Strict):
    """What a supervised segmentation splits users on: exactly one of ``column``,
    ``campaign`` or ``converted_within_days``."""

    column: str | None = Field(default=None, description="a feature column (bool or number)")
    above: float | None = Field(
        default=None, description="a numeric column counts as 1 when it is above this value"
    )
    campaign: str | None = Field(
        default=None, description="converted after exposure, among the campaign's treated users"
    )
    window_days: int = Field(default=30, gt=0, description="the campaign's response window")
    converted_within_days: int | None = Field(
        default=None, gt=0, description="a completed order within this many days after as-of"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SupervisedTarget:
        given = self.model_fields_set
        kinds = [k for k in ("column", "campaign", "converted_within_days") if k in given]
        if len(kinds) != 1:
            raise ValueError(
                "give exactly one of column, campaign or converted_within_days "
                f"(got {', '.join(kinds) or 'none'}), e.g. `target: {{column: is_subscriber}}`"
            )
        if "above" in given and self.column is None:
            raise ValueError("above is used only with column; remove it")
        if "window_days" in given and self.campaign is None:
            raise ValueError(
                "window_days is used only with campaign; for conversion after the as-of date "
                "write converted_within_days: N"
            )
        return self


class _SupervisedBase(_Strict):
    target: SupervisedTarget
    features: list[str] | None = Field(
        default=None, description="default: every numeric feature and categorical user column"
    )
    holdout: float = Field(default=0.3, gt=0, lt=1, description="share held out for the AUC")
    max_levels: int = Field(
        default=20, ge=1, description="categorical levels one-hot encoded (rest: other)"
    )
    seed: int = 0


class TreeSegmentation(_SupervisedBase):
    """A decision tree on a target: each leaf is a segment with a readable rule and lift."""

    type: Literal["tree"]
    max_depth: int = Field(default=3, ge=1, le=8)
    min_leaf: float = Field(
        default=0.05, gt=0, description="smallest leaf: a share of users (< 1) or a count"
    )

    @field_validator("min_leaf")
    @classmethod
    def _share_or_count(cls, v: float) -> float:
        if v >= 1 and not float(v).is_integer():
            raise ValueError("min_leaf is a share below 1 (0.05) or a whole count of users (200)")
        return v


class PropensitySegmentation(_SupervisedBase):
    """Deciles of a forest's or boosting model's predicted probability of the target."""

    type: Literal["propensity"]
    model: Literal["forest", "boosting"] = "forest"
    n_groups: int = Field(default=10, ge=2, le=100, description="quantile groups (10: deciles)")


Segmentation = Annotated[
    RfmSegmentation
    | LifecycleSegmentation
    | ValueTiersSegmentation
    | RulesSegmentation
    | ClusterSegmentation
    | TreeSegmentation
    | PropensitySegmentation,
    Field(discriminator="type"),
]


ModelName = Literal[
    "popularity", "segment_popularity", "item_knn", "als", "bpr", "content", "hybrid"
]

HybridComponent = Literal["item_knn", "als", "bpr", "content"]


def _default_models() -> list[ModelName]:
    return ["popularity", "segment_popularity", "item_knn", "als", "content", "hybrid"]


def _default_components() -> list[HybridComponent]:
    return ["item_knn", "als", "content"]


class PriceBand(_Strict):
    """Allowed price range of recommended items for one segment (either end optional)."""

    min: float | None = Field(default=None, ge=0)
    max: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> PriceBand:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self


class ALSSettings(_Strict):
    """Alternating least squares (``implicit``) on the interaction matrix."""

    factors: int = Field(default=32, gt=0)
    iterations: int = Field(default=15, gt=0)
    regularization: float = Field(default=0.1, ge=0)
    alpha: float = Field(default=1.0, gt=0, description="confidence = alpha * strength")
    weighting: Literal["none", "log", "bm25"] = "log"


class ItemKNNSettings(_Strict):
    """Item-item cosine neighbourhood model."""

    neighbours: int = Field(default=100, gt=0)
    weighting: Literal["none", "log", "bm25"] = "bm25"


class HybridSettings(_Strict):
    """Blend of normalised scores of personalised models, plus segment popularity."""

    components: list[HybridComponent] = Field(default_factory=_default_components)
    weights: dict[str, float] = Field(
        default_factory=lambda: {"content": 0.3},
        description="per component; 1.0 for a component not named",
    )
    popularity_weight: float = Field(default=0.1, ge=0)


class RecommendConfig(_Strict):
    """Recommendations: interactions, business filters, models and evaluation."""

    n: int = Field(default=10, gt=0, description="items per user")
    model: ModelName | Literal["best"] = Field(
        default="best", description="model of `segmint recommend`; best = last evaluation's"
    )
    models: list[ModelName] = Field(
        default_factory=_default_models,
        description="models compared by `segmint recommend evaluate`",
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
        description="event name -> weight; 'purchase' is a completed order line",
    )
    quantity: Literal["linear", "log", "none"] = Field(
        default="linear", description="how a line's quantity scales its purchase weight"
    )
    half_life_days: float | None = Field(default=None, gt=0, description="recency decay")
    binary: bool = Field(
        default=False,
        description="every (user, item) pair with an interaction counts 1, whatever its "
        "quantities, repetitions or event kinds",
    )
    segmentation: str | None = Field(
        default=None, description="segmentation for segment popularity and price bands"
    )
    exclude_purchased: bool = True
    repeat_purchase_categories: list[str] = Field(default_factory=list)
    in_stock_only: bool = True
    category_cap: int | None = Field(default=None, gt=0, description="max items per category")
    price_bands: dict[str, PriceBand] = Field(default_factory=dict, description="per segment")
    test_days: int = Field(default=30, gt=0, description="evaluation: days after the cut")
    cut: str | None = Field(default=None, description="evaluation cut date (YYYY-MM-DD)")
    k: int = Field(default=10, gt=0, description="evaluation list length")
    als: ALSSettings = Field(default_factory=ALSSettings)
    item_knn: ItemKNNSettings = Field(default_factory=ItemKNNSettings)
    hybrid: HybridSettings = Field(default_factory=HybridSettings)

    @model_validator(mode="after")
    def _weights_ok(self) -> RecommendConfig:
        bad = {k: v for k, v in self.event_weights.items() if v < 0}
        if bad:
            raise ValueError(f"event_weights must be >= 0, got {bad}")
        if self.binary and self.half_life_days is not None:
            raise ValueError(
                "binary interactions count 1 each, so half_life_days cannot change them; "
                "drop one of the two"
            )
        return self


DEFAULT_CONSENT_CHANNELS = ("email", "sms", "push", "phone", "post", "web", "in_app", "any")
"""``any`` is the channel of a consent about the person rather than a channel (e.g.
``sale_or_share``, ``personalization``); purposes of that kind are read across channels."""
DEFAULT_CONSENT_PURPOSES = (
    "marketing",
    "newsletter",
    "transactional",
    "analytics",
    "personalization",
    "sale_or_share",
)


class ConsentVocabulary(_Strict):
    """Consent channels and purposes a project uses beyond the defaults.

    Consent rows are loaded with channel and purpose trimmed and lower-cased; a value
    outside the vocabulary is quarantined (rule ``unknown_value``), and the playbook's
    channel ``consent:`` and campaign ``purpose`` must be in it too.
    """

    channels: list[str] = Field(
        default_factory=list,
        description="consent channels beyond email, sms, push, phone, post, web, in_app, any",
    )
    purposes: list[str] = Field(
        default_factory=list,
        description="consent purposes beyond marketing, newsletter, transactional, "
        "analytics, personalization, sale_or_share",
    )

    @model_validator(mode="before")
    @classmethod
    def _normalised(cls, data: Any) -> Any:
        """Trimmed and lower-cased, as consent rows are at load; no empty name."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for key in ("channels", "purposes"):
            words = out.get(key)
            if isinstance(words, list) and all(isinstance(w, str) for w in words):
                if any(not w.strip() for w in words):
                    raise ValueError(f"consent.{key}: an empty name")
                out[key] = list(dict.fromkeys(w.strip().lower() for w in words))
        return out

    @property
    def all_channels(self) -> tuple[str, ...]:
        """The defaults, then this project's own."""
        return tuple(dict.fromkeys((*DEFAULT_CONSENT_CHANNELS, *self.channels)))

    @property
    def all_purposes(self) -> tuple[str, ...]:
        """The defaults, then this project's own."""
        return tuple(dict.fromkeys((*DEFAULT_CONSENT_PURPOSES, *self.purposes)))


class ServeSettings(_Strict):
    """The ``serve:`` section: how ``segmint serve`` faces the outside world (issue 19)."""

    public_url: str = Field(
        default="http://localhost:8000",
        description="the service's address as people and products reach it (links in e-mails)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins allowed to call the tracking and decision endpoints from a browser",
    )
    rate_per_second: float = Field(
        default=200.0, gt=0, description="requests per second allowed per key (token bucket)"
    )
    burst: int = Field(default=400, gt=0, description="requests a key may send at once")
    decide_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="how often the decision service looks for new runs (GET /v1/decide)",
    )
    decide_recommendations: int = Field(
        default=10, ge=1, le=100, description="recommendations per user kept for decisions"
    )

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(
                f"serve.public_url: {value!r} is not an http(s) address such as "
                "https://shop.example or https://shop.example/segmint"
            )
        return value.strip().rstrip("/")


DEFAULT_TRACKING_EVENTS: dict[str, str] = {
    "Product Viewed": "product_view",
    "Product Clicked": "click",
    "Product Added": "add_to_cart",
    "Product Removed": "remove_from_cart",
    "Cart Viewed": "cart_view",
    "Checkout Started": "checkout",
    "Products Searched": "search",
    "Product Added to Wishlist": "wishlist",
    "Order Completed": "order",
}


DEFAULT_PERSONAL_TRAITS = (
    "name",
    "first_name",
    "last_name",
    "full_name",
    "address",
    "street",
    "postal_address",
    "email",
    "phone",
    "birthday",
)
"""Trait keys (users' ``traits``, events' ``properties``) sealed at rest by default; keys
whose words name personal data (``home_address``, ``phoneNumber``) are sealed too, see
:func:`segmint.store.is_personal_key`."""

DEFAULT_RETENTION = {"quarantine": "90d"}

RETENTION_TABLES = {
    "events": "ts",
    "quarantine": "its load's started_at",
    "deliveries": "created_at",
    "exposures": "served_at",
    "tracked_messages": "received_at",
    "job_runs": "started_at",
    "workspace_sessions": "created_at",
}
"""Tables ``privacy.retention`` may purge and the time a row's age is measured from."""

RETENTION_REFUSED = {
    "audit_log": "the audit log is a hash chain: purging its start would break verification",
    "orders": "orders are business records (accounting law keeps them for years); erase a "
    "person with `segmint privacy forget`",
    "consents": "the consent history is the proof of consent; it is kept while the person is",
}

RETENTION_PERIOD = r"^\s*(\d+)\s*(d|w|mo|y)\s*$"
"""A retention period: a number and a unit, days (``90d``), weeks (``26w``), calendar months
(``13mo``) or years (``2y``)."""


def parse_period(text: str) -> tuple[int, str]:
    """``"13mo"`` -> ``(13, "mo")``; ValueError naming the syntax otherwise."""
    import re

    found = re.match(RETENTION_PERIOD, str(text))
    if found is None or int(found.group(1)) <= 0:
        raise ValueError(
            f"retention period {text!r}: expected a positive number and a unit, "
            "d (days), w (weeks), mo (months) or y (years), e.g. 90d, 26w, 13mo, 2y"
        )
    return int(found.group(1)), found.group(2)


class PredictSettings(_Strict):
    """The ``predict:`` section (issue 22): customer value and churn.

    CLV: a purchase model (BG/NBD, or MBG/NBD which lets one-time buyers be lost too) and
    the Gamma-Gamma spend model, fitted on the orders before the as-of date; CLV is the
    expected margin over ``horizon_days``, discounted at ``discount_rate`` a year. Churn:
    a gradient boosting model of "no completed order in the ``churn_days`` after the as-of
    date", trained and checked on earlier cut-offs (see docs/predict.md).
    """

    model: Literal["bgnbd", "mbgnbd"] = "bgnbd"
    horizon_days: int = Field(default=365, ge=1, le=3650, description="CLV horizon")
    discount_rate: float = Field(default=0.10, ge=0, lt=1, description="a year")
    margin: float = Field(default=1.0, gt=0, le=1, description="share of revenue kept")
    interval: float = Field(default=0.9, gt=0, lt=1, description="CLV interval level")
    one_time_buyers: Literal["first_purchase", "population"] = Field(
        default="first_purchase",
        description="the order value of a customer with no repeat purchase: the spend "
        "model's posterior with their first purchase as one observation, or the population "
        "mean (the model's letter, as lifetimes does)",
    )
    churn_days: int = Field(default=90, ge=7, le=730, description="churn label window")
    seed: int = 0


_MASTER = re.compile(
    r"^(local(\[(\*|[1-9][0-9]*)(,[1-9][0-9]*)?\])?|spark://[^\s/]+:[0-9]+|yarn|k8s://\S+)$"
)


class SparkTable(_Strict):
    """One canonical table read by Spark itself (``spark.tables``): data already clean
    at lake scale (written by another job), in the canonical columns of docs/data-model.md.
    Without an entry, Spark reads the store's table (a Parquet copy of a DuckDB store, JDBC
    from PostgreSQL)."""

    format: Literal["parquet", "csv", "jsonl", "jdbc"]
    path: str | None = Field(default=None, description="file, folder or glob (not jdbc)")
    url: str | None = Field(default=None, description="jdbc:postgresql://host:port/db (jdbc)")
    dbtable: str | None = Field(default=None, description="table or (SELECT ...) t (jdbc)")
    options: dict[str, str] = Field(default_factory=dict, description="reader options")

    @model_validator(mode="after")
    def _where(self) -> SparkTable:
        if self.format == "jdbc" and not (self.url and self.dbtable):
            raise ValueError("a jdbc table needs `url` and `dbtable`")
        if self.format != "jdbc" and not self.path:
            raise ValueError(f"a {self.format} table needs `path`")
        return self


class SparkSettings(_Strict):
    """The ``spark:`` section (issue 23), used when ``engine: spark``.

    ``master``: ``local[N]`` (N cores of this machine, the default is ``local[*]``),
    ``spark://host:7077`` (a standalone cluster), ``yarn`` or ``k8s://...``. ``conf``: any
    Spark setting (``spark.driver.memory: 8g``, ``spark.executor.memory``, ...)."""

    master: str = "local[*]"
    app_name: str = "segmint"
    conf: dict[str, str] = Field(default_factory=dict)
    java_home: str | None = Field(
        default=None, description="a Java 17 or 21 home; default JAVA_HOME, then PATH"
    )
    jdbc_driver: str | None = Field(
        default=None,
        description="PostgreSQL JDBC jar for a postgresql:// store or jdbc tables; default "
        "/usr/share/java/postgresql.jar (Debian's libpostgresql-jdbc-java)",
    )
    tables: dict[Literal["users", "items", "orders", "order_items", "events"], SparkTable] = Field(
        default_factory=dict
    )

    @field_validator("master")
    @classmethod
    def _master(cls, value: str) -> str:
        if not _MASTER.match(value.strip()):
            raise ValueError(
                f"{value!r} is not a Spark master URL: use local[N], local[*], "
                "spark://host:port, yarn or k8s://..."
            )
        return value.strip()

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_text(cls, value: Any) -> Any:
        if isinstance(value, dict):  # YAML gives numbers and booleans; Spark wants text
            return {
                str(k): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in value.items()
            }
        return value


class PrivacySettings(_Strict):
    """The ``privacy:`` section (issue 21): encryption at rest, personal traits, retention.

    Personal fields (users' e-mail, phone and birthday, personal trait keys) are sealed
    with a data key that a master key wraps. The master key is read from the environment
    variable ``master_key_env`` or, failing that, from ``master_key_file``; with neither a
    key file is created at ``.segmint/master.key`` (mode 0600) the first time, which
    suits a laptop, not production (docs/privacy.md). Never the secret itself here.
    """

    encrypt: bool = Field(
        default=True, description="seal personal fields at rest (false: stored in clear)"
    )
    master_key_env: str = Field(
        default="SEGMINT_MASTER_KEY",
        description="environment variable holding the master key (64 hex digits or base64)",
    )
    master_key_file: str | None = Field(
        default=None,
        description="file holding the master key (project-relative); default "
        ".segmint/master.key, created when no key is found",
    )
    key_wrapper: str | None = Field(
        default=None,
        description="module:attribute of a key wrapper (a cloud KMS) that wraps and unwraps "
        "the data keys instead of the master key",
    )
    personal_traits: list[str] = Field(
        default_factory=list,
        description="trait or property keys sealed at rest beyond the defaults (name, "
        "first_name, last_name, address, ...)",
    )
    retention: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_RETENTION),
        description="table -> how long its rows are kept (e.g. events: 13mo, quarantine: 90d); "
        "enforced by `segmint privacy retention`",
    )
    personalization: Literal["opt_in", "opt_out"] = Field(
        default="opt_out",
        description="opt_out: personalized content (segment UI, offers, personal "
        "recommendations) unless the person revoked `personalization` consent; opt_in: only "
        "for people who granted it",
    )

    @field_validator("retention")
    @classmethod
    def _periods(cls, value: dict[str, str]) -> dict[str, str]:
        """Known tables only, each with a period like 90d, 26w, 13mo or 2y."""
        out: dict[str, str] = {}
        for table, period in value.items():
            name = str(table).strip().lower()
            if name in RETENTION_REFUSED:
                raise ValueError(f"retention of {name}: not allowed ({RETENTION_REFUSED[name]})")
            if name not in RETENTION_TABLES:
                raise ValueError(
                    f"retention of {table!r}: not a table segmint purges; "
                    f"expected one of {', '.join(RETENTION_TABLES)}"
                )
            number, unit = parse_period(period)
            out[name] = f"{number}{unit}"
        return out

    @property
    def sealed_traits(self) -> frozenset[str]:
        """Every trait key sealed at rest (lower case): the defaults and the declared ones."""
        return frozenset(k.lower() for k in (*DEFAULT_PERSONAL_TRAITS, *self.personal_traits))


class TrackingSettings(_Strict):
    """The ``tracking:`` section: the Segment-compatible tracking API (issue 19)."""

    spool: str = Field(
        default=".segmint/spool", description="folder of the append-only spool (project-relative)"
    )
    batch_seconds: float = Field(
        default=1.0, gt=0, le=60, description="how often accepted events are loaded into the store"
    )
    events: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TRACKING_EVENTS),
        description="Segment event name -> segmint event type ('order' stores an order)",
    )
    consent_event: str = Field(
        default="Consent Updated",
        description="the track event whose properties (channel, purpose, granted) change consent",
    )

    @field_validator("events")
    @classmethod
    def _over_defaults(cls, value: dict[str, str]) -> dict[str, str]:
        """The names given override the defaults one by one (``{"Product Viewed": "view"}``
        keeps the other e-commerce names, ``Order Completed`` included); an empty event
        type is an error."""
        empty = [name for name, event in value.items() if not event.strip()]
        if empty:
            raise ValueError(f"tracking.events: no event type for {', '.join(map(repr, empty))}")
        return {**DEFAULT_TRACKING_EVENTS, **value}


class IngestJobArgs(_Strict):
    """``args`` of an ``ingest`` job: what ``segmint ingest`` takes."""

    sources: list[str] | None = Field(default=None, description="sources to load (default: all)")
    force: bool = Field(default=False, description="load files even when unchanged")


class SegmentJobArgs(_Strict):
    """``args`` of a ``refresh`` or ``segment`` job."""

    segmentations: list[str] | None = Field(
        default=None, description="segmentations to run (default: all)"
    )


class RecommendJobArgs(_Strict):
    """``args`` of a ``recommend`` job: what ``segmint recommend`` takes."""

    model: ModelName | Literal["best"] | None = Field(
        default=None, description="model (default: recommend.model)"
    )
    n: int | None = Field(default=None, ge=1, description="items per user (default: recommend.n)")


class CampaignJobArgs(_Strict):
    """``args`` of a ``campaign`` job: plan the campaign for the run's day, then send it."""

    campaign: str = Field(description="a campaign of playbook.campaigns")


class RetentionJobArgs(_Strict):
    """``args`` of a ``retention`` job: what ``segmint privacy retention`` takes."""

    dry_run: bool = Field(default=False, description="count what would be purged, purge nothing")


class PredictJobArgs(_Strict):
    """``args`` of a ``predict`` job: what ``segmint predict clv|churn`` takes."""

    kind: Literal["clv", "churn"] = Field(description="clv or churn")
    as_of: str | None = Field(
        default=None, description="'latest', 'today' or YYYY-MM-DD (default: features.as_of)"
    )

    @field_validator("as_of")
    @classmethod
    def _as_of(cls, value: str | None) -> str | None:
        if value is None or value in ("latest", "today"):
            return value
        from datetime import date

        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not 'latest', 'today' or a YYYY-MM-DD date") from None
        return value


JOB_ARGS: dict[str, type[_Strict]] = {
    "ingest": IngestJobArgs,
    "refresh": SegmentJobArgs,
    "segment": SegmentJobArgs,
    "recommend": RecommendJobArgs,
    "campaign": CampaignJobArgs,
    "retention": RetentionJobArgs,
    "predict": PredictJobArgs,
}
"""The ``args`` each task of ``schedule:`` accepts."""


class JobSpec(_Strict):
    """One scheduled job: what to run and when (a cron expression in ``timezone``)."""

    cron: str = Field(description="five-field cron expression, e.g. '0 3 * * *'")
    task: Literal["ingest", "refresh", "recommend", "campaign", "segment", "retention", "predict"]
    args: dict[str, Any] = Field(default_factory=dict, description="the task's options")
    grace_seconds: int = Field(
        default=3600,
        ge=0,
        description="a run missed (service down, busy) is still made this late, once",
    )
    max_minutes: int = Field(
        default=360,
        gt=0,
        description="a run still 'running' on another host after this long is taken as lost "
        "(its machine is gone) and marked failed, so the job runs again",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from segmint._cron import check_cron

        return check_cron(value)

    @model_validator(mode="after")
    def _task_args(self) -> JobSpec:
        """``args`` are those of the task (see :data:`JOB_ARGS`)."""
        model = JOB_ARGS[self.task]
        unknown = sorted(set(self.args) - set(model.model_fields))
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], list(model.model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"args: a {self.task} job takes no {unknown[0]!r}{hint} (known: "
                f"{', '.join(model.model_fields)})"
            )
        try:
            model.model_validate(self.args)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = f"args.{first['loc'][0]}" if first["loc"] else "args"
            if first["type"] == "missing":
                raise ValueError(f"{where}: required for a {self.task} job") from None
            raise ValueError(f"{where}: {first['msg']} (got {first['input']!r})") from None
        return self

    def options(self) -> Any:
        """``args`` as the task's typed options (an instance of ``JOB_ARGS[task]``)."""
        return JOB_ARGS[self.task].model_validate(self.args)


def _check_schedule(value: dict[str, JobSpec], data: dict[str, Any]) -> dict[str, JobSpec]:
    """The names a job's args refer to exist (sources, segmentations, campaigns)."""
    problems = []
    playbook = data.get("playbook")
    for name, spec in value.items():
        options = spec.options()
        wanted: list[tuple[str, list[str], Any]] = []
        if isinstance(options, IngestJobArgs):
            wanted.append(("sources", options.sources or [], data.get("sources")))
        elif isinstance(options, SegmentJobArgs):
            wanted.append(("segmentations", options.segmentations or [], data.get("segmentations")))
        elif isinstance(options, CampaignJobArgs):
            wanted.append(
                ("campaign", [options.campaign], playbook.campaigns if playbook else None)
            )
        for key, names, known in wanted:
            if known is None:  # that section failed validation itself; said there
                continue
            for n in names:
                if n not in known:
                    problems.append(
                        f"schedule.{name}.args.{key}: no {key.rstrip('s')} named {n!r} "
                        f"(known: {', '.join(known) or 'none'})"
                    )
    if problems:
        raise ValueError("; ".join(problems))
    return value


class Config(_Strict):
    """The whole of one project's ``segmint.yaml``."""

    project: str = "segmint"
    store: str = Field(default="segmint.duckdb", description="DuckDB file path or postgresql://")
    engine: Literal["duckdb", "spark"] = "duckdb"
    spark: SparkSettings = Field(default_factory=SparkSettings)
    timezone: str = "UTC"
    currency: str = "USD"
    locale: str = Field(default="en", description="language of text people read: en or zh-CN")
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    sources: dict[str, Source] = Field(default_factory=dict)
    cleaning: dict[
        Literal["users", "items", "orders", "order_items", "events", "consents"], CleaningRules
    ] = Field(default_factory=dict)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    segmentations: dict[str, Segmentation] = Field(default_factory=dict)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    consent: ConsentVocabulary = Field(default_factory=ConsentVocabulary)  # before playbook
    playbook: Playbook = Field(default_factory=Playbook)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    predict: PredictSettings = Field(default_factory=PredictSettings)
    schedule: dict[str, JobSpec] = Field(
        default_factory=dict, description="job name -> cron and task, run by segmint serve"
    )

    # where the file was loaded from; relative paths resolve against it
    root: Path = Field(default=Path("."), exclude=True)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _unsubscribe_at_the_service(self) -> Config:
        """Unless ``playbook.unsubscribe_url`` is set, links point at the service's public
        address: ``{serve.public_url}/u/{token}``."""
        if "unsubscribe_url" not in self.playbook.model_fields_set:
            url = f"{self.serve.public_url}/u/{{token}}"
            object.__setattr__(self.playbook, "unsubscribe_url", url)  # frozen; stays "unset"
        return self

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        from segmint._i18n import check_locale

        return check_locale(value)

    @field_validator("cleaning")
    @classmethod
    def _cleaning_columns(cls, value: dict[str, CleaningRules]) -> dict[str, CleaningRules]:
        for table, rules in value.items():
            _known_columns(table, rules.missing, f"cleaning.{table}.missing")
            _known_columns(table, rules.outliers, f"cleaning.{table}.outliers")
            if rules.duplicates is not None:
                named = [*rules.duplicates.key]
                if rules.duplicates.order_by:
                    named.append(rules.duplicates.order_by)
                _known_columns(table, named, f"cleaning.{table}.duplicates")
        return value

    def cleaning_for(self, table: str) -> CleaningRules | None:
        """The cleaning rules of one canonical table, if any."""
        return self.cleaning.get(table)  # type: ignore[call-overload,no-any-return]

    def resolve(self, path: str) -> Path:
        p = Path(path.replace("{here}", str(self.root)))
        return p if p.is_absolute() else (self.root / p)

    @field_validator("schedule")
    @classmethod
    def _schedule_names(cls, value: dict[str, JobSpec], info: ValidationInfo) -> dict[str, JobSpec]:
        return _check_schedule(value, info.data)

    @field_validator("playbook")
    @classmethod
    def _consent_words(cls, value: Playbook, info: ValidationInfo) -> Playbook:
        """The playbook's consent channels and campaign purposes are in the vocabulary."""
        vocabulary = info.data.get("consent") or ConsentVocabulary()
        problems = []
        for kind, known, used in (
            (
                "channel",
                vocabulary.all_channels,
                [(f"channels.{n}.consent", c.consent) for n, c in value.channels.items()],
            ),
            (
                "purpose",
                vocabulary.all_purposes,
                [(f"campaigns.{n}.purpose", c.purpose) for n, c in value.campaigns.items()],
            ),
        ):
            for where, word in used:
                if word not in known:
                    import difflib

                    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    problems.append(
                        f"{where}: unknown consent {kind} {word!r}{hint} (known: "
                        f"{', '.join(known)}; add your own under consent.{kind}s)"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @property
    def store_url(self) -> str:
        if self.store.startswith(("postgresql://", "postgres://")):
            return self.store
        if self.store.startswith("$"):
            import os

            value = os.environ.get(self.store[1:])
            if not value:
                raise ConfigError(
                    f"store: environment variable {self.store[1:]} is not set; "
                    "set it to a postgresql:// URL or a DuckDB file path"
                )
            return value
        return str(self.resolve(self.store))


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that remembers the line of every mapping key."""


def _key_lines(text: str) -> dict[tuple[Any, ...], int]:
    lines: dict[tuple[Any, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> int | None:
    # pydantic inserts the discriminator tag (e.g. 'csv') into loc; drop parts yaml never had
    keys = [p for p in loc if not isinstance(p, str) or p]
    while keys:
        t = tuple(keys)
        if t in lines:
            return lines[t]
        # try without union tags like 'csv' / 'constant'
        filtered = tuple(k for k in t if (t[: t.index(k)] + (k,)) in lines or k == t[-1])
        if filtered in lines:
            return lines[filtered]
        keys.pop()
    return None


MAX_CONFIG_BYTES = 1 << 20
"""The largest ``segmint.yaml`` read (a real one is a few KB)."""
MAX_CONFIG_NODES = 100_000
"""The most YAML nodes a configuration may hold once every alias is expanded: anchors and
aliases (``&a`` / ``*a``) are fine for sharing a block, but nine levels of nine aliases
(a "billion laughs" file of 406 bytes) would expand to 387 million."""
MAX_CONFIG_DEPTH = 64
"""The deepest nesting of mappings and lists."""


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader; :func:`_load_yaml` checks the composed document first."""


def _load_yaml(text: str, path: Path) -> Any:
    """Parse YAML safely, bounded: at most :data:`MAX_CONFIG_BYTES`, :data:`MAX_CONFIG_NODES`
    after alias expansion and :data:`MAX_CONFIG_DEPTH` levels; no recursive alias, no key
    given twice in one mapping (YAML would silently keep the last, so a second source named
    like the first would replace it)."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {len(text):,} characters; a configuration is at most "
            f"{MAX_CONFIG_BYTES:,} (is this the right file?)"
        )
    _check_depth(text, path)
    try:
        loader = _ConfigLoader(text)  # the reader refuses control characters here
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ConfigError(
                f"{path}: nested too deeply (at most {MAX_CONFIG_DEPTH} levels)"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise ConfigError(
                f"{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})"
            ) from None
        if root is None:
            return None
        _check_nodes(root, path)
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _check_depth(text: str, path: Path) -> None:
    """Refuse deep nesting before PyYAML sees it: its scanner takes time quadratic in the
    nesting of ``[`` / ``{`` (measured once: 5,000 levels, 24 s) and its composer recurses
    once per level of indentation. Brackets inside quoted strings are counted too, which only makes the
    bound stricter for absurd strings."""
    import re

    def refuse(line: int, what: str) -> ConfigError:
        return ConfigError(
            f"{path}:{line}: nested too deeply (more than {MAX_CONFIG_DEPTH} levels of {what})"
        )

    depth = 0
    for match in re.finditer(r"[\[\]{}]", text):
        depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_CONFIG_DEPTH:
            raise refuse(text.count("\n", 0, match.start()) + 1, "[ ] or { }")
    indents: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        indent = len(line) - len(body)
        while indents and indents[-1] >= indent:
            indents.pop()
        indents.append(indent)
        if len(indents) > MAX_CONFIG_DEPTH:
            raise refuse(number, "indentation")


def _check_nodes(root: yaml.Node, path: Path) -> None:
    """Expanded size, depth, recursive aliases and duplicate keys of a composed document.
    Each node is visited once (aliases share the node object), so this is linear in the
    file, however large the expansion would be."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        line = node.start_mark.line + 1
        if key in open_:
            raise ConfigError(f"{path}:{line}: an alias refers to the block that contains it")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(
                f"{path}:{line}: nested too deeply (at most {MAX_CONFIG_DEPTH} levels)"
            )
        open_.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    if k.value in seen:
                        raise ConfigError(
                            f"{path}:{k.start_mark.line + 1}: key {k.value!r} is given twice "
                            f"in the same mapping (first at line {seen[k.value]}); YAML would "
                            "keep only the last one. Rename or merge them"
                        )
                    seen[k.value] = k.start_mark.line + 1
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in node.value)
        open_.discard(key)
        if total > MAX_CONFIG_NODES:
            raise ConfigError(
                f"{path}:{line}: this block expands to more than {MAX_CONFIG_NODES:,} values "
                "through its aliases (*name); a configuration is never that large. Write the "
                "values out, or use fewer nested aliases"
            )
        sizes[key] = total
        return total

    size(root, 0)


def parse_config(text: str, *, path: Path, root: Path | None = None) -> Config:
    """Parse the text of a ``segmint.yaml``; errors name the key, the file and the line."""
    data = _load_yaml(text, path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        lines = _key_lines(text)
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            # drop pydantic's union tags that are not keys in the file
            clean = tuple(
                p for i, p in enumerate(loc) if isinstance(p, int) or _is_key(loc[:i], p, lines)
            )
            key = ".".join(str(p) for p in clean) or "(top level)"
            line = _line_for(clean, lines)
            where = f"{path}:{line}" if line else str(path)
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {key!r}"
                hint = _suggest(clean, lines)
                if hint:
                    msg += f" (did you mean {hint!r}?)"
            else:
                msg = f"{key}: {err['msg']}"
                if "input" in err and not isinstance(err["input"], dict | list):
                    msg += f" (got {err['input']!r})"
            problems.append(f"{where}: {msg}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
    return config.model_copy(update={"root": root or path.parent})


def _is_key(prefix: tuple[Any, ...], part: Any, lines: dict[tuple[Any, ...], int]) -> bool:
    clean_prefix = tuple(p for p in prefix if isinstance(p, int) or _any_path_has(p, lines))
    return (clean_prefix + (part,)) in lines or not _is_tag(part)


def _any_path_has(part: Any, lines: dict[tuple[Any, ...], int]) -> bool:
    return any(part in k for k in lines)


_TAGS = {
    "csv",
    "parquet",
    "jsonl",
    "postgres",
    "query",
    "rfm",
    "lifecycle",
    "value_tiers",
    "rules",
    "kmeans",
    "ward",
    "dbscan",
    "hdbscan",
    "gmm",
    "tree",
    "propensity",
    "str",
    "ColumnExpr",
    "ConstantFill",
    "literal['drop','median','mode']",
    "function-after[_one_of(), str]",
}


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part in _TAGS or part in CAMPAIGN_TAGS or part.startswith(("literal[", "function-"))
    )


def _suggest(loc: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str | None:
    """The closest known key name to an unknown one, across every config model."""
    import difflib

    known: set[str] = set()
    for model in (
        Config,
        ValidationSettings,
        CsvSource,
        ParquetSource,
        JsonlSource,
        PostgresSource,
        QuerySource,
        CleaningRules,
        OutlierRule,
        DuplicateRule,
        FeaturesConfig,
        CustomFeatureConfig,
        LifecycleSegmentation,
        ValueTiersSegmentation,
        RulesSegmentation,
        RuleSpec,
        ClusterSegmentation,
        TreeSegmentation,
        PropensitySegmentation,
        SupervisedTarget,
        RecommendConfig,
        PriceBand,
        ALSSettings,
        ItemKNNSettings,
        HybridSettings,
        ConsentVocabulary,
        JobSpec,
    ):
        known.update(name for name in model.model_fields if name != "root")
    for campaign_model in CAMPAIGN_MODELS:
        known.update(campaign_model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), sorted(known), n=1)
    return close[0] if close else None


def load_config(path: str | Path) -> Config:
    """Load ``segmint.yaml`` (or the file at ``path``) into a :class:`Config`.

    Parameters
    ----------
    path : str or Path
        The file, or the project folder holding ``segmint.yaml``.
    """
    p = Path(path)
    if p.is_dir() or p.suffix not in (".yaml", ".yml"):
        p = p / CONFIG_FILE
    if not p.exists():
        raise ConfigError(
            f"{p}: no such file. Create one with `segmint init {p.parent}` "
            "or point --project at the folder holding segmint.yaml"
        )
    return parse_config(_read_text(p), path=p, root=p.parent.resolve())


def _read_text(path: Path) -> str:
    """The file as UTF-8 text; a file that is not (latin-1, UTF-16, binary) is a
    ConfigError naming the line and column of the first bad byte."""
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: not a regular file; point --project at a folder")
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at column "
            f"{column}); save the file as UTF-8"
        ) from None
