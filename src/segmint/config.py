"""Typed configuration: ``segmint.yaml`` loaded into pydantic models.

An unknown key, a wrong type or a missing file raises :class:`~segmint.errors.ConfigError`
naming the key, the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from segmint.campaigns._config import CAMPAIGN_MODELS, CAMPAIGN_TAGS, Playbook
from segmint.errors import ConfigError

__all__ = [
    "CleaningRules",
    "ClusterSegmentation",
    "Config",
    "CustomFeatureConfig",
    "FeaturesConfig",
    "LifecycleSegmentation",
    "RfmSegmentation",
    "RecommendConfig",
    "RulesSegmentation",
    "Segmentation",
    "ValueTiersSegmentation",
    "CsvSource",
    "JsonlSource",
    "ParquetSource",
    "PostgresSource",
    "QuerySource",
    "Source",
    "ValidationSettings",
    "load_config",
]

CONFIG_FILE = "segmint.yaml"
CANONICAL_TABLES = ("users", "items", "orders", "order_items", "events", "consents")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
        default=None, description="strptime format of timestamps, e.g. '%d/%m/%Y %H:%M'"
    )
    filter: str | None = Field(
        default=None,
        description="DuckDB SQL condition over source columns; rows failing it are "
        "quarantined with reason 'filtered out by source filter'",
    )


class CsvSource(_SourceBase):
    type: Literal["csv"]
    path: str
    delimiter: str = ","
    header: bool = True

    @model_validator(mode="after")
    def _one_character_delimiter(self) -> CsvSource:
        if len(self.delimiter) != 1 or self.delimiter in '"\r\n':
            raise ValueError(
                f"delimiter {self.delimiter!r} cannot separate fields: it must be one "
                "character other than a quote or a line break, e.g. ',', ';', '|' or a tab "
                '(write it "\\t")'
            )
        return self


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


Segmentation = Annotated[
    RfmSegmentation
    | LifecycleSegmentation
    | ValueTiersSegmentation
    | RulesSegmentation
    | ClusterSegmentation,
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
        return self


class Config(_Strict):
    """The whole of one project's ``segmint.yaml``."""

    project: str = "segmint"
    store: str = Field(default="segmint.duckdb", description="DuckDB file path or postgresql://")
    engine: Literal["duckdb", "spark"] = "duckdb"
    timezone: str = "UTC"
    currency: str = "USD"
    validation: ValidationSettings = Field(default_factory=ValidationSettings)
    sources: dict[str, Source] = Field(default_factory=dict)
    cleaning: dict[
        Literal["users", "items", "orders", "order_items", "events", "consents"], CleaningRules
    ] = Field(default_factory=dict)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    segmentations: dict[str, Segmentation] = Field(default_factory=dict)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    playbook: Playbook = Field(default_factory=Playbook)

    # where the file was loaded from; relative paths resolve against it
    root: Path = Field(default=Path("."), exclude=True)

    def cleaning_for(self, table: str) -> CleaningRules | None:
        """The cleaning rules of one canonical table, if any."""
        return self.cleaning.get(table)  # type: ignore[call-overload,no-any-return]

    def resolve(self, path: str) -> Path:
        p = Path(path.replace("{here}", str(self.root)))
        return p if p.is_absolute() else (self.root / p)

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


def parse_config(text: str, *, path: Path, root: Path | None = None) -> Config:
    """Parse the text of a ``segmint.yaml``; errors name the key, the file and the line."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
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
        RecommendConfig,
        PriceBand,
        ALSSettings,
        ItemKNNSettings,
        HybridSettings,
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
    return parse_config(p.read_text(encoding="utf-8"), path=p, root=p.parent.resolve())
