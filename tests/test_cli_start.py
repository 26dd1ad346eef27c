"""The ``segmint`` command starts at once (issue 18): importing the CLI, or ``segmint``
itself, imports no heavy library and no layer; they are imported inside the commands."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pandas", "numpy", "scipy", "sklearn", "duckdb", "pyarrow", "sqlglot", "pydantic")
HEAVY += ("yaml", "babel", "jinja2", "plotly", "psycopg", "implicit", "statsmodels")


def _imported_after(statement: str) -> list[str]:
    code = (
        f"import sys, json; {statement}; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules}"
        " | {m for m in sys.modules if m.startswith('segmint.')})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_importing_the_cli_imports_no_heavy_library_and_no_layer() -> None:
    mods = _imported_after("import segmint.cli")
    assert [m for m in HEAVY if m in mods] == []
    layers = [m for m in mods if m.startswith("segmint.") and not m.startswith("segmint.cli")]
    assert layers == ["segmint.errors"]


def test_import_segmint_is_light_and_its_names_load_on_use() -> None:
    assert [m for m in HEAVY if m in _imported_after("import segmint")] == []
    mods = _imported_after("import segmint; segmint.open_project")
    assert "segmint.project" in mods and "pandas" in mods


def test_version_runs_without_the_layers() -> None:
    code = (
        "import sys; sys.argv = ['segmint', '--version']\n"
        "from segmint.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('pandas', 'segmint.project') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["segmint 0.1.0", "[]"]
