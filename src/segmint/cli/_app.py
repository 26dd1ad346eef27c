"""The ``segmint`` Typer app: its name, help, ``--version``; every command group adds to it."""

from __future__ import annotations

from typing import Annotated

import typer

from segmint.cli._common import console

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
