"""``segmint export profiles|personas|segment|audience|log``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from segmint.cli._common import CountOpt, JsonOpt, ProjectOpt, console, print_json, print_result
from segmint.cli._common import run as _run
from segmint.errors import ConfigError

export_app = typer.Typer(
    help="Export profiles, personas and member lists (CSV, Excel, Parquet, JSON); the log.",
    no_args_is_help=True,
)


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
    print_result(paths, as_json, _print_wrote, to_json=lambda paths: {"paths": paths})


def _print_wrote(paths: list[Path]) -> None:
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
    print_result(rec, as_json, _print_list_record, to_json=lambda rec: rec.to_dict())


def _print_list_record(rec: Any) -> None:
    """The list written, how many users, and who was left out and why."""
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
    from segmint.campaigns import DEFAULT_CONTROL, DEFAULT_TREATMENT

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
    from segmint.cli._common import show_time

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
