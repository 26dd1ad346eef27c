"""What every ``segmint`` command module shares: the consoles, the common options and the
one way a :class:`~segmint.errors.SegmintError` ends a command (one line on stderr, the
error's exit code)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from segmint.errors import SegmintError

# Wide enough for the tables when output goes to a pipe or a CI log.
console = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Folder holding segmint.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def run(fn: Any) -> Any:
    """Call ``fn()``; a SegmintError becomes one red line on stderr and its exit code."""
    try:
        return fn()
    except SegmintError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
