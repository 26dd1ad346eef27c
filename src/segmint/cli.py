"""The ``segmint`` command line (Typer + Rich). Holds no business logic: it calls the
library and draws the results.

Exit codes: 0 success; 1 a run failed (load rolled back, store error); 2 a usage or
configuration error (bad segmint.yaml, unknown source, missing file); 3 ``--strict`` and
some rows were quarantined; 4 ``segmint evaluate`` found a sample ratio mismatch.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from segmint._cli_common import CountOpt, JsonOpt, ProjectOpt, console, err, fail, print_json
from segmint._cli_common import run as _run
from segmint.errors import ConfigError, SegmintError

app = typer.Typer(
    name="segmint",
    help="From raw customer data to measured, personalized marketing.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, pwsh)
)


def _version(value: bool) -> None:
    if value:
        from segmint import __version__

        console.print(f"segmint {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """From raw customer data to measured, personalized marketing."""


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


def _rows(n: int, what: str = "row") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


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
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
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


def _shown(value: Any, width: int = 60) -> str:
    """A raw value for a terminal: control and bidirectional characters escaped, cut to
    ``width`` characters."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    # line breaks, tabs, other control characters and bidirectional overrides (all
    # non-printable) are shown as escapes: a value cannot break or reorder the table
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


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
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show the quarantine as it is now: counts by table, source and reason, and example
    rows with their reasons and raw values. Rejected rows were not loaded; field issues
    are bad values of loaded rows: set to NULL on a new row, the stored value kept on an
    existing one."""
    from segmint import open_project

    def go() -> tuple[Any, Any]:
        with open_project(project) as p:
            return (
                p.quarantine_summary(table=table, reason=reason),
                p.quarantine(table=table, reason=reason).head(n),
            )

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


segments_app = typer.Typer(
    help="Inspect and compare stored segmentation runs.", no_args_is_help=True
)
app.add_typer(segments_app, name="segments")
export_app = typer.Typer(
    help="Export profiles, personas and member lists (CSV, Excel, Parquet, JSON); the log.",
    no_args_is_help=True,
)
app.add_typer(export_app, name="export")
recommend_app = typer.Typer(
    help="Recommendations: evaluate the models, then write top-N for every user.",
    invoke_without_command=True,
)
app.add_typer(recommend_app, name="recommend")


def _add_campaign_apps() -> None:
    from segmint.campaigns._cli import campaign_app, playbook_app
    from segmint.experiments._cli import register

    app.add_typer(campaign_app, name="campaign")
    app.add_typer(playbook_app, name="playbook")
    register(app, campaign_app)


_add_campaign_apps()


def _pct_or_num(v: Any, rate: bool) -> str:
    if v is None:
        return "—"
    return f"{float(v):.1%}" if rate else _num(float(v))


def _print_supervised_result(r: Any) -> None:
    """A tree's leaves or a propensity model's groups: rule, users, share, rate, lift."""
    d, m = r.details, r.metrics
    rows = d.get("leaves") or d.get("groups") or []
    rate = d.get("target_kind") != "number"
    what = "rate" if rate else "mean"
    t = Table(title=f"{r.segmentation} ({r.method}) — run {r.run_id}")
    t.caption = f"target: {d.get('target', '?')}"
    t.add_column("segment")
    t.add_column("rule", overflow="fold")
    t.add_column("users", justify="right")
    t.add_column("share", justify="right")
    t.add_column(f"target {what}", justify="right")
    t.add_column("95% interval", justify="right")
    t.add_column("lift", justify="right")
    t.add_column(f"holdout {what}", justify="right")
    for row in rows:
        lo, hi = row.get("rate_lo"), row.get("rate_hi")
        t.add_row(
            row["segment"],
            _shown(row.get("rule") or r.rules.get(row["segment"], ""), 200),
            f"{row['n_users']:,}",
            _pct_or_num(row.get("share"), True),
            _pct_or_num(row.get("rate"), rate),
            f"{_pct_or_num(lo, rate)} – {_pct_or_num(hi, rate)}",
            "—" if row.get("lift") is None else f"{row['lift']:.2f}",
            _pct_or_num(row.get("holdout_rate"), rate),
        )
    console.print(t)
    base = _pct_or_num(m.get("base_rate"), rate)
    line = f"  base {what} {base} over {m.get('n_target', 0):,} users with a target"
    if m.get("auc_holdout") is not None:
        line += f"; holdout AUC {m['auc_holdout']:.3f} ({m.get('n_holdout', 0):,} users)"
        if m.get("auc_train") is not None:
            line += f", training AUC {m['auc_train']:.3f}"
    if m.get("r2_holdout") is not None:
        line += f"; holdout R² {m['r2_holdout']:.3f} ({m.get('n_holdout', 0):,} users)"
    console.print(line)
    if d.get("calibration"):
        cal = Table(title="calibration on the holdout")
        for col in ("group", "holdout users", "mean predicted", "observed"):
            cal.add_column(col, justify="left" if col == "group" else "right")
        for c in d["calibration"]:
            cal.add_row(
                c["segment"],
                f"{c['n_holdout']:,}",
                _pct_or_num(c["predicted"], True),
                _pct_or_num(c["observed"], True),
            )
        console.print(cal)
    if d.get("importances"):
        top = ", ".join(f"{i['label']} {i['auc_drop']:+.3f}" for i in d["importances"][:10])
        console.print(f"  importance (AUC drop when shuffled): {top}")
    if d.get("features_dropped"):
        dropped = "; ".join(f"{k}: {v}" for k, v in d["features_dropped"].items())
        console.print(f"  left out: {dropped}")
    for w in d.get("warnings") or []:
        err.print(f"warning: {w}")


def _print_segment_result(r: Any) -> None:
    if r.method in ("tree", "propensity"):
        _print_supervised_result(r)
        return
    names = r.details.get("names", {})
    t = Table(title=f"{r.segmentation} ({r.method}) — run {r.run_id}")
    t.add_column("segment")
    if names:
        t.add_column("cluster")
    t.add_column("users", justify="right")
    t.add_column("share", justify="right")
    t.add_column("revenue share", justify="right")
    if r.rules:
        t.add_column("rule")
    m = r.metrics
    for seg, n in m["sizes"].items():
        row = [seg]
        if names:
            row.append(names.get(seg, ""))
        row += [f"{n:,}", f"{m['shares'][seg]:.1%}", f"{m['revenue_share'][seg]:.1%}"]
        if r.rules:
            row.append(r.rules.get(seg, ""))
        t.add_row(*row)
    console.print(t)
    quality = {
        k: m[k]
        for k in ("silhouette", "calinski_harabasz", "davies_bouldin", "sse", "stability")
        if k in m and m[k] is not None
    }
    if quality:
        console.print(
            "  quality: " + ", ".join(f"{k} {_num(float(v))}" for k, v in quality.items())
        )
    if "decision" in r.details:
        console.print(f"  k selection: {r.details['decision']}")
    if "fidelity" in r.details:
        console.print(f"  surrogate tree fidelity: {r.details['fidelity']:.1f}%")


def _result_json(r: Any) -> dict[str, Any]:
    return {
        "run_id": r.run_id,
        "segmentation": r.segmentation,
        "method": r.method,
        "as_of": str(r.as_of),
        "feature_run_id": r.feature_run_id,
        "params": r.params,
        "metrics": r.metrics,
        "rules": r.rules,
        "details": r.details,
    }


@app.command()
def segment(
    names: Annotated[list[str] | None, typer.Argument(help="Segmentations (default: all).")] = None,
    project: ProjectOpt = Path("."),
    as_of: Annotated[str | None, typer.Option(help="'latest', 'today' or YYYY-MM-DD.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compute features, run segmentations and store each as a versioned run."""
    from segmint import open_project

    def go() -> list[Any]:
        with (
            open_project(project) as p,
            Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
                disable=as_json,
            ) as progress,
        ):
            task = progress.add_task("computing features", total=None)
            run = p.compute_features(as_of=as_of)
            out = p.segment(
                names or None,
                feature_run=run,
                callback=lambda n: progress.update(task, description=f"segment {n}"),
            )
            return out if isinstance(out, list) else [out]

    results = _run(go)
    if as_json:
        print_json([_result_json(r) for r in results])
        return
    for r in results:
        _print_segment_result(r)


