"""``segmint users``: add, passwd, remove, list, as a data person runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from segmint.cli import app

runner = CliRunner()


def _run(project: Path, *args: str, stdin: str | None = None) -> tuple[int, str]:
    got = runner.invoke(app, [*args, "--project", str(project)], input=stdin)
    return got.exit_code, got.output


def test_a_person_is_added_changed_removed_and_listed(tmp_path: Path) -> None:
    (tmp_path / "segmint.yaml").write_text("project: t\n")
    code, out = _run(tmp_path, "users", "add", "ana", "--role", "editor", "--password-stdin",
                     stdin="correct horse battery\n")  # fmt: skip
    assert code == 0 and "ana can sign in to the workspace as editor" in out
    code, out = _run(tmp_path, "users", "passwd", "ana", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 10 characters" in out
    code, out = _run(tmp_path, "users", "passwd", "ana", "--password-stdin", "--json",
                     stdin="another long secret\n")  # fmt: skip
    assert code == 0 and json.loads(out) == {"name": "ana", "password": "changed"}
    code, out = _run(tmp_path, "users", "remove", "ana")
    assert code == 0 and "ana can no longer sign in" in out
    code, out = _run(tmp_path, "users", "list", "--json")
    people = json.loads(out)
    assert code == 0 and "another long secret" not in out and "correct horse" not in out
    assert [p["name"] for p in people] == ["ana"] and people[0]["disabled_at"]
