"""``segmint report``: the self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from segmint.cli._app import app
from segmint.cli._common import JsonOpt, ProjectOpt, console, print_json, spinner
from segmint.cli._common import run as _run


@app.command()
def report(
    project: ProjectOpt = Path("."),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="HTML file (default: report.html).")
    ] = None,
    runs: Annotated[
        list[str] | None,
        typer.Option("--run", help="Segmentation name or run id to show (repeatable)."),
    ] = None,
    sample: Annotated[int, typer.Option(help="Users drawn in each projection scatter.")] = 5000,
    as_json: JsonOpt = False,
) -> None:
    """Write the self-contained HTML report (opens offline; no CDN, no network)."""
    from segmint import open_project

    def go() -> Any:
        return _write_report(open_project(project), out, runs, sample, quiet=as_json)

    res = _run(go)
    if as_json:
        print_json(
            {
                "path": str(res.path),
                "size_bytes": res.size_bytes,
                "seconds": round(res.seconds, 3),
                "run_ids": res.run_ids,
                "as_of": res.as_of,
                "sections": res.sections,
            }
        )
        return
    console.print(
        f"report: {res.path} ({res.size_bytes / 2**20:.1f} MiB, {res.seconds:.1f} s; "
        f"runs {', '.join(res.run_ids)})"
    )


def _write_report(
    p: Any, out: Path | None, runs: list[str] | None, sample: int, quiet: bool = False
) -> Any:
    from segmint.report import build_report

    with (
        p,
        spinner(disable=quiet) as progress,
    ):
        task = progress.add_task("report", total=None)
        return build_report(
            p,
            out,
            runs=runs or None,
            sample=sample,
            callback=lambda stage: progress.update(task, description=f"report: {stage}"),
        )