@segments_app.command("list")
def segments_list(
    project: ProjectOpt = Path("."),
    segmentation: Annotated[str | None, typer.Option(help="Only this segmentation.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List stored segmentation runs, newest first."""
    from segmint import open_project

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            return p.segment_runs(segmentation), p.config.timezone

    runs, tz = _run(go)
    if as_json:
        print_json(runs)
        return
    if runs.empty:
        which = f" of {segmentation!r}" if segmentation else ""
        console.print(
            f"no segmentation runs{which} in the store yet: `segmint segment` computes the "
            "features and runs the segmentations of segmint.yaml"
        )
        return
    from segmint._cli_common import show_time

    t = Table(title=f"segment runs (newest first; times in {tz})")
    for c in runs.columns:
        t.add_column(c, overflow="fold")
    for row in runs.itertuples(index=False):
        t.add_row(
            *[
                show_time(v, tz)
                if c == "created_at"
                else show_time(v)  # as-of cut-offs are UTC days
                if c == "as_of"
                else str(v)
                for c, v in zip(runs.columns, row, strict=True)
            ]
        )
    console.print(t)


@segments_app.command("show")
def segments_show(
    run: Annotated[str, typer.Argument(help="Run id or segmentation name (its latest run).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Show one run: sizes, shares, revenue shares, rules and quality metrics."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.segment_run(run)

    r = _run(go)
    if as_json:
        print_json(_result_json(r))
    else:
        _print_segment_result(r)


@segments_app.command("diff")
def segments_diff(
    run_a: Annotated[str, typer.Argument(help="Earlier run id (or segmentation name).")],
    run_b: Annotated[str, typer.Argument(help="Later run id (or segmentation name).")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Migration matrix: how many users moved from each segment of A to each of B."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.segments_diff(run_a, run_b)

    m = _run(go)
    if as_json:
        print_json(m.to_dict(orient="index"))
        return
    t = Table(title=f"{m.index.name} -> {m.columns.name}")
    t.add_column("from \\ to")
    for c in m.columns:
        t.add_column(str(c), justify="right")
    for idx, row in m.iterrows():
        t.add_row(str(idx), *[f"{v:,}" for v in row])
    console.print(t)
    moved, total = _moved(m)
    console.print(f"  {moved:,} of {total:,} users changed segment")


def _moved(matrix: Any) -> tuple[int, int]:
    """(users who changed segment, all users) of a migration matrix."""
    total = int(matrix.to_numpy().sum())
    same = matrix.stack()
    stayed = int(same[same.index.get_level_values(0) == same.index.get_level_values(1)].sum())
    return total - stayed, total


def _pct(v: Any) -> str:
    return "" if v is None or v != v else f"{float(v):.0%}"


def _num(v: Any) -> str:
    """A number for reading: whole numbers grouped, others to 4 significant digits."""
    from segmint._i18n import language

    if v is None or v != v:
        return "-"
    if hasattr(v, "item") and not isinstance(v, str):
        v = v.item()
    if isinstance(v, float) and not v.is_integer():
        return language(_LOCALE[0]).number(v, digits=4)
    return language(_LOCALE[0]).integer(v) if isinstance(v, int | float) else str(v)


_LOCALE = ["en", "UTC"]
"""The locale and time zone of the project a command opened (set by the commands that
format numbers and times)."""


@app.command()
def profile(
    user_id: Annotated[str, typer.Argument(help="The user's id, as stored.")],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One user's profile: attributes, features, categories, channels, segments, consent."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            _LOCALE[:] = [p.config.locale, p.config.timezone]
            return p.profile(user_id)

    pr = _run(go)
    if as_json:
        print_json(pr.to_dict())
        return
    a = pr.attributes
    console.print(
        f"[bold]{escape(pr.user_id)}[/]  "
        + "  ".join(
            f"{k}: {escape(str(a[k]))}"
            for k in ("gender", "age", "country", "city", "acquisition_channel", "email")
            if a.get(k) is not None
        ),
        markup=True,
    )
    from segmint._cli_common import show_time

    tz = _LOCALE[1]
    console.print(
        f"  signed up {show_time(a.get('created_at'), tz) or 'unknown'}; features as of "
        f"{show_time(pr.as_of)} ({pr.feature_run_id})"  # as-of cut-offs are UTC days
    )
    f = pr.features
    t = Table(title="behaviour and transactions", show_header=False)
    t.add_column("feature")
    t.add_column("value", justify="right")
    for k in (
        "recency_days",
        "frequency",
        "monetary",
        "avg_order_value",
        "tenure_days",
        "orders_90d",
        "spend_365d",
        "refund_rate",
        "discount_share",
        "last_active_days",
        "events_30d",
        "sessions_30d",
        "offline_share",
        "app_share",
    ):
        if k in f:
            t.add_row(k, _num(f[k]))
    console.print(t)
    if not pr.favourite_categories.empty:
        console.print(
            "  favourite categories: "
            + ", ".join(f"{r.category} {r.share:.0%}" for r in pr.favourite_categories.itertuples())
        )
    for kind, mix in pr.channel_mix.items():
        if mix:
            console.print(
                f"  {kind} by channel: "
                + ", ".join(f"{c} {v['count']:,} ({v['share']:.0%})" for c, v in mix.items())
            )
    s = Table(title="segments")
    for c in ("segmentation", "segment", "detail", "run"):
        s.add_column(c)
    for r in pr.segments.itertuples():
        s.add_row(
            r.segmentation,
            r.segment,
            "" if r.detail is None or r.detail != r.detail else str(r.detail),
            r.run_id,
        )
    console.print(s)
    if pr.consents.empty:
        console.print("  consent: none recorded (nothing may be sent)")
    else:
        console.print(
            "  consent: "
            + ", ".join(
                f"{r.channel}/{r.purpose} {'granted' if r.granted else 'denied'}"
                for r in pr.consents.itertuples()
            )
        )


def _print_persona(p: Any) -> None:
    console.print(
        f"\n[bold]{escape(p.segment)}[/] — {p.n_users:,} user{'' if p.n_users == 1 else 's'} "
        f"({p.user_share:.1%}), "
        f"{p.revenue_share:.1%} of revenue  [dim]{escape(p.segmentation)} run {p.run_id}[/]",
        markup=True,
    )
    console.print(f"  {p.summary}")
    t = Table(title="most distinguishing features (standardized difference)")
    for c in (
        "feature",
        "median",
        "population median",
        "mean",
        "population mean",
        "ratio",
        "std diff",
    ):
        t.add_column(c, justify="left" if c == "feature" else "right")
    from segmint._labels import feature_label

    for name, r in p.distinguishing.iterrows():
        t.add_row(
            feature_label(str(name)),
            _num(r["median"]),
            _num(r["population_median"]),
            _num(r["mean"]),
            _num(r["population_mean"]),
            _num(r["ratio"]),
            f"{r['std_diff']:+.2f}",
        )
    console.print(t)
    if not p.top_categories.empty:
        console.print(
            "  top categories: "
            + ", ".join(
                f"{r.category} {r.share:.0%} (x{r.index:.1f})"
                for r in p.top_categories.itertuples()
            )
        )
    if not p.top_items.empty:
        console.print(
            "  top items: "
            + ", ".join(
                f"{r.title or r.item_id} ({r.buyers:,} buyers)" for r in p.top_items.itertuples()
            )
        )
    for dim, frame in p.demographics.items():
        console.print(
            f"  {dim}: "
            + ", ".join(
                f"{r.value} {r.share:.0%} (all {r.population_share:.0%})"
                for r in frame.head(4).itertuples()
            )
        )
    if not p.lifecycle.empty:
        console.print(
            "  lifecycle: "
            + ", ".join(f"{r.value} {r.share:.0%}" for r in p.lifecycle.itertuples())
        )


@app.command()
def persona(
    segmentation: Annotated[str, typer.Argument(help="Segmentation name (latest run) or run id.")],
    segment: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Who the people in a segment are, against the whole population."""
    from segmint import open_project

    def go() -> list[Any]:
        with open_project(project) as p:
            _LOCALE[0] = p.config.locale
            return [p.persona(segmentation, segment)] if segment else p.personas(segmentation)

    found = _run(go)
    if as_json:
        print_json([x.to_dict() for x in found])
        return
    for x in found:
        _print_persona(x)


FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="csv, xlsx, parquet, json or jsonl; only when -o has no extension (default csv).",
    ),
]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out", "-o", help="File to write; its extension (.csv .xlsx .parquet .json .jsonl) "
        "sets the format."
    ),
]  # fmt: skip
PurposeOpt = Annotated[
    str | None,
    typer.Option(
        "--purpose",
        help="Write user ids and contacts (email, phone, name) for this consent purpose "
        "(e.g. marketing): only users who granted it; without it, pseudonymous ids.",
    ),
]


def _command_line(ctx: typer.Context) -> str:
    """The running command as it would be typed (recorded with each export; -p and --json
    left out): the subcommands, the arguments, then the options given."""
    root = ctx.find_root().info_name or ""
    words = ctx.command_path[len(root) :].split()
    args, opts = [], []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if value is None or value is False or param.name in ("project", "as_json"):
            continue
        if param.param_type_name == "argument":
            args.append(str(value))
        else:
            opts += [param.opts[0]] + ([] if value is True else [str(value)])
    return " ".join(["segmint", *words, *args, *opts])


def _print_paths(paths: list[Path], as_json: bool) -> None:
    if as_json:
        print_json({"paths": paths})
        return
    for path in paths:
        console.print(f"wrote {path}")


@export_app.command("profiles")
def export_profiles(
    ctx: typer.Context,
    out: OutOpt,
    fmt: FormatOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """One row per user: attributes (contacts masked), features, latest segments."""
    from segmint import open_project

    def go() -> list[Path]:
        with open_project(project) as p:
            return p.export_profiles(out, fmt, command=_command_line(ctx))

    _print_paths(_run(go), as_json)


@export_app.command("personas")
def export_personas(
    ctx: typer.Context,
    segmentation: Annotated[str, typer.Argument(help="Segmentation name (latest run) or run id.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="A .xlsx or .json file, or a folder (one file per table)."
        ),
    ],
    fmt: FormatOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Personas of a run: overview, features, categories, items, demographics, lifecycle."""
    from segmint import open_project

    def go() -> list[Path]:
        with open_project(project) as p:
            return p.export_personas(segmentation, out, fmt, command=_command_line(ctx))

    _print_paths(_run(go), as_json)


def _print_list_export(rec: Any, as_json: bool) -> None:
    if as_json:
        print_json(rec.to_dict())
        return
    what = "user ids and contacts" if rec.contact else "pseudonymous ids"
    console.print(f"wrote {rec.path}: {rec.n_rows:,} users ({what}); recorded as {rec.export_id}")
    from segmint._i18n import language

    en = language("en")
    for reason, n in rec.excluded.items():
        if n:
            console.print(
                f"  left out: {en.n('{n} user', '{n} users', n)}, {reason} for {rec.purpose!r}"
            )


@export_app.command("segment")
def export_segment(
    ctx: typer.Context,
    segmentation: Annotated[
        str, typer.Argument(help="Segmentation name (latest run), run id or its unique start.")
    ],
    out: OutOpt,
    segment: Annotated[str | None, typer.Argument(help="One segment (default: all).")] = None,
    fmt: FormatOpt = None,
    purpose: PurposeOpt = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """The members of a segment as a list for other tools (pseudonymous unless --purpose)."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.export_segment(
                segmentation,
                out,
                segment=segment,
                fmt=fmt,
                purpose=purpose,
                command=_command_line(ctx),
            )

    _print_list_export(_run(go), as_json)


def _audience_arm(control: bool, arm: str | None) -> str:
    """The arm ``export audience`` writes: --arm, --control, else every treated arm."""
    from segmint.campaigns._config import DEFAULT_CONTROL, DEFAULT_TREATMENT
    from segmint.errors import ConfigError

    if control and arm is not None:
        raise ConfigError("--control and --arm: give one (--arm NAME picks any arm)")
    if arm is not None:
        return arm
    return DEFAULT_CONTROL if control else DEFAULT_TREATMENT


@export_app.command("audience")
def export_audience(
    ctx: typer.Context,
    campaign: Annotated[
        str, typer.Argument(help="Campaign name (its latest plan), plan run id or its start.")
    ],
    out: OutOpt,
    fmt: FormatOpt = None,
    purpose: PurposeOpt = None,
    control: Annotated[
        bool, typer.Option("--control", help="The control group instead of the treatment.")
    ] = False,
    arm: Annotated[
        str | None,
        typer.Option(
            "--arm", help="One arm of the plan (a variant's name) instead of every treated arm."
        ),
    ] = None,
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """A campaign's audience as a list for other tools (pseudonymous unless --purpose)."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            return p.export_audience(
                campaign,
                out,
                fmt=fmt,
                purpose=purpose,
                arm=_audience_arm(control, arm),
                command=_command_line(ctx),
            )

    _print_list_export(_run(go), as_json)


@export_app.command("log")
def export_log(
    project: ProjectOpt = Path("."),
    n: CountOpt = 20,
    as_json: JsonOpt = False,
) -> None:
    """Every export recorded in the store, newest first: when, who, what, why, how many."""
    from segmint import open_project
    from segmint._cli_common import show_time

    def go() -> tuple[Any, str]:
        with open_project(project) as p:
            return p.exports(limit=n), p.config.timezone

    frame, tz = _run(go)
    if as_json:
        print_json(frame)
        return
    if frame.empty:
        console.print("no exports recorded in the store yet (segmint export ... records each)")
        return
    t = Table(title=f"exports (newest first; times in {tz})")
    for c in ("export", "when", "who", "kind", "what", "purpose", "contacts", "rows",
              "left out", "file"):  # fmt: skip
        t.add_column(c, justify="right" if c in ("rows", "left out") else "left", overflow="fold")
    for r in frame.itertuples(index=False):
        what = " / ".join(
            v for v in (r.campaign, r.segmentation, r.segment, r.run_id) if isinstance(v, str)
        )
        t.add_row(
            r.export_id, show_time(r.created_at, tz), str(r.actor or ""), r.kind, what,
            r.purpose if isinstance(r.purpose, str) else "", "yes" if r.contact else "no",
            f"{int(r.n_rows):,}",
            f"{int(r.n_excluded):,}", str(r.path),
        )  # fmt: skip
    console.print(t)


def _print_evaluation(res: Any) -> None:
    t = Table(
        title=f"recommenders on a time split (train before {res.cut:%Y-%m-%d %H:%M}, test "
        f"{(res.test_end - res.cut).days} days from it, {res.n_users:,} "
        f"user{'' if res.n_users == 1 else 's'}, k={res.k})"
    )
    t.add_column("model")
    cols = [c for c in res.table.columns if not c.endswith("_s")]
    for c in cols:
        t.add_column(c, justify="right")
    for model, row in res.table.iterrows():
        name = Text(str(model), style="bold" if model == res.best else "")
        t.add_row(name, *[f"{row[c]:.4f}" for c in cols])
    console.print(t)
    gain = res.gain_over_popularity
    console.print(
        f"  best: {res.best}"
        + (f" (+{gain:.0%} NDCG@{res.k} over global popularity)" if gain is not None else "")
        + f"; run {res.run_id}"
    )


@recommend_app.callback()
def recommend(
    ctx: typer.Context,
    project: ProjectOpt = Path("."),
    model: Annotated[
        str, typer.Option(help="'best' (latest evaluation) or a model name.")
    ] = "best",
    user: Annotated[str | None, typer.Option(help="Show one user's stored list.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="Items per user.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Write top-N for every user to the store (a versioned run), or show one user's list."""
    if ctx.invoked_subcommand is not None:
        return
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            if user is not None:
                return p.recommend(user, n)
            run = p.recommend_all(model, n=n)
            return run

    out = _run(go)
    if user is not None:
        if as_json:
            print_json(out)
        elif out.empty:
            console.print(
                f"no recommendations stored for user {user}: `segmint recommend` writes them "
                "for every user (is the id right? see `segmint profile USER_ID`)"
            )
        else:
            t = Table(title=f"recommendations for {user}")
            for c in out.columns:
                t.add_column(str(c))
            for row in out.itertuples(index=False):
                t.add_row(*[str(v) for v in row])
            console.print(t)
        return
    info = {k: v for k, v in vars(out).items() if not k.startswith("_")}
    if as_json:
        print_json(info)
    else:
        t = Table(title="recommendation run", show_header=False)
        t.add_column("")
        t.add_column("", overflow="fold")
        for k, v in info.items():
            number = isinstance(v, int | float) and not isinstance(v, bool)
            t.add_row(k.replace("_", " "), _num(v) if number else str(v))
        console.print(t)


@recommend_app.command("evaluate")
def recommend_evaluate(
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
    cut: Annotated[
        str | None,
        typer.Option(
            "--cut",
            metavar="DATE",
            help="Train on interactions before DATE (YYYY-MM-DD, midnight UTC); default: "
            "recommend.cut, else test-days before the newest activity.",
        ),
    ] = None,
    test_days: Annotated[
        int | None,
        typer.Option(
            "--test-days",
            metavar="N",
            min=1,
            help="Test on completed purchases in the N days from the cut (recommend.test_days).",
        ),
    ] = None,
    binary: Annotated[
        bool | None,
        typer.Option(
            "--binary/--weighted",
            help="Every (user, item) interaction counts 1, or as weighted by event_weights "
            "and quantity (recommend.binary).",
        ),
    ] = None,
    repurchases: Annotated[
        bool | None,
        typer.Option(
            "--repurchases/--no-repurchases",
            help="Already bought items may be recommended and count as hits when bought "
            "again in the test window (recommend.exclude_purchased: false).",
        ),
    ] = None,
) -> None:
    """Compare every recommender on a time split; the best one is recorded."""
    from segmint import open_project

    def go() -> Any:
        with open_project(project) as p:
            update: dict[str, Any] = {}
            if binary is not None:
                update["binary"] = binary
            if repurchases is not None:
                update["exclude_purchased"] = not repurchases
            settings = p.config.recommend
            try:
                config = type(settings).model_validate({**settings.model_dump(), **update})
            except ValueError as exc:  # pydantic's ValidationError
                raise ConfigError(f"recommend settings: {exc}") from None
            return p.evaluate_recommenders(cut=cut, test_days=test_days, config=config)

    res = _run(go)
    if as_json:
        print_json(res.table.to_dict(orient="index"))
    else:
        _print_evaluation(res)


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
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=quiet,
        ) as progress,
    ):
        task = progress.add_task("report", total=None)
        return build_report(
            p,
            out,
            runs=runs or None,
            sample=sample,
            callback=lambda stage: progress.update(task, description=f"report: {stage}"),
        )


@app.command()
def demo(
    dir: Annotated[
        Path, typer.Option("--dir", "--project", "-p", help="Where to write the demo project.")
    ] = Path("segmint-demo"),
    users: Annotated[int, typer.Option(help="Number of demo users.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data).")] = 42,
    dirty: Annotated[bool, typer.Option(help="Inject defects at known rates.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate a realistic demo shop, ingest it through the real path and report on it."""
    from segmint import open_project
    from segmint.demo import generate_demo

    def go() -> dict[str, Any]:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        ) as progress:
            progress.add_task(f"generating {users:,} demo users (seed {seed})", total=None)
            summary = generate_demo(dir, n_users=users, seed=seed, dirty=dirty)
        console.print(f"demo exports written to {summary.out_dir}")
        store_file = Path(dir) / "demo.duckdb"
        store_file.unlink(missing_ok=True)  # the demo is rebuilt from its files every time
        with open_project(dir) as p:
            results = _ingest(p, None, True, False)
            _print_loads(results)
            _print_status(p.status())
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            ) as progress:
                task = progress.add_task("computing features", total=None)
                # segments a month earlier too, so that the refresh (and the report) can
                # show who moved since then and which segments drifted
                month_ago = p.compute_features(as_of=_month_before(p))
                p.segment(["rfm", "lifecycle"], feature_run=month_ago)
                progress.update(task, description="refresh: features and segments as of now")
                refreshed = p.refresh(["rfm", "lifecycle", "value", "clusters"])
            segs = [p.segment_run(s.run_id) for s in refreshed.segmentations]
            console.print(
                f"features: run {refreshed.feature_run_id}, {len(segs[0].assignments):,} users as of "
                f"{refreshed.as_of:%Y-%m-%d}"
            )
            for r in segs:
                _print_segment_result(r)
            from segmint.experiments._cli import print_refresh

            console.print(f"refresh (segments as of {month_ago.as_of:%Y-%m-%d} -> now):")
            print_refresh(refreshed)
            with Progress(
                SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
            ) as progress:
                progress.add_task("evaluating recommenders on a time split", total=None)
                evaluation = p.evaluate_recommenders()
                p.recommend_all("best")
            _print_evaluation(evaluation)
            personas = p.personas("clusters")
            for x in personas[:2]:
                console.print(f"persona: {x.summary}")
        from segmint.campaigns import run_demo_campaigns
        from segmint.campaigns._demo import print_summary

        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), console=err, transient=True
        ) as progress:
            task = progress.add_task("campaigns", total=None)
            campaigns = run_demo_campaigns(
                dir, callback=lambda stage: progress.update(task, description=stage)
            )
        print_summary(campaigns, console)
        from segmint.experiments._cli import run_demo_measurement

        run_demo_measurement(dir, list(campaigns.reports))
        res = _write_report(open_project(dir), None, None, 5000, quiet=as_json)
        console.print(f"store: {store_file}  (try: segmint status -p {dir})")
        console.print(
            f"report: {res.path.resolve()} ({res.size_bytes / 2**20:.1f} MiB; "
            "open it in a browser, it works offline)"
        )
        return {
            "path": Path(dir).resolve(),
            "store": store_file.resolve(),
            "report": res.path.resolve(),
            "users": users,
            "seed": seed,
            "feature_run_id": refreshed.feature_run_id,
            "segment_runs": {r.segmentation: r.run_id for r in segs},
            "campaigns": list(campaigns.reports),
        }

    if not as_json:
        _run(go)
        return
    console.quiet = True  # the JSON summary alone on stdout
    try:
        summary = _run(go)
    finally:
        console.quiet = False
    print_json(summary)


def _month_before(p: Any) -> Any:
    from datetime import timedelta

    from segmint.features import default_as_of

    return default_as_of(p.store) - timedelta(days=30)


def main() -> None:
    """Entry point of the ``segmint`` console script."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
