"""``segmint init``, ``ingest``, ``status`` and ``quarantine``: a project and its loads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from segmint.cli._app import app
from segmint.cli._common import (
    JsonOpt,
    ProjectOpt,
    _rows,
    _shown,
    cli_actor,
    console,
    fail,
    print_json,
    spinner,
)
from segmint.cli._common import run as _run
from segmint.errors import ConfigError, SegmintError

TEMPLATE = """\
# segmint.yaml — see docs/configuration.md for every key.
project: {name}
store: segmint.duckdb          # a DuckDB file here, or postgresql://user@host/db
timezone: UTC                  # timezone of naive timestamps in your files
currency: USD                  # when orders carry no currency
sources:
  customers:
    type: csv                  # csv | parquet | jsonl | postgres | query
    path: data/customers.csv
    table: users               # users | items | orders | order_items | events | consents
    columns:                   # our name: your column
      user_id: customer_id
      created_at: signup_date
      email: email
  orders:
    type: csv
    path: data/orders.csv
    table: orders
    columns:
      order_id: order_id
      user_id: customer_id
      ts: ordered_at
      amount: total
cleaning: {{}}
"""


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Project folder to create.")] = Path("."),
    force: Annotated[bool, typer.Option(help="Overwrite an existing segmint.yaml.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a project folder with a commented segmint.yaml to edit."""
    target = path / "segmint.yaml"
    if target.exists() and not force:
        raise fail(f"{target} exists; use --force to overwrite", 2)

    def write() -> None:
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} is a file; give the folder to create the project in")
        path.mkdir(parents=True, exist_ok=True)
        target.write_text(TEMPLATE.format(name=path.resolve().name), encoding="utf-8")

    _run(write)
    if as_json:
        print_json({"path": target.resolve(), "project": path.resolve().name})
        return
    console.print(f"wrote {target}; edit its sources, then run: segmint ingest -p {path}")


_COUNTS = ("read", "accepted", "rejected", "field issues", "inserted", "updated", "unchanged")


def _print_loads(results: list[Any]) -> None:
    results = [x for r in results for x in r.all_results()]  # with the retries they set off
    t = Table(title="loads (read = accepted + rejected; field issues are on accepted rows)")
    for col in ("source", "table", *_COUNTS, "top rejection reasons"):
        t.add_column(col, justify="right" if col in _COUNTS else "left")
    for r in results:
        reasons = ", ".join(f"{k} {v:,}" for k, v in list(r.rejected_by_rule.items())[:3])
        if r.skipped:
            reasons = f"unchanged since {r.load_id}; skipped (--force reloads)"
        t.add_row(
            Text(r.source + (" (retry)" if r.retry_of else "")),
            r.table,
            f"{r.rows_read:,}",
            f"{r.rows_accepted:,}",
            f"{r.rows_rejected:,}",
            f"{r.field_issues:,}",
            f"{r.rows_inserted:,}",
            f"{r.rows_updated:,}",
            f"{r.rows_unchanged:,}",
            Text(reasons),
        )
    console.print(t)
    for r in results:  # a source mapping part of a table leaves the rest of stored rows alone
        if r.keeps_columns and r.rows_updated + r.rows_unchanged:
            console.print(f"{r.source}: {_partial_note(r)} on existing {r.table}", markup=False)
    for r in results:
        if r.field_issues:
            fields = ", ".join(f"{k} {v:,}" for k, v in r.field_issues_by_field.items())
            n_null = r.field_issues - r.field_issues_kept
            done = [f"{_rows(n_null, 'value')} set to NULL on new rows"] if n_null else []
            if r.field_issues_kept:  # on a stored row a bad value does not erase a good one
                done.append(
                    f"{_rows(r.field_issues_kept, 'value')} kept the stored value on existing rows"
                )
            console.print(
                f"{r.source}: {_rows(r.field_issues, 'bad optional value')} ({fields}): "
                f"{', '.join(done)}; see: segmint quarantine {r.table}",
                markup=False,
            )
        if r.retry_of:
            console.print(_retry_note(r), markup=False)


def _retry_note(r: Any) -> str:
    """'orders: 12 rows held for a missing user came in after users changed'."""
    from segmint.store import TABLES

    if r.retry_error:
        return (
            f"{r.source}: its rows held for a missing reference were not retried after "
            f"{r.retry_of} changed ({r.retry_error}); they stay held: fix the source, then "
            f"segmint ingest -s {r.source} --force"
        )

    cols = [c for c, (t, _) in TABLES[r.table].references.items() if t == r.retry_of]
    what = "a missing " + (cols[0].removesuffix("_id") if cols else r.retry_of)
    note = (
        f"{r.source}: {_rows(r.rows_accepted)} held for {what} came in after {r.retry_of} changed"
    )
    held = r.rejected_by_rule.get("unknown_reference", 0)
    if held:
        note += f"; {_rows(held)} still held"
    other = r.rows_rejected - held
    if other:
        note += f"; {_rows(other)} rejected for another reason (see segmint quarantine {r.table})"
    return note


