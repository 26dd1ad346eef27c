"""Features: one row per user, computed in the store with SQL written once.

The built-in catalog (``CATALOG``) is one query in DuckDB's dialect, transpiled with
sqlglot for PostgreSQL and Spark SQL. User-defined features (``CustomFeature``) are
aggregate SQL expressions checked against an allow-list (``check_expression``). Every
value uses only data strictly before the as-of instant, and each computation is stored
as a run (``compute_features`` / ``load_features``).
"""

from segmint.features._catalog import CATALOG, UNKNOWN_CATEGORY, FeatureSpec, feature_sql
from segmint.features._custom import (
    ALLOWED_FUNCTIONS,
    PERSONAL_COLUMNS,
    TRAIT_COLUMNS,
    CustomFeature,
    check_expression,
)
from segmint.features._runs import (
    FeatureRun,
    category_shares,
    compute_features,
    default_as_of,
    features_as_of,
    load_features,
)

__all__ = [
    "ALLOWED_FUNCTIONS",
    "CATALOG",
    "PERSONAL_COLUMNS",
    "TRAIT_COLUMNS",
    "UNKNOWN_CATEGORY",
    "CustomFeature",
    "FeatureRun",
    "FeatureSpec",
    "category_shares",
    "check_expression",
    "compute_features",
    "default_as_of",
    "feature_sql",
    "features_as_of",
    "load_features",
]
