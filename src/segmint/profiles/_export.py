"""Exports a marketer can open: profiles, personas and member lists as CSV, Excel, Parquet
or JSON.

The format follows the extension of ``-o`` (:func:`resolve_format`): ``.csv``, ``.xlsx``,
``.parquet``, ``.json`` (one array of records; one object of arrays for several tables),
``.jsonl`` (one record a line). Without an extension the format is :data:`DEFAULT_FORMAT`
(CSV, UTF-8 with a byte-order mark so Excel reads accents and Chinese names), or
``format`` when given. CSV and xlsx are for people: money is rounded to cents and other
fractional numbers to 4 significant digits; Parquet and JSON keep full precision.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from segmint._output import cannot_write, output_file, output_folder
from segmint._spreadsheet import write_csv, write_xlsx
from segmint.errors import ConfigError, NotFoundError
from segmint.profiles._persona import Persona
from segmint.store import PREFIX, Store, latest_run_sql, latest_runs_sql
from segmint.store import ident as _ident
from segmint.store import lit as _lit

Format = Literal["csv", "xlsx", "parquet", "json", "jsonl"]
FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet", "json", "jsonl")
DEFAULT_FORMAT = "csv"
"""The format of every export whose ``-o`` has no extension and no ``--format``."""
EXTENSIONS: dict[str, str] = {f".{f}": f for f in FORMATS}
EXCEL_MAX_ROWS = 1_048_575  # one row of the sheet's 1,048,576 is the header
SIGNIFICANT = 4
"""Significant digits of fractional numbers (shares, days, ratios) in CSV and xlsx."""
MONEY_COLUMNS = frozenset(
    {"revenue", "spend", "amount", "clv", "clv_low", "clv_high", "clv_mean", "clv_median"}
    | {"clv_total", "expected_order_value"}
)
"""Money columns besides the features whose unit is ``currency``: rounded to cents."""


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)} (or let the "
            "extension of -o decide)"
        )


def resolve_format(out: str | Path, fmt: str | None, *, n_tables: int = 1) -> tuple[Path, str]:
    """Where an export goes and in which format, from ``-o`` and ``--format``.

    The extension of ``out`` decides (``.csv``, ``.xlsx``, ``.parquet``, ``.json``,
    ``.jsonl``); ``fmt``, when given, must agree with it. Without an extension the format
    is ``fmt`` or :data:`DEFAULT_FORMAT`: a single table goes to ``out`` plus the
    extension, several tables in csv, parquet or jsonl into the folder ``out``.

    Raises
    ------
    segmint.errors.ConfigError
        An unknown extension or format, a format that contradicts the extension, or
        several tables asked as one csv/parquet/jsonl file.
    """
    path = Path(out)
    if fmt is not None:
        fmt = fmt.strip().lower().lstrip(".")
        _check_format(fmt)
    suffix = path.suffix.lower()
    choices = ", ".join(EXTENSIONS)
    if suffix and not path.is_dir():
        inferred = EXTENSIONS.get(suffix)
        if inferred is None:
            raise ConfigError(
                f"-o {path}: segmint does not write {suffix} files; end the file name with "
                f"one of {choices} (or give a name without extension for {DEFAULT_FORMAT})"
            )
        if fmt is not None and fmt != inferred:
            raise ConfigError(
                f"-o {path} names a .{inferred} file but --format {fmt} was given; drop --format "
                f"(the extension decides) or name the file *.{fmt}"
            )
        if n_tables > 1 and inferred in ("csv", "parquet", "jsonl"):
            raise ConfigError(
                f"-o {path}: {n_tables} tables do not fit in one {inferred} file; give a folder "
                f"(e.g. -o {path.with_suffix('')}/ --format {inferred}) or a .xlsx or .json file"
            )
        return path, inferred
    fmt = fmt or DEFAULT_FORMAT
    if n_tables > 1 and fmt in ("csv", "parquet", "jsonl"):
        return path, fmt  # a folder of one file per table
    if path.is_dir():
        return path, fmt  # output_file names the problem
    return path.with_name(path.name + f".{fmt}"), fmt


def _significant(x: float, digits: int) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - int(math.floor(math.log10(abs(x)))))


def _money_columns(frame: pd.DataFrame) -> set[str]:
    from segmint.features import CATALOG

    money = {n for n, spec in CATALOG.items() if spec.unit == "currency"} | MONEY_COLUMNS
    return {c for c in frame.columns if isinstance(c, str) and c in money}


def for_people(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with numbers rounded for reading: money to cents, other
    fractional numbers to :data:`SIGNIFICANT` significant digits (whole numbers, text and
    dates unchanged)."""
    out = frame.copy()
    money = _money_columns(frame)
    for j, c in enumerate(frame.columns):
        col = frame.iloc[:, j]
        if not pd.api.types.is_float_dtype(col):
            continue
        if c in money:
            out.isetitem(j, col.round(2).array)
        else:
            values = col.to_numpy(dtype="float64", na_value=np.nan)
            rounded = np.array([_significant(v, SIGNIFICANT) for v in values], dtype="float64")
            out.isetitem(j, pd.Series(rounded, index=col.index, dtype=col.dtype).array)
    return out


