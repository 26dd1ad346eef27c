"""``segmint campaign ...`` and ``segmint playbook ...``: Typer sub-apps over the library.

Registered in :mod:`segmint.cli` with ``app.add_typer(campaign_app, name="campaign")`` and
``app.add_typer(playbook_app, name="playbook")``. Same conventions as the main CLI: one
line on stderr and the error's exit code for a :class:`~segmint.errors.SegmintError`,
Rich tables, ``--json`` for scripts, ``-p/--project``.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from segmint.cli._common import JsonOpt, ProjectOpt, console, err, fail, print_json, show_time
from segmint.cli._common import run as _run

__all__ = ["campaign_app", "playbook_app"]

campaign_app = typer.Typer(
    help="Plan, preview and send campaigns from the playbook.", no_args_is_help=True
)
playbook_app = typer.Typer(
    help="Write and check the playbook in segmint.yaml.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="Campaign name (playbook.campaigns).")]


def print_plan(plan: Any) -> None:
    """The funnel and the arms of a plan, as Rich tables."""
    t = Table(title=f"{plan.campaign} — plan {plan.run_id} (as of {plan.as_of})")
    t.add_column("step")
    t.add_column("excluded", justify="right")
    t.add_column("remaining", justify="right")
    for r in plan.funnel.itertuples(index=False):
        t.add_row(
            str(r.step), f"{int(r.excluded):,}" if r.excluded else "", f"{int(r.remaining):,}"
        )
    console.print(t)
    if not plan.by_segment.empty:
        s = Table(title=f"arms by segment ({plan.holdout:.0%} holdout)")
        for c in ("segment", "channel", "treatment", "control"):
            s.add_column(c, justify="right" if c in ("treatment", "control") else "left")
        for r in plan.by_segment.itertuples(index=False):
            s.add_row(
                str(r.segment), str(r.channel), f"{int(r.treatment):,}", f"{int(r.control):,}"
            )
        console.print(s)
    if has_variants(plan):
        print_arms(plan)
    console.print(
        f"  {plan.n_treatment:,} to send, {plan.n_control:,} held out "
        f"(segmentation {plan.segmentation}, run {plan.segment_run_id})"
    )
    if plan.baseline is not None:
        for arm, mde in plan.mde.items():
            if mde is None:
                continue
            shown = f"±{mde:.2%} points ({mde / plan.baseline:.0%} relative)"
            console.print(
                f"  detectable change in conversion ({arm} vs control, 80% power, alpha "
                f"0.05): {shown} on a {plan.baseline:.2%} baseline (last 30 days)",
                markup=False,
                soft_wrap=True,
            )
    for w in plan.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", soft_wrap=True, markup=True)


def has_variants(plan: Any) -> bool:
    """Whether a plan's arms are other than the classic treatment and control."""
    from segmint.campaigns import DEFAULT_CONTROL, DEFAULT_TREATMENT

    return bool((set(plan.split) | set(plan.n_by_arm)) - {DEFAULT_TREATMENT, DEFAULT_CONTROL})


def print_arms(plan: Any) -> None:
    """Users per arm against the designed split."""
    t = Table(title="arms")
    for c in ("arm", "", "design", "users", "share"):
        t.add_column(c, justify="left" if c in ("arm", "") else "right")
    total = sum(plan.n_by_arm.values())
    for arm, n in plan.n_by_arm.items():
        design = plan.split.get(arm)
        t.add_row(
            arm,
            "control" if arm == plan.control else "sent",
            "" if design is None else f"{design:.1%}",
            f"{n:,}",
            f"{n / total:.1%}" if total else "",
        )
    console.print(t)


def print_preview(messages: list[Any]) -> None:
    """Rendered examples, one panel-like block each."""
    for m in messages:
        from segmint.campaigns import DEFAULT_TREATMENT

        arm = f" · {m.arm}" if getattr(m, "arm", "") not in ("", DEFAULT_TREATMENT) else ""
        console.rule(f"{m.segment}{arm} · {m.channel} · {m.to or m.user_id}")
        console.print(Text.assemble(("Subject: ", "bold"), m.subject))
        console.print(m.body)


