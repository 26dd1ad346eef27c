"""NPS and CSAT by segment, against hand-computed numbers, scipy and the NPS reference.

The hand-made survey data (segment run ``r1``: A = s1, s2, s3; B = s4, s5; s6 is in no
segment; one anonymous response):

========  ===========================  ===============================================
user      valid NPS                    invalid NPS
========  ===========================  ===============================================
s1        10, 9                        11 (out of range)
s2        7                            "abc" (not a number)
s3        3                            8.5 (not a whole number)
s4        9, "8" (a numeric string)    {} (missing)
s5        0                            {"score": null} (missing)
s6        10, 9.0                      -1 (out of range), NULL properties (missing)
(anon)    6
========  ===========================  ===============================================

CSAT: s1 5, s2 4, s3 4, s4 2, s5 3, s6 5; invalid s1 0 and s2 6 (out of range).
One more NPS answer (s1: 0) lies before 2024-01-01 and only counts without ``since``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segmint.errors import ConfigError, NotFoundError
from segmint.experiments._satisfaction import satisfaction_by_segment
from segmint.experiments._stats import mean_interval, nps_interval
from segmint.store import Store, open_store

SINCE = date(2024, 1, 1)

# (user, survey, properties JSON or None)
RESPONSES = [
    ("s1", "nps", '{"score": 10}'),
    ("s1", "nps", '{"score": 9}'),
    ("s1", "nps", '{"score": 11}'),
    ("s2", "nps", '{"score": 7}'),
    ("s2", "nps", '{"score": "abc"}'),
    ("s3", "nps", '{"score": 3}'),
    ("s3", "nps", '{"score": 8.5}'),
    ("s4", "nps", '{"score": 9}'),
    ("s4", "nps", '{"score": "8"}'),
    ("s4", "nps", "{}"),
    ("s5", "nps", '{"score": 0}'),
    ("s5", "nps", '{"score": null}'),
    ("s6", "nps", '{"score": 10}'),
    ("s6", "nps", '{"score": 9.0}'),
    ("s6", "nps", '{"score": -1}'),
    ("s6", "nps", None),
    (None, "nps", '{"score": 6}'),
    ("s1", "csat", '{"score": 5}'),
    ("s1", "csat", '{"score": 0}'),
    ("s2", "csat", '{"score": 4}'),
    ("s2", "csat", '{"score": 6}'),
    ("s3", "csat", '{"score": 4}'),
    ("s4", "csat", '{"score": 2}'),
    ("s5", "csat", '{"score": 3}'),
    ("s6", "csat", '{"score": 5}'),
]
NPS_ALL = [10, 9, 7, 3, 9, 8, 0, 10, 9, 6]
NPS_A, NPS_B = [10, 9, 7, 3], [9, 8, 0]
CSAT_ALL, CSAT_A, CSAT_B = [5, 4, 4, 2, 3, 5], [5, 4, 4], [2, 3]


def survey_sql() -> str:
    users = ", ".join(f"('s{i}', '2023-06-01 00:00:00+00')" for i in range(1, 7))
    rows = []
    for i, (user, survey, props) in enumerate(RESPONSES):
        u = "NULL" if user is None else f"'{user}'"
        a = "NULL" if user is not None else "'anon-1'"
        p = "NULL" if props is None else f"'{props}'"
        rows.append(f"('q{i}', {u}, {a}, '{survey}', '2024-03-{i + 1:02d} 12:00:00+00', {p})")
    rows.append("('old', 's1', NULL, 'nps', '2023-12-31 23:59:59+00', '{\"score\": 0}')")
    rows.append("('pv', 's1', NULL, 'page_view', '2024-03-01 12:00:00+00', '{\"score\": 1}')")
    return (
        f"INSERT INTO users (user_id, created_at) VALUES {users};\n"
        "INSERT INTO events (event_id, user_id, anonymous_id, event, ts, properties) VALUES "
        + ", ".join(rows)
        + ";"
    )


RUN_SQL = """
INSERT INTO segment_runs (run_id, segmentation, method, created_at, as_of, n_users) VALUES
    ('r1', 'toy', 'rules', '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00', 5);
INSERT INTO segment_assignments (run_id, user_id, segment) VALUES
    ('r1', 's1', 'A'), ('r1', 's2', 'A'), ('r1', 's3', 'A'), ('r1', 's4', 'B'), ('r1', 's5', 'B');
