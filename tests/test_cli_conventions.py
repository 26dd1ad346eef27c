"""The command line keeps its conventions everywhere: a test walks the whole Typer app."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.main import get_command
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.cli._common import SHORT_OPTIONS, json_value

runner = CliRunner()

# what each short option may stand for: (parameter names allowed)
MEANING = {
    "-p": {"project", "dir"},
    "-n": {"n", "limit"},
    "-o": {"out"},
    "-f": {"fmt"},
    "-s": {"source"},
}
# parameters that must carry the short option of their meaning
MUST = {"project": "-p", "out": "-o", "fmt": "-f", "n": "-n", "limit": "-n"}
# commands that print nothing but their exit code would be listed here; there are none
NO_OUTPUT: set[str] = {"serve"}  # a server: it runs until stopped, its output is a log


def _commands() -> Iterator[tuple[str, object]]:
    """(path, click command) for every leaf command, and for groups that run themselves."""
    import typer.core

    def walk(cmd: object, path: str) -> Iterator[tuple[str, object]]:
        sub = getattr(cmd, "commands", None)
        if sub:
            if getattr(cmd, "invoke_without_command", False) and path:
                yield path, cmd
            for name, child in sub.items():
                yield from walk(child, f"{path} {name}".strip())
        else:
            yield path, cmd

    assert typer.core  # the click implementation typer ships
    yield from walk(get_command(app), "")


COMMANDS = dict(_commands())


def test_the_walk_finds_every_command() -> None:
    assert {"init", "ingest", "demo", "export profiles", "export segment", "export audience",
            "export log", "playbook init", "campaign unsubscribe", "recommend",
            "segments show"} <= set(COMMANDS)  # fmt: skip


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_short_options_mean_the_same_everywhere(path: str) -> None:
    for param in COMMANDS[path].params:  # type: ignore[attr-defined]
        shorts = [o for o in param.opts + param.secondary_opts if re.fullmatch(r"-[a-zA-Z]", o)]
        for short in shorts:
            assert short in SHORT_OPTIONS, f"{path}: {short} is not a documented short option"
            assert param.name in MEANING[short], f"{path}: {short} used for {param.name}"
        if param.name in MUST and param.param_type_name == "option":
            assert MUST[param.name] in param.opts, (
                f"{path}: --{param.name} lacks {MUST[param.name]}"
            )


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - NO_OUTPUT))
def test_every_command_that_prints_results_has_json(path: str) -> None:
    opts = {o for p in COMMANDS[path].params for o in p.opts}  # type: ignore[attr-defined]
    assert "--json" in opts, f"segmint {path} has no --json"


def test_version() -> None:
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.strip() == f"segmint {segmint.__version__}"


def test_shell_completion_is_offered() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    assert "--install-completion" in res.stdout and "--show-completion" in res.stdout


def test_json_times_are_iso_8601_with_an_offset() -> None:
    berlin = timezone(timedelta(hours=1))
    got = json_value(
        {
            "aware": datetime(2026, 1, 2, 3, 4, 5, tzinfo=berlin),
            "naive": datetime(2026, 1, 2, 3, 4, 5),
            "pandas": pd.Timestamp("2026-01-02 03:04:05", tz="UTC"),
            "day": date(2026, 1, 2),
            "missing": pd.NaT,
            "nan": float("nan"),
            "numpy": np.int64(3),
            "path": Path("/x"),
            "frame": pd.DataFrame({"t": [pd.Timestamp("2026-01-02", tz="UTC")]}),
        }
    )
    assert got == {
        "aware": "2026-01-02T03:04:05+01:00",
        "naive": "2026-01-02T03:04:05+00:00",
        "pandas": "2026-01-02T03:04:05+00:00",
        "day": "2026-01-02",
        "missing": None,
        "nan": None,
        "numpy": 3,
        "path": "/x",
        "frame": [{"t": "2026-01-02T00:00:00+00:00"}],
    }
    json.dumps(got)  # and JSON can hold it
    assert datetime.fromisoformat(got["aware"]).astimezone(UTC).hour == 2


CLI_MODULES = tuple(
    f"cli/{p.name}" for p in sorted((Path(segmint.__file__).parent / "cli").glob("*.py"))
)


def test_cli_modules_never_print_a_raw_frame_dict_or_list() -> None:
    import ast

    root = Path(segmint.__file__).parent
    found = []
    for name in CLI_MODULES:
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "to_string":
                found.append(f"{name}:{node.lineno} .to_string()")
            is_print = (isinstance(func, ast.Name) and func.id == "print") or (
                isinstance(func, ast.Attribute) and func.attr == "print"
            )
            raw = (ast.Dict, ast.List, ast.DictComp, ast.ListComp, ast.Set, ast.Tuple)
            if is_print and node.args and isinstance(node.args[0], raw):
                found.append(f"{name}:{node.lineno} prints a {type(node.args[0]).__name__}")
            if is_print and node.args and isinstance(node.args[0], ast.Call):
                inner = node.args[0].func
                if isinstance(inner, ast.Name) and inner.id in ("vars", "repr", "dict", "list"):
                    found.append(f"{name}:{node.lineno} prints {inner.id}(...)")
    assert found == []


def test_empty_results_say_why(tmp_path: Path) -> None:
    from tests.helpers import make_project

    make_project(tmp_path)
    assert runner.invoke(app, ["ingest", "-p", str(tmp_path)]).exit_code == 0
    for args, why in (
        (["segments", "list"], "no segmentation runs in the store yet: `segmint segment`"),
        (["campaign", "list"], "no campaigns in the playbook"),
        (["satisfaction"], "no survey answers in the store"),
        (["export", "log"], "no exports recorded in the store yet"),
    ):
        res = runner.invoke(app, [*args, "-p", str(tmp_path)])
        assert res.exit_code == 0, (args, res.output)
        assert why in " ".join(res.stdout.split()), (args, res.stdout)
        # and --json gives an empty list, not a message
        res = runner.invoke(app, [*args, "-p", str(tmp_path), "--json"])
        assert res.exit_code == 0, (args, res.output)
        doc = json.loads(res.stdout)
        assert doc == [] or doc.get("table") == [] or doc.get("rows") == [], (args, doc)


def test_init_json(tmp_path: Path) -> None:
    res = runner.invoke(app, ["init", str(tmp_path / "shop"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "path": str((tmp_path / "shop" / "segmint.yaml").resolve()),
        "project": "shop",
    }


def test_demo_json_is_one_document_on_stdout(tmp_path: Path) -> None:
    """The whole demo (ingest, segments, campaigns, measurement, report) with --json prints
    its summary alone: nothing else on stdout."""
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "-p", str(out), "--users", "600", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["path"] == str(out.resolve()) and doc["users"] == 600
    assert Path(doc["report"]).is_file() and Path(doc["store"]).is_file()
    assert set(doc["segment_runs"]) == {
        "rfm", "lifecycle", "value", "clv_tiers", "winback", "clusters"
    }  # fmt: skip
    assert set(doc["prediction_runs"]) == {"clv", "churn"}
    res = runner.invoke(app, ["segments", "show", doc["segment_runs"]["rfm"], "-p", str(out)])
    assert res.exit_code == 0 and doc["segment_runs"]["rfm"] in res.stdout  # ids in full
