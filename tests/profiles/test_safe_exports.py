"""Exports a spreadsheet opens safely, written where asked, or a clear error.

Issue 15: a name ``=HYPERLINK(...)`` became a live formula in the profiles workbook (223
formula cells); ``-o`` onto a folder or before any run ended in a traceback.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import segmint
from segmint._spreadsheet import neutralise_frame, restore_frame
from segmint.cli import app

LINK = '=HYPERLINK("http://x","y")'
HOSTILE = [LINK, "+1", "-cmd", "@SUM(A1)", "\tx", "\r=1+1"]

USERS = pd.DataFrame(
    {
        "id": [LINK, "+1", "-cmd", "@SUM(A1)", "plain"],
        "signup": ["2024-01-01 10:00:00"] * 5,
        "city": ["-2+3", "=1+1", "Paris", "@A1", "\tBerlin"],
        "country": ["DE", "FR", "DE", "FR", "DE"],
        "channel": ["@x", "=cmd|' /C calc'!A0", "ads", "seo", "-5"],
    }
)
ITEMS = pd.DataFrame(
    {
        "sku": ["i1", "i2"],
        "title": ['=HYPERLINK("http://evil","click")', "Novel"],
        "category": ["@SUM(A1)", "books"],
        "price": [10.0, 5.0],
    }
)
ORDERS = pd.DataFrame(
    {
        "oid": ["o1", "o2", "o3", "o4"],
        "uid": [LINK, "+1", "-cmd", "@SUM(A1)"],
        "t": ["2024-05-01 10:00:00", "2024-05-02 10:00:00", "2024-05-03 10:00:00", "2024-05-04"],
        "amt": [100.0, 12.5, 60.0, 30.0],
    }
)
LINES = pd.DataFrame(
    {"oid": ["o1", "o2", "o3", "o4"], "sku": ["i1", "i2", "i1", "i2"], "q": [2, 1, 3, 1]}
)


def _write_project(root: Path) -> Path:
    for name, frame in {"users": USERS, "items": ITEMS, "orders": ORDERS, "lines": LINES}.items():
        frame.to_parquet(root / f"{name}.parquet", index=False)
    sources = {
        "people": {
            "type": "parquet",
            "path": "users.parquet",
            "table": "users",
            "columns": {
                "user_id": "id",
                "created_at": "signup",
                "city": "city",
                "country": "country",
                "acquisition_channel": "channel",
            },
        },
        "catalogue": {
            "type": "parquet",
            "path": "items.parquet",
            "table": "items",
            "columns": {
                "item_id": "sku",
                "title": "title",
                "category": "category",
                "price": "price",
            },
        },
        "sales": {
            "type": "parquet",
            "path": "orders.parquet",
            "table": "orders",
            "columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt"},
        },
        "lines": {
            "type": "parquet",
            "path": "lines.parquet",
            "table": "order_items",
            "columns": {"order_id": "oid", "item_id": "sku", "quantity": "q"},
        },
    }
    config = {
        "store": "store.duckdb",
        "timezone": "UTC",
        "sources": sources,
        "features": {
            "as_of": "2024-06-01",
            "custom": {"negative_spend": {"expr": "-sum(amount) - 0.5"}},
        },
        "segmentations": {
            "vip": {
                "type": "rules",
                "rules": [{"segment": LINK, "when": "monetary > 50"}],
                "default": "-rest",
            }
        },
    }
    (root / "segmint.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    p = segmint.open_project(_write_project(tmp_path_factory.mktemp("hostile")))
    p.ingest()
    p.segment(["vip"])
    yield p
    p.close()


def _formula_cells(book: Path) -> list[str]:
    wb = openpyxl.load_workbook(book)
    return [
        f"{ws.title}!{c.coordinate}"
        for ws in wb.worksheets
        for row in ws.iter_rows()
        for c in row
        if c.data_type == "f"
    ]


def _csv_cells(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:  # exports start with a BOM
        return list(csv.reader(f))


# -- formulas neutralised ------------------------------------------------------------------
def test_profiles_csv_escapes_text_that_starts_like_a_formula(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    (path,) = hostile.export_profiles(tmp_path / "p.csv", "csv")
    rows = _csv_cells(path)
    header, body = rows[0], rows[1:]
    ids = [r[header.index("user_id")] for r in body]
    assert ids == ["'+1", "'-cmd", '\'=HYPERLINK("http://x","y")', "'@SUM(A1)", "plain"]
    cities = dict(zip(ids, (r[header.index("city")] for r in body), strict=True))
    assert cities["plain"] == "'\tBerlin" and cities["'+1"] == "'=1+1"
    # every text cell that a spreadsheet would run is quoted; numbers are not text
    starts = ("=", "+", "-", "@", "\t", "\r")
    numeric = {"monetary", "negative_spend", "frequency", "recency_days"}
    for r in body:
        for name, cell in zip(header, r, strict=True):
            if name not in numeric:
                assert not cell.startswith(starts), (name, cell)
    spend = [r[header.index("negative_spend")] for r in body]
    assert "-100.5" in spend  # a negative number stays a number
    assert [r[header.index("segment_vip")] for r in body].count("'" + LINK) == 2
    # and pandas reads the numbers back as numbers
    back = pd.read_csv(path)
    assert back["negative_spend"].dtype == "float64"


def test_profiles_xlsx_has_no_formula_cell_and_shows_the_text(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    (book,) = hostile.export_profiles(tmp_path / "p.xlsx", "xlsx")
    assert _formula_cells(book) == []
    ws = openpyxl.load_workbook(book)["profiles"]
    header = [c.value for c in ws[1]]
    values = {c.value for row in ws.iter_rows(min_row=2) for c in row}
    assert {LINK, "+1", "-cmd", "@SUM(A1)", "=1+1", "=cmd|' /C calc'!A0"} <= values
    link = next(c for row in ws.iter_rows(min_row=2) for c in row if c.value == LINK)
    assert link.data_type == "s" and link.quotePrefix
    # numbers and dates keep their types
    col = {name: i for i, name in enumerate(header)}
    first = [c.value for c in ws[2]]
    assert (
        isinstance(first[col["negative_spend"]], int | float) and first[col["negative_spend"]] < 0
    )
    assert isinstance(first[col["signed_up_at"]], datetime)
    assert isinstance(first[col["monetary"]], int | float)


def test_personas_workbook_and_csv_folder_are_safe(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    (book,) = hostile.export_personas("vip", tmp_path / "vip.xlsx")
    assert _formula_cells(book) == []
    items = pd.read_excel(book, sheet_name="items")
    assert '=HYPERLINK("http://evil","click")' in set(items["title"])
    files = hostile.export_personas("vip", tmp_path / "vip", "csv")
    for f in files:
        for row in _csv_cells(f):
            assert not any(cell.startswith(("=", "@", "\t", "\r")) for cell in row), f


def test_the_cli_export_writes_the_same_safe_workbook(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    out = tmp_path / "cli.xlsx"
    res = CliRunner().invoke(
        app, ["export", "profiles", "-o", str(out), "-f", "xlsx", "-p", str(hostile.root)]
    )
    assert res.exit_code == 0, res.output
    assert _formula_cells(out) == []


def test_neutralise_and_restore_are_inverse_on_text() -> None:
    frame = pd.DataFrame(
        {
            "text": [*HOSTILE, "plain", "'quoted", None],
            "number": [-12.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "cat": pd.Categorical(["=a", "b", "=a", "b", "b", "b", "b", "b", "b"]),
        }
    )
    safe = neutralise_frame(frame)
    assert safe["text"].tolist()[:6] == ["'" + v for v in HOSTILE]
    assert safe["number"].tolist() == frame["number"].tolist()
    assert safe["cat"].tolist()[0] == "'=a"
    back = restore_frame(safe)
    assert back["text"].tolist()[:8] == frame["text"].tolist()[:8]


def test_an_xlsx_export_survives_control_characters(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    from segmint._spreadsheet import write_xlsx

    frame = pd.DataFrame({"name": ["bell\x07", "=x\x00y", "ok"], "n": [1, 2, 3]})
    write_xlsx({"s": frame}, tmp_path / "ctrl.xlsx")
    got = pd.read_excel(tmp_path / "ctrl.xlsx")
    assert got["name"].tolist() == ["bell\ufffd", "=x\ufffdy", "ok"]
    assert _formula_cells(tmp_path / "ctrl.xlsx") == []


# -- -o and the order of commands ---------------------------------------------------------
def _cli(*args: str | Path):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (["export", "profiles"], "out.csv"),
        (["export", "profiles"], "out.xlsx"),
        (["export", "personas", "vip"], "out.xlsx"),
        (["report"], "out.html"),
    ],
)
def test_output_into_a_missing_folder_creates_it(
    hostile: segmint.Project, tmp_path: Path, command: list[str], name: str
) -> None:
    out = tmp_path / "new" / "deeper" / name
    res = _cli(*command, "-o", out, "-p", hostile.root)
    assert res.exit_code == 0, res.output
    assert out.is_file()


@pytest.mark.parametrize(
    "command",
    [
        ["export", "profiles", "-f", "csv"],
        ["export", "profiles", "-f", "xlsx"],
        ["export", "personas", "vip", "-f", "xlsx"],
        ["report"],
    ],
)
def test_output_onto_a_folder_is_a_one_line_error(
    hostile: segmint.Project, tmp_path: Path, command: list[str]
) -> None:
    res = _cli(*command, "-o", tmp_path, "-p", hostile.root)
    assert res.exit_code == 2, res.output
    assert "is a folder, not a file: give a file name, e.g. -o" in res.output
    assert "Traceback" not in res.output


def test_a_folder_export_onto_a_file_is_a_one_line_error(
    hostile: segmint.Project, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("x", encoding="utf-8")
    res = _cli(
        "export", "personas", "vip", "-f", "csv", "-o", tmp_path / "taken", "-p", hostile.root
    )
    assert res.exit_code == 2, res.output
    assert "is a file, not a folder" in res.output


def test_output_under_a_file_is_a_one_line_error(hostile: segmint.Project, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x", encoding="utf-8")
    res = _cli("export", "profiles", "-o", tmp_path / "file" / "p.csv", "-p", hostile.root)
    assert res.exit_code == 2, res.output
    assert "cannot create the folder" in res.output


@pytest.fixture()
def ingested_only(tmp_path: Path) -> Iterator[Path]:
    root = _write_project(tmp_path)
    with segmint.open_project(root) as p:
        p.ingest()
    yield root


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["export", "profiles", "-o", "p.csv"], "no feature run yet: run `segmint segment` first"),
        (["export", "personas", "vip", "-o", "p.xlsx"], "no segment run yet.*`segmint segment`"),
        (["persona", "vip"], "no segment run yet.*run `segmint segment` first"),
    ],
)
def test_exports_before_any_run_say_what_to_run_first(
    ingested_only: Path, command: list[str], message: str
) -> None:
    res = _cli(*command, "-p", ingested_only)
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error:") and len(res.output.strip().splitlines()) <= 3
    import re

    assert re.search(message, " ".join(res.output.split())), res.output


def test_profiles_export_after_features_only_has_no_segment_columns(
    ingested_only: Path, tmp_path: Path
) -> None:
    with segmint.open_project(ingested_only) as p:
        p.compute_features()
        (path,) = p.export_profiles(tmp_path / "p.csv")
    header = _csv_cells(path)[0]
    assert "monetary" in header and not [h for h in header if h.startswith("segment_")]
