"""Scale per-user features for clustering: impute, log1p money and counts, centre and scale."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

log = logging.getLogger(__name__)

__all__ = ["LOG1P_AUTO_PATTERNS", "FeatureScaler", "as_frame", "signed_log1p"]

#: Column names (shell patterns) that ``log1p="auto"`` transforms: money and counts.
LOG1P_AUTO_PATTERNS: tuple[str, ...] = (
    "monetary",
    "frequency",
    "avg_order_value",
    "spend_*",
    "orders_*",
    "events_*",
    "sessions_*",
    "clv",
    "clv_low",
    "clv_high",
    "expected_purchases",
    "expected_order_value",
)

_METHODS = ("standard", "robust", "none")


def signed_log1p(values: Any) -> Any:
    """``sign(x) * log1p(|x|)``: log1p for x >= 0, and defined for refunds below zero."""
    return np.sign(values) * np.log1p(np.abs(values))


def signed_expm1(values: Any) -> Any:
    """Inverse of :func:`signed_log1p`."""
    return np.sign(values) * np.expm1(np.abs(values))


def as_frame(X: Any, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Return ``X`` as a float DataFrame (column names ``x0, x1, ...`` for plain arrays)."""
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D table of features, got an array of shape {arr.shape}")
    names = list(columns) if columns is not None else [f"x{i}" for i in range(arr.shape[1])]
    return pd.DataFrame(arr, columns=names)


def auto_log1p_columns(columns: Sequence[str]) -> list[str]:
    """Columns whose names match :data:`LOG1P_AUTO_PATTERNS` (money and counts)."""
    return [c for c in columns if any(fnmatch.fnmatchcase(str(c), p) for p in LOG1P_AUTO_PATTERNS)]


