"""The normaliser of bench/behaviour_snapshot.py masks what varies between runs and keeps
every figure (the full record/compare takes a minute: it is run by hand, not here)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "bench" / "behaviour_snapshot.py"
_spec = importlib.util.spec_from_file_location("behaviour_snapshot", _PATH)
assert _spec is not None and _spec.loader is not None
snap = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(snap)

DAY = dt.date(2026, 12, 4)


def test_run_ids_and_now_are_masked_numbers_kept() -> None:
    line = (
        "rfm: run s-20261204T073059-rfm-0dd92e vs s-20261204T073058-rfm-700540 — "
        "1,387 of 3,000 users moved; features f-20261204T073058-ff2dcb"
    )
    out = snap.normalise_text(line, day=DAY)
    assert out == (
        "rfm: run s-<TS>-rfm-<HEX> vs s-<TS>-rfm-<HEX> — 1,387 of 3,000 users moved; "
        "features f-<TS>-<HEX>"
    )
    out = snap.normalise_text(
        "outcomes from 2026-12-04 07:31 UTC; data to 2026-10-31 22:56 UTC", day=DAY
    )
    assert out == "outcomes from <NOW>; data to 2026-10-31 22:56 UTC"


def test_aliases_keep_which_run_a_row_belongs_to() -> None:
    aliases = {"s-20261204T073058-rfm-700540": "<segment_runs:rfm/2026-10-02#1>"}
    out = snap.normalise_text(
        "s-20261204T073058-rfm-700540 s-20261204T073059-rfm-0dd92e", aliases=aliases
    )
    assert out == "<segment_runs:rfm/2026-10-02#1> s-<TS>-rfm-<HEX>"


def test_values_floats_json_and_wall_clock() -> None:
    assert snap.normalise_value(0.1 + 0.2) == snap.normalise_value(0.3) == "0.3"
    assert snap.normalise_value(1234.5678901234) == "1234.56789"
    assert snap.normalise_value(1234.56791) != snap.normalise_value(1234.5678901234)
    now = dt.datetime(2026, 12, 4, 7, 31, tzinfo=dt.UTC)
    assert snap.normalise_value(now, day=DAY) == "<NOW>"
    assert snap.normalise_value(dt.date(2026, 10, 31), day=DAY) == "2026-10-31"
    cell = json.dumps({"b": 0.30000000000000004, "fit_s": 0.016, "session_gap_seconds": 1800})
    assert json.loads(snap.normalise_value(cell)) == {
        "b": 0.3,
        "fit_s": "<MASKED>",
        "session_gap_seconds": 1800,
    }