def _partial_note(r: Any) -> str:
    if len(r.updates_columns) <= len(r.keeps_columns):
        return f"updates only {', '.join(r.updates_columns) or 'no column'}"
    return f"keeps {', '.join(r.keeps_columns)} as stored (not mapped)"


def _print_committed(committed: list[Any], exc: SegmintError, as_json: bool) -> None:
    """The loads that committed before a later source failed (the error follows on
    stderr); in JSON, with the error and its exit code."""
    if as_json:
        out = {
            "committed": [r.to_dict() for r in committed],
            "error": str(exc),
            "exit_code": exc.exit_code,
        }
        print_json(out)
    else:
        _print_loads(committed)


def _ingest(project: Any, sources: list[str] | None, force: bool, as_json: bool) -> list[Any]:
    if as_json:
        return project.ingest(sources, force=force)
    with spinner() as progress:
        task = progress.add_task("ingesting", total=None)

        def cb(source: str, stage: str) -> None:
            progress.update(task, description=f"{source}: {stage}")

        return project.ingest(sources, force=force, callback=cb)


@app.command()
def ingest(
    project: ProjectOpt = Path("."),
    source: Annotated[list[str] | None, typer.Option("--source", "-s", help="Only these.")] = None,
    force: Annotated[bool, typer.Option(help="Reload even unchanged files.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit 3 if any row was quarantined.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load sources into the store: validate every row, quarantine rejects, record the load."""
    from segmint import open_project

    def go() -> list[Any]:
        with open_project(project) as p:
            try:
                return _ingest(p, source, force, as_json)
            except SegmintError as exc:
                if exc.committed:  # earlier sources stand: show them before the error
                    _print_committed(list(exc.committed), exc, as_json)
                raise

    results = _run(go)
    if as_json:
        print_json([r.to_dict() for r in results])
    else:
        _print_loads(results)
    if strict and any(x.rows_rejected for r in results for x in r.all_results()):
        raise typer.Exit(3)


def _print_status(report: dict[str, Any]) -> None:
    t = Table(title="data quality")
    for col in (
        "table",
        "rows",
        "duplicate keys",
        "most missing",
        "outliers (3xIQR)",
        "date range",
    ):
        t.add_column(col)
    for name, e in report["tables"].items():
        missing = sorted(e["missing_pct"].items(), key=lambda kv: -kv[1])[:3]
        miss = ", ".join(f"{k} {v:g}%" for k, v in missing if v > 0) or "none"
        outl = ", ".join(f"{k} {v['n']:,}" for k, v in e["outliers"].items()) or "-"
        dr = e["date_range"]
        dates = f"{dr['min'][:10]} .. {dr['max'][:10]}" if dr and dr["min"] else "-"
        t.add_row(name, f"{e['rows']:,}", f"{e['duplicate_keys']:,}", miss, outl, dates)
    console.print(t)
    ti = Table(title="referential integrity")
    ti.add_column("child")
    ti.add_column("parent")
    ti.add_column("orphans", justify="right")
    for r in report["integrity"]:
        ti.add_row(r["child"], r["parent"], f"{r['orphans']:,}")
    console.print(ti)
    if report["quarantine"]:
        tq = Table(title="quarantine by reason (as it is now; segmint quarantine shows rows)")
        for col in ("source", "table", "kind", "rule", "rows"):
            tq.add_column(col, justify="right" if col == "rows" else "left")
        for r in report["quarantine"]:
            kind = "field issue" if r["kind"] == "field_issue" else r["kind"]
            tq.add_row(Text(r["source"]), r["target_table"], kind, r["rule"], f"{r['n']:,}")
        console.print(tq)


@app.command()
def status(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Show the data-quality report: rows, missing %, duplicates, outliers, integrity, dates."""
    from segmint import open_project

    def go() -> dict[str, Any]:
        with open_project(project) as p:
            return p.status()

    report = _run(go)
    if as_json:
        print_json(report)
    else:
        _print_status(report)


def _personal_keys(project: Any) -> set[str]:
    """Source column names that feed a personal column, per the project's mappings."""
    from segmint.store import TABLES

    keys: set[str] = set()
    for source in project.config.sources.values():
        table = TABLES[source.table]
        for target, ref in source.columns.items():
            if target in table.column_names and table.column(target).pii:
                keys.add(str(ref))
    return keys | {c.name for t in TABLES.values() for c in t.columns if c.pii}


def _masked(project: Any, examples: Any) -> Any:
    """``examples`` with personal values shown by their shape (raw rows parsed as JSON)."""
    import json

    from segmint._redact import redact_values, shape_of
    from segmint.store import open_vault

    vault = open_vault(project.store, project.config)
    keys = _personal_keys(project)

    def personal(key: str) -> bool:
        return key in keys or vault.is_personal(key)

    def row(raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        try:
            obj = json.loads(raw)
        except ValueError:
            return redact_values(raw)
        if not isinstance(obj, dict):
            return redact_values(raw)
        masked = {
            k: shape_of(v) if v is not None and personal(str(k))
            else redact_values(v) if isinstance(v, str) else v
            for k, v in obj.items()
        }  # fmt: skip
        return json.dumps(masked, ensure_ascii=False)

    out = examples.copy()
    out["raw"] = out["raw"].map(row)
    field_personal = out["field"].map(lambda f: bool(f) and personal(str(f)))
    out["raw_value"] = [
        shape_of(v)
        if fp and isinstance(v, str)
        else (redact_values(v) if isinstance(v, str) else v)
        for v, fp in zip(out["raw_value"], field_personal, strict=True)
    ]
    return out


def _audit_reveal(project: Any, examples: Any) -> None:
    """``--reveal``: who saw which quarantined rows in clear, in the audit log."""
    from segmint.store import append_audit

    with project.store.transaction():
        append_audit(project.store, cli_actor(), "personal.read", "quarantine",
                     why="segmint quarantine --reveal", rows=len(examples),
                     loads=sorted(set(map(str, examples["load_id"]))))  # fmt: skip


@app.command("quarantine")
def quarantine_cmd(
    table: Annotated[
        str | None, typer.Argument(help="Only rows meant for this table (users, orders, ...).")
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only this rule (e.g. unknown_reference)."),
    ] = None,
    n: Annotated[int, typer.Option("-n", min=0, help="Example rows to show.")] = 10,
    reveal: Annotated[
        bool,
        typer.Option(
            "--reveal",
            help="Show personal values (e-mails, phones, names...) in clear: recorded in the "
            "audit log. By default they show their shape only (xxx@xxxx.xx, +99 999).",
        ),
    ] = False,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show the quarantine as it is now: counts by table, source and reason, and example
    rows with their reasons and raw values. Rejected rows were not loaded; field issues
    are bad values of loaded rows: set to NULL on a new row, the stored value kept on an
    existing one. Personal values are shown by their shape unless --reveal."""
    from segmint import open_project

    def go() -> tuple[Any, Any]:
        with open_project(project) as p:
            summary = p.quarantine_summary(table=table, reason=reason)
            examples = p.quarantine(table=table, reason=reason).head(n)
            if reveal and len(examples):
                _audit_reveal(p, examples)
            elif len(examples):
                examples = _masked(p, examples)
            return summary, examples

    summary, examples = _run(go)
    if as_json:
        print_json({"summary": summary.to_dict("records"), "examples": examples.to_dict("records")})
        return
    if summary.empty:
        what = f"with reason {reason} " if reason else ""
        where = f"in {table}" if table else "in any table"
        console.print(f"no rejected rows or field issues {what}{where}", markup=False)
        return
    ts = Table(
        title="quarantine (rejected: not loaded; field issue: value set to NULL or kept as stored)"
    )
    for col in ("table", "source", "kind", "rule", "rows"):
        ts.add_column(col, justify="right" if col == "rows" else "left")
    for r in summary.itertuples(index=False):
        kind = "field issue" if r.kind == "field_issue" else r.kind
        ts.add_row(r.target_table, Text(r.source), kind, r.rule, f"{int(r.n):,}")
    console.print(ts)
    if not len(examples):
        return
    te = Table(title=f"{_rows(len(examples), 'example')} of {int(summary['n'].sum()):,}")
    for col in ("table", "row", "kind", "field", "reason", "raw"):
        te.add_column(col, justify="right" if col == "row" else "left", overflow="fold")
    for r in examples.itertuples(index=False):
        raw = r.raw_value if r.kind == "field_issue" else r.raw
        te.add_row(
            r.target_table,
            f"{int(r.row):,}",
            "field issue" if r.kind == "field_issue" else r.kind,
            Text(r.field or ""),
            Text(_shown(r.reason, 120)),
            Text(_shown(raw)),
        )
    console.print(te)
