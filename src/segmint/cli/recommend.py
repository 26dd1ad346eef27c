"""``segmint recommend`` and ``segmint recommend evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from segmint.cli._common import JsonOpt, ProjectOpt, _num, console, print_json
from segmint.cli._common import run as _run
from segmint.errors import ConfigError

recommend_app = typer.Typer(
    help="Recommendations: evaluate the models, then write top-N for every user.",
    invoke_without_command=True,
)


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