def print_report(r: Any) -> None:
    """What a send did."""
    t = Table(title=f"{r.campaign} — sent run {r.run_id}")
    t.add_column("")
    t.add_column("messages", justify="right")
    for label, n in (
        ("sent now", r.sent),
        ("  of which resent after an unclear end", r.resent_ambiguous),
        ("a killed run's answers, from its journal", r.recovered),
        ("a killed run's unconfirmed (not resent)", r.unconfirmed),
        ("sent before (skipped)", r.already_sent),
        ("failed (retried next time)", r.failed),
        ("rejected (never retried)", r.rejected),
        ("opted out since the plan", r.skipped),
        ("frequency cap reached at send time", r.capped),
        ("deferred (timing.not_before)", r.deferred),
        ("control group (never sent)", r.n_control),
    ):
        t.add_row(label, f"{n:,}")
    console.print(t)
    state = "complete" if r.complete else "not complete: run it again to resume"
    console.print(f"  {r.messages_per_second:,.0f} messages/s over {r.seconds:.1f} s; {state}")


@campaign_app.command("list")
def list_campaigns(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """List the playbook's campaigns with their latest plan."""
    from segmint import open_project
    from segmint.campaigns import latest_plan

    def go() -> list[dict[str, Any]]:
        with open_project(project) as p:
            out = []
            for name, spec in p.config.playbook.campaigns.items():
                plan = latest_plan(p.store, name)
                out.append(
                    {
                        "campaign": name,
                        "segmentation": spec.segmentation,
                        "trigger": spec.trigger.type,
                        "latest_plan": plan.run_id if plan else None,
                        "status": plan.status if plan else None,
                        "treatment": plan.n_treatment if plan else None,
                        "control": plan.n_control if plan else None,
                    }
                )
            return out

    rows = _run(go)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print(
            "no campaigns in the playbook of segmint.yaml: `segmint playbook init` writes a "
            "default one (or add them under playbook.campaigns)"
        )
        return
    t = Table(title="campaigns")
    for c in (
        "campaign",
        "segmentation",
        "trigger",
        "latest_plan",
        "status",
        "treatment",
        "control",
    ):
        t.add_column(c, overflow="fold")  # plan ids in full
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r.values()])
    console.print(t)