def profiles_table(store: Store, *, feature_run_id: str | None = None) -> pd.DataFrame:
    """One row per user: attributes, whether they have an e-mail (never the address, even
    masked: it is sealed, and an analysis file needs no contact), features and the latest
    segment of every segmentation, computed in the store with one query."""
    if not store.scalar("SELECT count(*) FROM feature_runs"):
        raise NotFoundError(
            f"store {store.location} has no feature run yet: run `segmint segment` first "
            "(it computes the features and the segments), then export"
        )
    where: dict[str, Any] = {"run_id": feature_run_id} if feature_run_id else {}
    run = store.query(latest_run_sql("feature", columns="run_id, features", **where))
    if run.empty:
        if feature_run_id:
            raise NotFoundError(f"no feature run {feature_run_id!r} in {store.location}")
        raise NotFoundError("no feature run in the store; run `segmint segment` first")
    fr = str(run.iat[0, 0])
    names = [n for n in json.loads(str(run.iat[0, 1])) if n not in {"user_id", "run_id"}]
    feature_cols = "".join(f", f.{_ident(n)}" for n in names)
    runs = store.query(latest_runs_sql())
    seg_names = [_ident(f"segment_{r.segmentation}") for r in runs.itertuples()]
    seg_cols = "".join(
        f", max(CASE WHEN a.run_id = {_lit(str(r.run_id))} THEN a.segment END) AS {n}"
        for r, n in zip(runs.itertuples(), seg_names, strict=True)
    )
    seg_select = "".join(f", seg.{n}" for n in seg_names)
    run_list = ", ".join(_lit(str(r)) for r in runs["run_id"])
    seg = (
        f"SELECT a.user_id{seg_cols} FROM segment_assignments AS a "
        f"WHERE a.run_id IN ({run_list}) GROUP BY a.user_id"
        if run_list
        else "SELECT CAST(NULL AS VARCHAR) AS user_id WHERE FALSE"
    )
    frame = store.query(
        f"""
        WITH seg AS ({seg})
        SELECT u.user_id, u.created_at AS signed_up_at, u.acquisition_channel,
               CASE WHEN u.email LIKE '{PREFIX}%' THEN u.email_index IS NOT NULL
                    ELSE coalesce(strpos(u.email, '@') > 0, FALSE)
               END AS has_email{feature_cols}{seg_select}
        FROM features AS f
        JOIN users AS u ON u.user_id = f.user_id
        LEFT JOIN seg ON seg.user_id = f.user_id
        WHERE f.run_id = {_lit(fr)}
        ORDER BY u.user_id"""
    )
    for c in frame.columns:  # Excel cannot hold time zones; exports are in UTC
        if isinstance(frame[c].dtype, pd.DatetimeTZDtype):
            frame[c] = frame[c].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def persona_tables(items: Sequence[Persona]) -> dict[str, pd.DataFrame]:
    """Personas as tidy tables: overview, features, categories, items, demographics,
    lifecycle (each with ``segmentation``, ``run_id`` and ``segment`` columns)."""

    def tag(p: Persona, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out.insert(0, "segment", p.segment)
        out.insert(0, "run_id", p.run_id)
        out.insert(0, "segmentation", p.segmentation)
        return out

    overview = pd.DataFrame(
        [
            {
                "segmentation": p.segmentation,
                "run_id": p.run_id,
                "segment": p.segment,
                "n_users": p.n_users,
                "user_share": p.user_share,
                "revenue_share": p.revenue_share,
                "top_traits": "; ".join(p.distinguishing["label"].head(3)),
                "summary": p.summary,
            }
            | _value_columns(p)
            for p in items
        ]
    )
    demo = [
        tag(p, frame.assign(dimension=dim)[["dimension", "value", "share", "population_share"]])
        for p in items
        for dim, frame in p.demographics.items()
    ]

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return {
        "overview": overview,
        "features": concat([tag(p, p.features.reset_index()) for p in items]),
        "categories": concat([tag(p, p.top_categories) for p in items]),
        "items": concat([tag(p, p.top_items) for p in items]),
        "demographics": concat(demo),
        "lifecycle": concat([tag(p, p.lifecycle) for p in items]),
    }


VALUE_EXPORT_COLUMNS: tuple[str, ...] = (
    "clv_mean",
    "clv_median",
    "clv_total",
    "clv_share",
    "n_scored",
    "p_alive_mean",
    "churn_risk_mean",
    "churn_high_share",
    "clv_run_id",
    "churn_run_id",
)
"""Persona overview columns from the latest prediction runs (present when a run exists)."""


def _value_columns(p: Persona) -> dict[str, Any]:
    """A persona's predicted-value columns (none without a prediction run; a kind without
    its run left empty)."""
    if not p.value:
        return {}
    return {c: p.value.get(c) for c in VALUE_EXPORT_COLUMNS}


def _json_records(frame: pd.DataFrame) -> list[dict]:
    return list(
        json.loads(
            frame.to_json(
                orient="records", date_format="iso", force_ascii=False, double_precision=15
            )
        )
    )


def write_tables(
    tables: dict[str, pd.DataFrame], out: str | Path, fmt: str | None = None
) -> list[Path]:
    """Write named tables in the format of ``out``'s extension (or ``fmt``, see
    :func:`resolve_format`): one workbook with a sheet each (xlsx), one JSON object of
    arrays (json), or one file each in the folder ``out`` (csv, parquet, jsonl). A single
    table is written to ``out`` itself.

    Missing folders are created; ``out`` must not be an existing folder where a file is
    written, nor an existing file where a folder is. CSV is UTF-8 with a byte-order mark
    (Excel then reads non-ASCII text right); CSV and xlsx cells whose text starts like a
    spreadsheet formula are written as text (see :mod:`segmint._spreadsheet`) and their
    numbers are rounded for people (:func:`for_people`).
    """
    out, fmt = resolve_format(out, fmt, n_tables=len(tables))
    if fmt == "xlsx":
        for name, frame in tables.items():
            if len(frame) > EXCEL_MAX_ROWS:
                raise ConfigError(
                    f"{name}: {len(frame):,} rows do not fit in an Excel sheet "
                    f"({EXCEL_MAX_ROWS:,} at most); export as csv or parquet instead"
                )
        book = output_file(out, example=f"{next(iter(tables), 'export')}.xlsx")
        try:
            write_xlsx({k: for_people(v) for k, v in tables.items()}, book)
        except OSError as exc:
            raise cannot_write(book, exc) from None
        return [book]
    if fmt == "json" and len(tables) > 1:
        target = output_file(out, example="export.json")
        doc = {name: _json_records(frame) for name, frame in tables.items()}
        try:
            target.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        except OSError as exc:
            raise cannot_write(target, exc) from None
        return [target]
    if len(tables) == 1:
        targets = {name: output_file(out, example=f"{name}.{fmt}") for name in tables}
    else:
        folder = output_folder(
            out, hint=f" for one {fmt} file per table, or a .xlsx or .json file for one file"
        )
        targets = {name: folder / f"{name}.{fmt}" for name in tables}
    for name, frame in tables.items():
        path = targets[name]
        try:
            if fmt == "csv":
                write_csv(for_people(frame), path, bom=True)
            elif fmt == "parquet":
                frame.to_parquet(path, index=False)
            elif fmt == "json":
                path.write_text(
                    json.dumps(_json_records(frame), ensure_ascii=False, indent=1),
                    encoding="utf-8",
                )
            else:
                frame.to_json(
                    path,
                    orient="records",
                    lines=True,
                    date_format="iso",
                    force_ascii=False,
                    double_precision=15,
                )
        except OSError as exc:
            raise cannot_write(path, exc) from None
    return list(targets.values())