class FeatureScaler(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Impute, log-transform and scale per-user features, column by column.

    Each column goes through three steps, in this order:

    1. missing values are replaced by the column median seen in ``fit`` (recorded in
       ``medians_`` and counted in ``n_imputed_``);
    2. money and count columns are compressed with ``sign(x) * log1p(|x|)`` (plain
       ``log1p`` for non-negative values; the sign keeps refunds defined);
    3. the column is centred and scaled: ``'standard'`` (mean and standard deviation),
       ``'robust'`` (median and interquartile range) or ``'none'``.

    Parameters
    ----------
    scaling : {'standard', 'robust', 'none'}, default='standard'
        Scaling applied to every column without an entry in ``column_scaling``.
    log1p : 'auto', list of str or None, default='auto'
        Columns to log-transform. ``'auto'`` picks money and counts by name: ``monetary``,
        ``frequency``, ``avg_order_value``, ``spend_*``, ``orders_*``, ``events_*``,
        ``sessions_*``. ``None`` or ``[]`` turns the transform off.
    column_scaling : dict of str to str, optional
        Per-column override of ``scaling``, e.g. ``{"discount_share": "none"}``.

    Attributes
    ----------
    feature_names_in_ : ndarray of str
        Column names seen in ``fit``.
    n_features_in_ : int
        Number of columns.
    medians_ : pandas.Series
        Median of each column in original units, used to fill missing values.
    n_imputed_ : pandas.Series
        Number of missing values filled per column in the data passed to ``fit``.
    log1p_columns_ : list of str
        Columns that were log-transformed.
    methods_ : pandas.Series
        Scaling method per column.
    center_ : pandas.Series
        Value subtracted per column (after the log transform).
    scale_ : pandas.Series
        Value divided by per column (after the log transform); never zero.

    Examples
    --------
    >>> scaler = FeatureScaler(scaling="robust").fit(features)  # doctest: +SKIP
    >>> scaled = scaler.transform(features)  # doctest: +SKIP
    >>> scaler.inverse_transform(centroids)  # back to days, orders, money  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        scaling: str = "standard",
        log1p: str | Sequence[str] | None = "auto",
        column_scaling: Mapping[str, str] | None = None,
    ) -> None:
        self.scaling = scaling
        self.log1p = log1p
        self.column_scaling = column_scaling

    def fit(self, X: Any, y: Any = None) -> FeatureScaler:
        """Learn medians, the log1p columns and the centre and scale of each column.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            Per-user features in original units; may contain NaN.
        y : ignored

        Returns
        -------
        self : FeatureScaler
        """
        frame = as_frame(X).astype(float)
        if frame.shape[0] == 0:
            raise ValueError("FeatureScaler.fit got 0 rows; pass at least one user")
        columns = [str(c) for c in frame.columns]
        overrides = self._checked_overrides(columns)
        log_cols = self._log1p_columns(columns)

        values = frame.to_numpy()
        n_missing = np.isnan(values).sum(axis=0)
        all_missing = n_missing == values.shape[0]  # an all-NaN column is filled with 0
        medians = np.nanmedian(np.where(all_missing, 0.0, values), axis=0)
        filled = np.where(np.isnan(values), medians, values)
        is_log = np.array([c in log_cols for c in columns])
        filled[:, is_log] = signed_log1p(filled[:, is_log])

        methods = [overrides.get(c, self.scaling) for c in columns]
        center, scale = _centre_and_scale(filled, methods)

        self.feature_names_in_ = np.asarray(columns, dtype=object)
        self.n_features_in_ = len(columns)
        self.medians_ = pd.Series(medians, index=columns, name="median")
        self.n_imputed_ = pd.Series(n_missing.astype(int), index=columns, name="n_imputed")
        self.log1p_columns_ = [c for c in columns if c in log_cols]
        self.methods_ = pd.Series(methods, index=columns, name="method")
        self.center_ = pd.Series(center, index=columns, name="center")
        self.scale_ = pd.Series(scale, index=columns, name="scale")
        log.debug(
            "FeatureScaler fitted on %d rows x %d columns; imputed %d values; log1p on %s",
            frame.shape[0],
            len(columns),
            int(n_missing.sum()),
            self.log1p_columns_,
        )
        return self

    def _checked_overrides(self, columns: list[str]) -> dict[str, str]:
        """The per-column scaling methods, checked against the known methods and columns."""
        overrides = dict(self.column_scaling or {})
        for method in [self.scaling, *overrides.values()]:
            if method not in _METHODS:
                raise ValueError(
                    f"unknown scaling {method!r}; expected one of {', '.join(_METHODS)}"
                )
        unknown = sorted(set(overrides) - set(columns))
        if unknown:
            raise ValueError(
                f"column_scaling names column(s) {unknown} that are not in the data; "
                f"columns are {columns}"
            )
        return overrides

    def _log1p_columns(self, columns: list[str]) -> list[str]:
        """The columns to take the signed log1p of (``auto``: the skewed catalog ones)."""
        if self.log1p is None:
            return []
        if isinstance(self.log1p, str):
            if self.log1p != "auto":
                raise ValueError(
                    f"log1p must be 'auto', a list of column names or None, got {self.log1p!r}"
                )
            return auto_log1p_columns(columns)
        log_cols = [str(c) for c in self.log1p]
        missing = sorted(set(log_cols) - set(columns))
        if missing:
            raise ValueError(
                f"log1p names column(s) {missing} that are not in the data; columns are {columns}"
            )
        return log_cols

    def _columns_of(self, X: Any) -> pd.DataFrame:
        columns = list(self.feature_names_in_)
        frame = as_frame(X, columns=None if isinstance(X, pd.DataFrame) else columns)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"column(s) {missing} were seen in fit but are missing now; "
                f"got columns {[str(c) for c in frame.columns]}"
            )
        return frame[columns].astype(float)

    def transform(self, X: Any) -> pd.DataFrame:
        """Impute, log-transform and scale ``X`` with what ``fit`` learned.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_users, n_features)
            The columns seen in ``fit`` (extra columns are ignored, order may differ).

        Returns
        -------
        pandas.DataFrame
            Scaled features with the same index and the fitted column order; no NaN.
        """
        check_is_fitted(self, "scale_")
        frame = self._columns_of(X)
        values = frame.to_numpy(copy=True)
        values = np.where(np.isnan(values), self.medians_.to_numpy(), values)
        is_log = np.isin(self.feature_names_in_, self.log1p_columns_)
        values[:, is_log] = signed_log1p(values[:, is_log])
        values = (values - self.center_.to_numpy()) / self.scale_.to_numpy()
        return pd.DataFrame(values, index=frame.index, columns=list(self.feature_names_in_))

    def inverse_transform(self, X: Any) -> pd.DataFrame:
        """Map scaled values (for instance cluster centres) back to original units.

        Imputation cannot be undone: an imputed value comes back as the median.

        Parameters
        ----------
        X : pandas.DataFrame or array of shape (n_rows, n_features)
            Values in the scaled space.

        Returns
        -------
        pandas.DataFrame
            Values in original units (days, orders, money).
        """
        check_is_fitted(self, "scale_")
        frame = self._columns_of(X)
        values = frame.to_numpy(copy=True) * self.scale_.to_numpy() + self.center_.to_numpy()
        is_log = np.isin(self.feature_names_in_, self.log1p_columns_)
        values[:, is_log] = signed_expm1(values[:, is_log])
        return pd.DataFrame(values, index=frame.index, columns=list(self.feature_names_in_))

    def describe(self) -> pd.DataFrame:
        """One row per column: how it is transformed, for reports.

        Returns
        -------
        pandas.DataFrame
            Index = column; columns ``feature`` (the column again, so records keep it),
            ``method``, ``log1p``, ``median`` (fill value, original
            units), ``n_imputed``, ``center`` and ``scale`` (transformed units) and
            ``center_original`` (the centre expressed in original units) and ``text``, a
            one-line description such as ``"log1p, standard (centre 54.6), 12 imputed"``.
        """
        check_is_fitted(self, "scale_")
        columns = list(self.feature_names_in_)
        is_log = pd.Series([c in self.log1p_columns_ for c in columns], index=columns)
        center_original = self.center_.copy()  # expm1 only where log1p was applied: a
        # large centre of a column left as it is would overflow
        center_original[is_log] = signed_expm1(self.center_[is_log])
        texts = []
        for c in columns:
            parts = ["log1p"] if is_log[c] else []
            method = str(self.methods_[c])
            if method != "none":
                parts.append(f"{method} (centre {center_original[c]:.4g})")
            if self.n_imputed_[c]:
                parts.append(f"{int(self.n_imputed_[c])} imputed with {self.medians_[c]:.4g}")
            texts.append(", ".join(parts) or "unchanged")
        return pd.DataFrame(
            {
                "feature": columns,
                "method": self.methods_,
                "log1p": is_log,
                "median": self.medians_,
                "n_imputed": self.n_imputed_,
                "center": self.center_,
                "scale": self.scale_,
                "center_original": center_original,
                "text": texts,
            }
        )

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names: the same as the input columns."""
        check_is_fitted(self, "scale_")
        return np.asarray(self.feature_names_in_, dtype=object)


def _centre_and_scale(filled: np.ndarray, methods: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each column's centre and scale by its method (standard: mean and standard deviation;
    robust: median and IQR, the standard deviation when the IQR is 0; none: 0 and 1); a
    scale of 0 becomes 1."""
    center = np.zeros(len(methods))
    scale = np.ones(len(methods))
    for j, method in enumerate(methods):
        col = filled[:, j]
        if method == "standard":
            center[j] = col.mean()
            scale[j] = col.std()
        elif method == "robust":
            q1, med, q3 = np.percentile(col, [25, 50, 75])
            center[j] = med
            scale[j] = q3 - q1
            if not scale[j] > 0:  # more than half the users share one value: fall back
                scale[j] = col.std()
        if not scale[j] > 0:
            scale[j] = 1.0
    return center, scale
