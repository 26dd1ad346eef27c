"""The command line: init, ingest (--json, --strict), status, and its error output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.helpers import default_sources, make_project
from typer.testing import CliRunner

from segmint.cli import app
from segmint.config import load_config

runner = CliRunner()

TABLES = {"users", "items", "orders", "order_items", "events", "consents"}


def _invoke(*args: str):  # noqa: ANN202 - click's Result
    return runner.invoke(app, [str(a) for a in args])


def test_init_writes_a_config_that_loads(tmp_path: Path) -> None:
    target = tmp_path / "shop"
    res = _invoke("init", target)
    assert res.exit_code == 0, res.output
    config = load_config(target)
    assert set(config.sources) == {"customers", "orders"}
    assert config.project == "shop"
    assert config.sources["orders"].table == "orders"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    assert _invoke("init", tmp_path).exit_code == 0
    (tmp_path / "segmint.yaml").write_text("project: mine\n", encoding="utf-8")
    res = _invoke("init", tmp_path)
    assert res.exit_code == 2
    assert "--force" in res.output
    assert (tmp_path / "segmint.yaml").read_text(encoding="utf-8") == "project: mine\n"
    res = _invoke("init", tmp_path, "--force")
    assert res.exit_code == 0
    assert load_config(tmp_path).project == tmp_path.name


def test_ingest_json_prints_parseable_accounting(tmp_path: Path) -> None:
    make_project(tmp_path)
    res = _invoke("ingest", "-p", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    loads = json.loads(res.stdout)
    assert [ld["source"] for ld in loads] == ["people", "sales"]
    for ld in loads:
        assert ld["rows_read"] == ld["rows_accepted"] + ld["rows_rejected"]
    assert [ld["rows_read"] for ld in loads] == [3, 3]


def test_ingest_without_json_draws_a_table(tmp_path: Path) -> None:
    make_project(tmp_path)
    res = _invoke("ingest", "-p", tmp_path)
    assert res.exit_code == 0, res.output
    assert "read = accepted + rejected" in res.stdout


def _dirty_orders(tmp_path: Path) -> None:
    make_project(tmp_path)
    with (tmp_path / "orders.csv").open("a", encoding="utf-8") as f:
        f.write("o4,u9,2024-05-04 10:00:00,1.00,paid\n")  # unknown user: quarantined


def test_strict_exits_3_when_rows_are_quarantined(tmp_path: Path) -> None:
    _dirty_orders(tmp_path)
    res = _invoke("ingest", "-p", tmp_path, "--strict", "--json")
    assert res.exit_code == 3, res.output
    loads = json.loads(res.stdout)  # the results are still printed
    assert sum(ld["rows_rejected"] for ld in loads) == 1


def test_strict_exits_0_when_nothing_is_quarantined(tmp_path: Path) -> None:
    make_project(tmp_path)
    res = _invoke("ingest", "-p", tmp_path, "--strict")
    assert res.exit_code == 0, res.output


def test_status_json_reports_all_six_tables(tmp_path: Path) -> None:
    make_project(tmp_path)
    assert _invoke("ingest", "-p", tmp_path).exit_code == 0
    res = _invoke("status", "-p", tmp_path, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert set(report["tables"]) == TABLES
    assert report["tables"]["users"]["rows"] == 3
    assert report["tables"]["orders"]["rows"] == 3
    assert report["tables"]["events"]["rows"] == 0


@pytest.mark.parametrize("command", ["status", "ingest"])
def test_missing_project_folder_is_a_one_line_error(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "no" / "such" / "project-folder-with-a-rather-long-name"
    res = _invoke(command, "-p", missing)
    assert res.exit_code == 2
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines  # one line, even when the path is long
    assert lines[0].startswith("error:")
    assert "segmint init" in lines[0]
    assert not missing.exists()  # nothing was created


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "segmint.yaml").write_text(
        "project: shop\nstore: s.duckdb\nsources: [unclosed\n", encoding="utf-8"
    )
    res = _invoke("status", "-p", tmp_path)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    flat = res.stderr.replace("\n", "")  # rich may wrap long paths
    assert "segmint.yaml:4" in flat or "segmint.yaml:3" in flat
    assert "not valid YAML" in flat


def test_unknown_key_exits_2_naming_the_file_line_and_key(tmp_path: Path) -> None:
    make_project(tmp_path, extra={"timezon": "UTC"})
    res = _invoke("ingest", "-p", tmp_path)
    assert res.exit_code == 2
    flat = res.stderr.replace("\n", "")
    assert "segmint.yaml:" in flat
    assert "unknown key 'timezon'" in flat and "did you mean 'timezone'" in flat


def test_unknown_source_exits_2(tmp_path: Path) -> None:
    make_project(tmp_path)
    res = _invoke("ingest", "-p", tmp_path, "-s", "nope")
    assert res.exit_code == 2
    assert "no source named 'nope'" in res.stderr.replace("\n", "")


def test_ingest_says_what_a_partial_source_does_to_existing_rows(tmp_path: Path) -> None:
    import yaml

    make_project(tmp_path)
    (tmp_path / "crm.csv").write_text("id,country\nu1,DE\nu2,FR\n", encoding="utf-8")
    doc = yaml.safe_load((tmp_path / "segmint.yaml").read_text(encoding="utf-8"))
    doc["sources"]["crm"] = {
        "type": "csv",
        "path": "crm.csv",
        "table": "users",
        "columns": {"user_id": "id", "country": "country"},
    }
    (tmp_path / "segmint.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert _invoke("ingest", "-p", tmp_path, "-s", "people").exit_code == 0
    res = _invoke("ingest", "-p", tmp_path, "-s", "crm")
    assert res.exit_code == 0, res.output
    assert "crm: updates only country on existing users" in res.stdout
    res = _invoke("ingest", "-p", tmp_path, "-s", "crm", "--force", "--json")
    (load,) = json.loads(res.stdout)
    assert load["updates_columns"] == ["country"] and load["rows_unchanged"] == 2


def _sources_with(**changes: dict) -> dict:
    """make_project's two sources (people -> users, sales -> orders), changed."""
    base = default_sources()
    for name, change in changes.items():
        base[name] = {**base[name], **change}
    return base


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"sales": {"path": "ordres.csv"}},
            "source 'sales': file {root}/ordres.csv does not exist",
        ),
        (
            {
                "sales": {
                    "columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amount"}
                }
            },
            "source 'sales': column(s) 'amount' not found",
        ),
        ({"people": {"encoding": "latin_l"}}, "did you mean 'latin-1'?"),
        (
            {
                "sales": {
                    "columns": {
                        "order_id": "oid",
                        "user_id": "uid",
                        "ts": "t",
                        "amount": {"expr": "amt +"},
                    }
                }
            },
            "a column expression is invalid",
        ),
    ],
    ids=["missing_file", "unknown_column", "unknown_encoding", "bad_expression"],
)
def test_configuration_problems_exit_2(tmp_path: Path, change: dict, expected: str) -> None:
    make_project(tmp_path, sources=_sources_with(**change))
    res = _invoke("ingest", "-p", tmp_path)
    flat = res.stderr.replace("\n", "")
    assert res.exit_code == 2, flat
    assert expected.format(root=tmp_path) in flat
    assert "Traceback" not in res.output


