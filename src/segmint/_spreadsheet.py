"""Spreadsheet files a marketer can open safely: CSV and xlsx without live formulas.

Excel, LibreOffice and Google Sheets run a cell whose text starts with ``=``, ``+``,
``-`` or ``@`` as a formula (and tab or carriage return can hide such a start), so a
customer named ``=HYPERLINK("http://x","y")`` would become a live link in an export. As
OWASP recommends for CSV injection, every text cell starting with one of those characters
is written with a leading single quote in CSV, which the spreadsheet then shows as text.
In xlsx the cell is a string cell (never evaluated) with Excel's quote prefix, so it shows
exactly the text and stays text when edited. Numbers and dates are not text: they keep
their types (``-12.5`` in a numeric column stays a number).

Every CSV or xlsx writer of the package goes through this module (profiles and personas
exports, the campaign file channel). It sits below the layers and imports no segmint
module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
# Characters an xlsx file cannot hold (openpyxl refuses them): shown as U+FFFD instead.
_ILLEGAL_XLSX = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def neutralise(value: Any) -> Any:
    """A text value with a quote before a formula start; any other value unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return QUOTE + value
    return value


def restore(value: Any) -> Any:
    """The value :func:`neutralise` was given, from what it returned (a file read back)."""
    if isinstance(value, str) and value.startswith(QUOTE) and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def neutralise_row(values: Iterable[Any]) -> list[Any]:
    """One CSV row, its text cells neutralised."""
    return [neutralise(v) for v in values]


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or isinstance(series.dtype, pd.StringDtype | pd.CategoricalDtype)


def _formula_like(series: pd.Series) -> pd.Series:
    """True where a text cell starts like a formula (vectorised; non-text cells: False)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    return series.str.startswith(FORMULA_STARTS, na=False).astype(bool)


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are neutralised."""
    out = frame.copy()
    for name in frame.columns:
        col = frame[name]
        if not _is_text(col):
            continue
        mask = _formula_like(col)
        if mask.any():
            fixed = col.astype(object)
            fixed[mask] = QUOTE + fixed[mask].astype(str)
            out[name] = fixed
    out.columns = [neutralise(c) for c in frame.columns]
    return out


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` (text read back from a neutralised CSV) as it was before."""
    out = frame.copy()
    for name in frame.columns:
        col = frame[name]
        if not _is_text(col):
            continue
        mask = col.str.startswith(QUOTE, na=False) & _formula_like(col.str[1:])
        if mask.any():
            fixed = col.astype(object)
            fixed[mask] = fixed[mask].str[1:]
            out[name] = fixed
    out.columns = [restore(c) for c in frame.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | Path, *, bom: bool = False) -> None:
    """Write ``frame`` as UTF-8 CSV with its text cells neutralised; ``bom=True`` starts the
    file with a byte-order mark, without which Excel reads UTF-8 as the machine's legacy
    code page (accents and Chinese names garbled)."""
    neutralise_frame(frame).to_csv(path, index=False, encoding="utf-8-sig" if bom else "utf-8")


def write_xlsx(sheets: Mapping[str, pd.DataFrame], path: str | Path) -> None:
    """Write one workbook with a sheet per frame (names cut to Excel's 31 characters).

    Text cells are string cells, never formulas: those that start like a formula carry
    Excel's quote prefix. Characters an xlsx cannot hold (control characters other than
    tab, line feed and carriage return) are replaced by U+FFFD.
    """
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            clean = frame.copy()
            text = [j for j, c in enumerate(frame.columns) if _is_text(frame[c])]
            for j in text:
                col = frame.iloc[:, j]
                col = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
                if col.str.contains(_ILLEGAL_XLSX, na=False).any():
                    replaced = col.str.replace(_ILLEGAL_XLSX, "\ufffd", regex=True)
                    clean.isetitem(j, replaced.where(replaced.notna(), col).to_numpy())
            clean.to_excel(writer, sheet_name=name[:31], index=False)
            sheet = writer.sheets[name[:31]]
            for j, c in enumerate(frame.columns):
                if isinstance(c, str) and c.startswith(FORMULA_STARTS):
                    _as_text(sheet.cell(row=1, column=j + 1), c)
            for j in text:
                col = clean.iloc[:, j]
                for i in _formula_like(col).to_numpy().nonzero()[0]:
                    _as_text(sheet.cell(row=int(i) + 2, column=j + 1), str(col.iat[int(i)]))


def _as_text(cell: Any, value: str) -> None:
    """Make an openpyxl cell a plain string cell with the quote prefix."""
    cell.value = value
    cell.data_type = "s"
    cell.quotePrefix = True
