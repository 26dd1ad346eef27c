"""Which prediction run is "the latest" - the one profiles, rules, personas, the report and
``/v1/decide`` read: the run with the latest as-of date, then the newest. A back-test made
today as of an earlier date is kept and can be read by its id, but it does not replace
the current values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from tests.value_runs import build_demo

import segmint
from segmint.predict import VALUE_COLUMNS, predict_clv


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[segmint.Project]:
    p = build_demo(Path(tmp_path_factory.mktemp("latest")) / "shop", n_users=1_500, seed=4,
                   segmentations=["rfm"])  # fmt: skip
    yield p
    p.close()


def test_a_back_dated_run_does_not_replace_the_current_values(shop: segmint.Project) -> None:
    p = shop
    current = predict_clv(p.store, p.config.predict)
    back = predict_clv(p.store, p.config.predict, as_of=date(2026, 6, 1), holdout=False)
    assert back.created_at >= current.created_at and back.as_of < current.as_of
    # the newest by creation is listed first, and readable by its id ...
    assert p.prediction_runs("clv")["run_id"].iloc[0] == back.run_id
    assert p.prediction_run(back.run_id).as_of == back.as_of
    # ... but the latest is the one as of the latest date
    assert p.prediction_run("clv").run_id == current.run_id
    values = p.predictions().set_index("user_id")["clv"].dropna()
    mine = current.scores.set_index("user_id")["clv"]
    assert len(values) == len(mine)
    assert (values.loc[mine.index] - mine).abs().max() < 1e-9
    # a profile reads the current run too
    user = str(mine.idxmax())
    assert p.profile(user).value["clv_run_id"] == current.run_id


def test_a_rerun_at_the_same_date_replaces_it(shop: segmint.Project) -> None:
    p = shop
    first = p.prediction_run("clv")
    again = predict_clv(p.store, p.config.predict, as_of=first.as_of, holdout=False)
    assert p.prediction_run("clv").run_id == again.run_id != first.run_id


def test_an_excel_export_says_what_the_run_is(shop: segmint.Project, tmp_path: Path) -> None:
    """The workbook opens in Excel with the scores as numbers and a second sheet naming
    the run, its as-of date, settings, currency and what each column means; CSV stays one
    table."""
    import openpyxl

    p = shop
    run = p.prediction_run("clv")
    (book_path,) = p.export_predictions("clv", tmp_path / "clv.xlsx")
    book = openpyxl.load_workbook(book_path)
    assert book.sheetnames == ["predictions", "about"]
    scores = list(book["predictions"].iter_rows(values_only=True))
    assert scores[0] == ("user_id", *VALUE_COLUMNS["clv"]) and len(scores) == run.n_users + 1
    assert all(isinstance(v, int | float) for v in scores[1][1:])
    about = dict(list(book["about"].iter_rows(values_only=True))[1:])
    assert about["run"] == run.run_id and about["kind"] == "clv"
    assert about["as of"] == f"{run.as_of:%Y-%m-%d}" and about["customers"] == run.n_users
    assert about["horizon (days)"] == 365 and about["currency"] == "EUR"
    assert about["purchase model"] == "BG/NBD"
    assert "discounted at 0.1 a year (EUR)" in about["clv"]
    (csv_path,) = p.export_predictions("clv", tmp_path / "clv.csv")
    assert csv_path.is_file() and not (tmp_path / "about.csv").exists()
