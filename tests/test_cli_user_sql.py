"""User SQL through the command line: one clear line and a documented exit code, never a
traceback, whether the expression is refused when checked or fails when computed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import make_project
from typer.testing import CliRunner

from segmint.cli import app


def _invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(res: Any, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    text = " ".join(res.output.split())
    assert text.startswith("error:"), res.output
    assert "Traceback" not in res.output
    for needle in needles:
        assert needle in text, (needle, res.output)


@pytest.mark.parametrize(
    ("expr", "needles"),
    [
        (
            "max(CAST(status AS INT))",
            ["feature 'broken' failed when computed", "CAST(status AS INT)"],
        ),
        ("max(date_diff('secret', ts, ts))", ["unit 'secret' of date_diff", "feature 'broken'"]),
        ("max(" + "(" * 300 + "amount" + ")" * 300 + ")", ["nested 301 deep", "at most 20"]),
        ("max(CAST(traits AS VARCHAR))", ["column traits (personal data"]),
    ],
)
def test_a_bad_custom_feature_ends_segment_with_one_line(
    tmp_path: Path, expr: str, needles: list[str]
) -> None:
    make_project(
        tmp_path,
        extra={
            "features": {
                "custom": {
                    "broken": {"expr": expr, "table": "users" if "traits" in expr else "orders"}
                }
            },
            "segmentations": {"rfm": {"type": "rfm"}},
        },
    )
    assert _invoke("ingest", "-p", tmp_path).exit_code == 0
    _one_line_error(_invoke("segment", "-p", tmp_path), 2, *needles)


def test_a_rule_failing_on_a_value_ends_segment_with_one_line(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        files={"users.csv": "id,signup,sex\nu1,2024-01-01,f\n"},
        sources={
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {"user_id": "id", "created_at": "signup", "gender": "sex"},
            }
        },
        extra={
            "segmentations": {
                "vip": {
                    "type": "rules",
                    "rules": [{"segment": "odd", "when": "CAST(gender AS INT) > 1"}],
                }
            }
        },
    )
    assert _invoke("ingest", "-p", tmp_path).exit_code == 0
    _one_line_error(
        _invoke("segment", "vip", "-p", tmp_path),
        2,
        "rule 1 ('odd') of segmentation 'vip' failed when run",
        "CAST(gender AS INT) > 1",
    )


def test_a_statement_in_a_source_expression_ends_ingest_with_one_line(tmp_path: Path) -> None:
    make_project(tmp_path)
    cfg = (tmp_path / "segmint.yaml").read_text(encoding="utf-8")
    (tmp_path / "segmint.yaml").write_text(
        cfg.replace(
            "amount: amt",
            'amount: {expr: "1) AS a FROM _raw; DROP TABLE users; SELECT (1"}',
        ),
        encoding="utf-8",
    )
    res = _invoke("ingest", "-p", tmp_path)
    _one_line_error(res, 2, "source 'sales': a column expression is invalid: ';'")
    # a configuration mistake: checked before any load, so no source was loaded
    assert "committed" not in res.output
    status = _invoke("status", "-p", tmp_path, "--json")
    assert '"users"' in status.output  # still there
    assert json.loads(status.output)["tables"]["users"]["rows"] == 0