@campaign_app.command("plan")
def plan(
    name: NameArg,
    project: ProjectOpt = Path("."),
    as_of: Annotated[str | None, typer.Option(help="Plan date for triggers (YYYY-MM-DD).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the audience: the funnel (every exclusion by reason) and the control group."""
    from segmint import open_project
    from segmint.campaigns import plan_campaign
    from segmint.errors import ConfigError

    def go() -> Any:
        try:
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            raise ConfigError(f"--as-of: {as_of!r} is not a YYYY-MM-DD date") from None
        with open_project(project) as p:
            return plan_campaign(p.store, p.config, name, as_of=day)

    result = _run(go)
    if as_json:
        print_json(result.to_dict())
    else:
        print_plan(result)


@campaign_app.command("preview")
def preview_cmd(
    name: NameArg,
    project: ProjectOpt = Path("."),
    n: Annotated[int, typer.Option("--n", "-n", help="Messages to render.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """Render real messages of the latest plan (planned now if there is none)."""
    from segmint import open_project
    from segmint.campaigns import preview

    def go() -> list[Any]:
        with open_project(project) as p:
            return preview(p.store, p.config, name, n=n)

    messages = _run(go)
    if as_json:
        print_json([m.to_dict() for m in messages])
    elif not messages:
        console.print(
            f"no message to render: the latest plan of {name} has nobody in its treatment "
            f"group (see the funnel: segmint campaign plan {name})"
        )
    else:
        print_preview(messages)


@campaign_app.command("send")
def send(
    name: NameArg,
    project: ProjectOpt = Path("."),
    resume: Annotated[
        bool, typer.Option(help="Continue the latest unfinished plan (else plan anew).")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Send to the treatment group: exactly once per message, resumable after a crash."""
    from segmint import open_project
    from segmint.campaigns import send_campaign

    def go() -> Any:
        with (
            open_project(project) as p,
            Progress(
                TextColumn("sending"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
                disable=as_json,
            ) as progress,
        ):
            task = progress.add_task("send", total=None)
            return send_campaign(
                p.store,
                p.config,
                name,
                resume=resume,
                callback=lambda done, total: progress.update(task, completed=done, total=total),
            )

    report = _run(go)
    if as_json:
        print_json(report.to_dict())
    else:
        print_report(report)


@campaign_app.command("unsubscribe")
def unsubscribe_cmd(
    token: Annotated[
        str, typer.Argument(help="The token of an unsubscribe link, or the whole link.")
    ],
    project: ProjectOpt = Path("."),
    as_json: JsonOpt = False,
) -> None:
    """Process an unsubscribe token: record the opt-out in the consent history."""
    from segmint import open_project
    from segmint.campaigns import key_ring, unsubscribe

    def go() -> Any:
        with open_project(project) as p:
            keys = key_ring(p.root, p.store, secret_env=p.config.playbook.secret_env)
            return unsubscribe(p.store, token, keys=keys)

    r = _run(go)
    if as_json:
        print_json(
            {
                "user_id": r.user_id,
                "channel": r.channel,
                "purpose": r.purpose,
                "already_unsubscribed": r.already_unsubscribed,
            }
        )
        return
    what = "was already unsubscribed" if r.already_unsubscribed else "unsubscribed"
    console.print(f"user {r.user_id} {what} from {r.channel}/{r.purpose}")


@campaign_app.command("rotate-key")
def rotate_key_cmd(
    project: ProjectOpt = Path("."),
    retire: Annotated[
        str | None,
        typer.Option(
            "--retire",
            metavar="ID",
            help="Drop key ID from the ring instead: the links it signed stop working.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a new unsubscribe signing key; older keys keep verifying the links already sent.

    With playbook.secret_env (SEGMINT_SECRET) set, its key is kept in the key file instead:
    set the variable to a new value next.
    """
    import os

    from segmint import open_project
    from segmint.campaigns import retire_key, rotate_key

    def go() -> tuple[Any, str, bool, str]:
        with open_project(project) as p:
            env, tz = p.config.playbook.secret_env, p.config.timezone
            if retire is not None:
                return retire_key(p.root, retire, secret_env=env), env, False, tz
            ring = rotate_key(p.root, p.store, secret_env=env)
            return ring, env, bool(os.environ.get(env)), tz

    ring, env, from_env, tz = _run(go)
    rows = ring.describe()
    if as_json:
        print_json({"path": str(ring.path), "active": ring.active, "keys": rows})
        return
    if retire is not None:
        err.print(
            Text.assemble(
                ("warning: ", "bold yellow"),
                f"key {retire} retired: unsubscribe links it signed no longer work (their "
                "opt-out is refused)",
            ),
            soft_wrap=True,
        )
    t = Table(title=f"unsubscribe keys ({ring.path}; times in {tz})")
    for c in ("id", "created", "signs new links", "where"):
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(
            r["id"],
            show_time(r["created_at"] or None, tz),
            "yes" if r["active"] else "",
            r["where"],
        )
    console.print(t)
    if from_env:
        console.print(
            f"the key in {env} is kept in the key file for verification; now set {env} to a "
            "new random value (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )


_PLAYBOOK_BLOCK = re.compile(r"(?ms)^playbook:.*?(?=^\S|\Z)")


@playbook_app.command("init")
def playbook_init(
    project: ProjectOpt = Path("."),
    force: Annotated[bool, typer.Option(help="Replace an existing playbook: section.")] = False,
    stdout: Annotated[bool, typer.Option("--stdout", help="Print it instead of writing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a default playbook for the project's segmentations into segmint.yaml."""
    from segmint import open_project
    from segmint.campaigns import default_playbook
    from segmint.config import CONFIG_FILE
    from segmint.errors import ConfigError

    def go() -> str:
        with open_project(project) as p:
            return default_playbook(p.config, store=p.store)

    text = _run(go)
    if stdout:
        if as_json:
            print_json({"playbook": text})
        else:
            print(text)
        return
    path = project / CONFIG_FILE
    current = path.read_text(encoding="utf-8")
    if _PLAYBOOK_BLOCK.search(current):
        if not force:
            raise fail(
                f"{path} already has a playbook: section; use --force to replace it (or "
                "--stdout to print the default)",
                ConfigError.exit_code,
            )
        current = _PLAYBOOK_BLOCK.sub("", current).rstrip() + "\n"
    path.write_text(current.rstrip() + "\n\n" + text, encoding="utf-8")
    n = text.count("\n")
    if as_json:
        print_json({"path": path.resolve(), "lines": n})
        return
    console.print(f"wrote a playbook ({n} lines) to {path}; next: segmint campaign plan NAME")


@playbook_app.command("check")
def playbook_check(project: ProjectOpt = Path("."), as_json: JsonOpt = False) -> None:
    """Check the playbook against the store (segment names of the latest runs) and say
    what moved: renamed or renumbered clusters whose strategy was kept (matched by
    centroid or pinned with `cluster:`), new clusters without a strategy."""
    from segmint import open_project
    from segmint.campaigns import validate_playbook

    def go() -> tuple[int, list[str]]:
        with open_project(project) as p:
            notes = validate_playbook(p.store, p.config)
            return len(p.config.playbook.campaigns), notes

    n, notes = _run(go)
    if as_json:
        print_json({"ok": True, "campaigns": n, "notes": notes})
        return
    for note in notes:
        console.print(f"  {note}", markup=False, highlight=False)
    console.print(f"playbook ok: {n} campaigns")
