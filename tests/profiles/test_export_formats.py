"""``segmint export ... -o FILE``: the extension decides the format, CSV opens in Excel
with non-ASCII text (UTF-8 with a BOM), numbers are rounded for people in csv and xlsx and
kept whole in parquet and json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pytest
from tests.profiles._lists_project import CITIES, NAMES, ORDERS, write_shop
from typer.testing import CliRunner

from segmint.cli import app

BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shop(tmp_path_factory.mktemp("shop"))


def _cli(*args: str | Path):  # noqa: ANN202 - click's Result
    return CliRunner().invoke(app, [str(a) for a in args])


def _read(path: Path) -> pd.DataFrame:
    """A written export read back with the reader of its real format."""
    suffix = path.suffix
    if suffix == ".csv":
        return pd.read_csv(path, encoding="utf-8-sig")
    if suffix == ".xlsx":
        return pd.read_excel(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".json":
        return pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
    return pd.read_json(path, lines=True)


@pytest.mark.parametrize("ext", ["csv", "xlsx", "parquet", "json", "jsonl"])
def test_the_extension_decides_the_format(shop: Path, tmp_path: Path, ext: str) -> None:
    out = tmp_path / f"profiles.{ext}"
    res = _cli("export", "profiles", "-o", out, "-p", shop, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"paths": [str(out)]}
    head = out.read_bytes()[:4]
    assert zipfile.is_zipfile(out) == (ext == "xlsx")  # xlsx is a zip, never CSV text
    assert (head == b"PAR1") == (ext == "parquet")
    assert head.startswith(BOM) == (ext == "csv")
    frame = _read(out)
    assert sorted(frame["user_id"]) == sorted(NAMES)
    assert dict(zip(frame["user_id"], frame["city"], strict=True)) == CITIES


def test_an_unknown_extension_is_exit_2_listing_the_choices(shop: Path, tmp_path: Path) -> None:
    for name in ("profiles.xls", "profiles.txt"):
        res = _cli("export", "profiles", "-o", tmp_path / name, "-p", shop)
        assert res.exit_code == 2, res.output
        text = " ".join(res.output.split())
        assert "does not write" in text and ".csv, .xlsx, .parquet, .json, .jsonl" in text
        assert not (tmp_path / name).exists()


def test_a_format_that_contradicts_the_extension_is_exit_2(shop: Path, tmp_path: Path) -> None:
    res = _cli("export", "profiles", "-o", tmp_path / "p.xlsx", "-f", "csv", "-p", shop)
    assert res.exit_code == 2, res.output
    assert "names a .xlsx file but --format csv was given" in " ".join(res.output.split())
    assert not (tmp_path / "p.xlsx").exists()
    # agreeing is fine
    assert (
        _cli("export", "profiles", "-o", tmp_path / "p.xlsx", "-f", "xlsx", "-p", shop).exit_code
        == 0
    )


def test_without_extension_every_export_defaults_to_csv(shop: Path, tmp_path: Path) -> None:
    res = _cli("export", "profiles", "-o", tmp_path / "profiles", "-p", shop)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "profiles.csv").read_bytes().startswith(BOM)
    res = _cli("export", "personas", "spend", "-o", tmp_path / "personas", "-p", shop)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "personas" / "overview.csv").read_bytes().startswith(BOM)
    res = _cli("export", "segment", "spend", "-o", tmp_path / "members", "-p", shop)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "members.csv").read_bytes().startswith(BOM)


def test_several_tables_in_one_csv_file_is_exit_2(shop: Path, tmp_path: Path) -> None:
    res = _cli("export", "personas", "spend", "-o", tmp_path / "p.csv", "-p", shop)
    assert res.exit_code == 2, res.output
    assert "do not fit in one csv file" in " ".join(res.output.split())
    res = _cli("export", "personas", "spend", "-o", tmp_path / "p.json", "-p", shop)
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "p.json").read_text(encoding="utf-8"))
    assert set(doc) >= {"overview", "features"} and len(doc["overview"]) == 2


def test_csv_has_a_bom_and_round_trips_chinese_names(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "contacts.csv"
    res = _cli("export", "segment", "spend", "-o", out, "--purpose", "marketing", "-p", shop)
    assert res.exit_code == 0, res.output
    raw = out.read_bytes()
    assert raw.startswith(BOM) and "张伟".encode() in raw
    from segmint._spreadsheet import restore_frame

    back = restore_frame(pd.read_csv(out, encoding="utf-8-sig", dtype=str))
    assert list(back.columns) == ["user_id", "email", "phone", "name", "segment"]
    assert dict(zip(back["user_id"], back["name"], strict=True)) == {
        u: NAMES[u] for u in ("u1", "u4", "u6")
    }
    assert set(back["segment"]) == {"大客户", "others"}


def test_xlsx_reads_back_with_openpyxl(shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "contacts.xlsx"
    res = _cli("export", "segment", "spend", "-o", out, "--purpose", "marketing", "-p", shop)
    assert res.exit_code == 0, res.output
    ws = openpyxl.load_workbook(out)["segment"]
    rows = [[c.value for c in r] for r in ws.iter_rows()]
    assert rows[0] == ["user_id", "email", "phone", "name", "segment"]
    names = {r[0]: r[3] for r in rows[1:]}
    assert names == {u: NAMES[u] for u in ("u1", "u4", "u6")}
    formula = next(c for r in ws.iter_rows() for c in r if c.value == NAMES["u6"])
    assert formula.data_type == "s"  # text, never a live formula


def _spend(user: str) -> float:
    return sum(a for _, u, _, a in ORDERS if u == user)


def test_numbers_are_rounded_for_people_and_whole_in_parquet(shop: Path, tmp_path: Path) -> None:
    for ext in ("csv", "xlsx", "parquet"):
        assert _cli("export", "profiles", "-o", tmp_path / f"p.{ext}", "-p", shop).exit_code == 0
    for ext in ("xlsx", "json"):
        res = _cli("export", "personas", "spend", "-o", tmp_path / f"o.{ext}", "-p", shop)
        assert res.exit_code == 0, res.output
    csv = pd.read_csv(tmp_path / "p.csv", encoding="utf-8-sig").set_index("user_id")
    xl = pd.read_excel(tmp_path / "p.xlsx").set_index("user_id")
    pq = pd.read_parquet(tmp_path / "p.parquet").set_index("user_id")
    for frame in (csv, xl):  # money to cents
        assert frame.loc["u1", "monetary"] == 120.56  # 100.5 + 20.055
        assert frame.loc["u4", "monetary"] == 0.33  # 1/3
        assert frame.loc["u6", "monetary"] == 100.0  # 100.004
    assert pq.loc["u4", "monetary"] == pytest.approx(1 / 3, rel=1e-15)  # full precision
    assert pq.loc["u6", "monetary"] == pytest.approx(100.004, rel=1e-15)
    # a share to 4 significant digits: the big spenders' share of revenue
    total = sum(a for *_, a in ORDERS)
    share = sum(_spend(u) for u in ("u1", "u2", "u6")) / total
    overview = pd.read_excel(tmp_path / "o.xlsx", sheet_name="overview").set_index("segment")
    assert overview.loc["大客户", "revenue_share"] == round(share, 4)  # 0.8962
    raw = pd.DataFrame(
        json.loads((tmp_path / "o.json").read_text(encoding="utf-8"))["overview"]
    ).set_index("segment")
    assert raw.loc["大客户", "revenue_share"] == pytest.approx(share, rel=1e-12)


def test_libreoffice_opens_the_csv_and_the_workbook(shop: Path, tmp_path: Path) -> None:
    """Excel's open-source twin reads the names (``make test`` installs it, as it does
    Chromium). Headless LibreOffice reads a CSV in the system's ANSI code page whatever
    its byte order mark (its import dialog would ask); Excel takes UTF-8 from the mark,
    which the BOM test above checks. So the CSV is opened with the UTF-8 filter here, and
    the workbook as it is."""
    soffice = shutil.which("soffice")
    assert soffice is not None, "soffice (LibreOffice) is missing: run `make office`"
    for ext in ("csv", "xlsx"):
        out = tmp_path / f"c.{ext}"
        res = _cli("export", "segment", "spend", "-o", out, "--purpose", "marketing", "-p", shop)
        assert res.exit_code == 0, res.output
        conv = tmp_path / ext
        infilter = ["--infilter=CSV:44,34,76,1"] if ext == "csv" else []
        subprocess.run(
            [
                soffice,
                "--headless",
                *infilter,
                "--convert-to",
                "html",
                "--outdir",
                str(conv),
                str(out),
            ],
            check=True,
            capture_output=True,
            timeout=120,
            env={**os.environ, "HOME": str(tmp_path)},  # its profile, not the user's
        )
        html = (conv / "c.html").read_text(encoding="utf-8", errors="replace")
        assert "张伟" in html and "Zoë Ærø" in html