def test_a_missing_file_stops_before_anything_is_loaded(tmp_path: Path) -> None:
    make_project(tmp_path, sources=_sources_with(sales={"path": "ordres.csv"}))
    res = _invoke("ingest", "-p", tmp_path)
    assert res.exit_code == 2
    assert "committed" not in res.stderr
    from segmint import open_project

    with open_project(tmp_path) as p:
        assert p.store.count("users") == 0  # people, loaded first, was not loaded either


def test_a_spark_master_that_is_not_a_url_is_refused_on_the_command_line(
    tmp_path: Path,
) -> None:
    make_project(tmp_path, extra={"engine": "spark", "spark": {"master": "lokal[2]"}})
    res = _invoke("ingest", "-p", tmp_path)
    assert res.exit_code == 2
    flat = " ".join(res.stderr.split())
    assert "spark.master" in flat and "'lokal[2]' is not a Spark master URL" in flat


BAD_SALES = {"columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "total"}}


def test_a_later_source_failing_names_the_committed_ones(tmp_path: Path) -> None:
    make_project(tmp_path, sources=_sources_with(sales=BAD_SALES))
    res = _invoke("ingest", "-p", tmp_path)
    assert res.exit_code == 2
    flat = res.stderr.replace("\n", "")
    assert "error: people was loaded and committed; sales failed: source 'sales': column(s)" in flat
    assert "people" in res.stdout and "users" in res.stdout  # its load, as a table
    from segmint import open_project

    with open_project(tmp_path) as p:
        assert p.store.count("users") == 3  # people's load stands


def test_a_later_source_failing_names_the_committed_ones_in_json(tmp_path: Path) -> None:
    make_project(tmp_path, sources=_sources_with(sales=BAD_SALES))
    res = _invoke("ingest", "-p", tmp_path, "--json")
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert [r["source"] for r in out["committed"]] == ["people"]
    assert out["committed"][0]["rows_accepted"] == 3
    assert out["error"].startswith("people was loaded and committed; sales failed: ")
    assert out["exit_code"] == 2
    # run again: people is unchanged, so it is skipped, and said so
    res = _invoke("ingest", "-p", tmp_path, "--json")
    out = json.loads(res.stdout)
    assert out["committed"][0]["skipped"] is True
    assert out["error"].startswith("people was unchanged (skipped); sales failed: ")