"""


def fill(store: Store) -> Store:
    with store.transaction():
        store.execute(survey_sql())
    with store.transaction():
        store.execute(RUN_SQL)
    return store


@pytest.fixture()
def surveys(tmp_path: Path) -> Iterator[Store]:
    store = fill(open_store(str(tmp_path / "surveys.duckdb")))
    yield store
    store.close()


def row(result, segment: str, survey: str) -> pd.Series:
    t = result.table
    return t[(t["segment"] == segment) & (t["survey"] == survey)].iloc[0]


def test_table_layout(surveys: Store) -> None:
    res = satisfaction_by_segment(surveys, "r1", since=SINCE)
    assert list(res.table.columns) == [
        "segment",
        "survey",
        "responses",
        "invalid",
        "score",
        "ci_lo",
        "ci_hi",
        "promoters",
        "passives",
        "detractors",
    ]
    assert list(zip(res.table["segment"], res.table["survey"], strict=True)) == [
        ("(all)", "nps"),
        ("(all)", "csat"),
        ("A", "nps"),
        ("A", "csat"),
        ("B", "nps"),
        ("B", "csat"),
    ]
    assert res.segment_run_id == "r1"
    assert res.table.loc[res.table["survey"] == "csat", "promoters"].isna().all()


def test_nps_by_hand_and_against_the_reference(surveys: Store) -> None:
    res = satisfaction_by_segment(surveys, "r1", since=SINCE)
    overall = row(res, "(all)", "nps")
    # 10 valid: promoters 10, 9, 9, 10, 9 (9.0); passives 7, 8; detractors 3, 0, 6
    assert overall[["responses", "promoters", "passives", "detractors"]].tolist() == [
        10,
        5,
        2,
        3,
    ]
    assert overall["score"] == pytest.approx(20.0)
    half = 100 * stats.norm.isf(0.025) * np.sqrt((0.5 + 0.3 - 0.2**2) / 10)
    assert (overall["ci_lo"], overall["ci_hi"]) == pytest.approx((20 - half, 20 + half))
    for segment, scores, nps in (("(all)", NPS_ALL, 20.0), ("A", NPS_A, 25.0), ("B", NPS_B, 0.0)):
        r = row(res, segment, "nps")
        assert r["score"] == pytest.approx(nps)
        assert (r["score"], r["ci_lo"], r["ci_hi"]) == pytest.approx(nps_interval(scores))


def test_csat_mean_with_a_t_interval(surveys: Store) -> None:
    res = satisfaction_by_segment(surveys, "r1", since=SINCE, alpha=0.1)
    for segment, scores in (("(all)", CSAT_ALL), ("A", CSAT_A), ("B", CSAT_B)):
        r = row(res, segment, "csat")
        x = np.array(scores, dtype=float)
        lo, hi = stats.t.interval(0.9, x.size - 1, loc=x.mean(), scale=stats.sem(x))
        assert r["responses"] == x.size
        assert (r["score"], r["ci_lo"], r["ci_hi"]) == pytest.approx((x.mean(), lo, hi), rel=1e-9)
        assert (r["score"], r["ci_lo"], r["ci_hi"]) == pytest.approx(mean_interval(x, 0.1))
    assert row(res, "(all)", "csat")["score"] == pytest.approx(23 / 6)


def test_invalid_scores_are_counted_not_dropped(surveys: Store) -> None:
    res = satisfaction_by_segment(surveys, "r1", since=SINCE)
    assert res.invalid.to_dict("records") == [
        {"survey": "csat", "reason": "out of range", "responses": 2},
        {"survey": "nps", "reason": "missing", "responses": 3},
        {"survey": "nps", "reason": "not a number", "responses": 1},
        {"survey": "nps", "reason": "not a whole number", "responses": 1},
        {"survey": "nps", "reason": "out of range", "responses": 2},
    ]
    assert res.n_invalid == 9
    assert row(res, "(all)", "nps")["invalid"] == 7
    assert row(res, "A", "nps")["invalid"] == 3  # 11, "abc", 8.5
    assert row(res, "B", "nps")["invalid"] == 2  # {} and null
    assert row(res, "A", "csat")["invalid"] == 2  # 0 and 6
    assert row(res, "B", "csat")["invalid"] == 0
    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert out["n_invalid"] == 9 and out["table"][1]["promoters"] is None


def test_period_and_overall_only(surveys: Store) -> None:
    res = satisfaction_by_segment(surveys)  # no run: overall rows only, every date
    assert res.table["segment"].tolist() == ["(all)", "(all)"]
    nps = row(res, "(all)", "nps")
    assert nps["responses"] == 11 and nps["detractors"] == 4  # s1's 0 of 2023 counts too
    march = satisfaction_by_segment(
        surveys, since=datetime(2024, 3, 2, tzinfo=UTC), until=date(2024, 3, 4)
    )  # responses q1 (s1 nps 9) and q2 (s1 nps 11)
    assert march.table[["survey", "responses", "invalid"]].to_dict("records") == [
        {"survey": "nps", "responses": 1, "invalid": 1}
    ]
    one = row(march, "(all)", "nps")
    assert one["score"] == 100.0 and np.isnan(one["ci_lo"])  # one answer: no interval
    assert satisfaction_by_segment(surveys, since=date(2030, 1, 1)).table.empty


def test_bad_arguments(surveys: Store) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        satisfaction_by_segment(surveys, "nope")
    with pytest.raises(ConfigError, match="until"):
        satisfaction_by_segment(surveys, since=date(2024, 2, 1), until=date(2024, 1, 1))
    with pytest.raises(ConfigError, match="alpha"):
        satisfaction_by_segment(surveys, alpha=1.5)


@pytest.mark.postgres
def test_postgres_gives_the_same_answers(surveys: Store, pg_url: str) -> None:
    with fill(open_store(pg_url)) as pg:
        for kwargs in ({"segment_run_id": "r1", "since": SINCE}, {}):
            a = satisfaction_by_segment(surveys, **kwargs)  # type: ignore[arg-type]
            b = satisfaction_by_segment(pg, **kwargs)  # type: ignore[arg-type]
            pd.testing.assert_frame_equal(a.table, b.table)
            pd.testing.assert_frame_equal(a.invalid, b.invalid)
