"""``segmint privacy``: erasure, access requests, retention, key rotation, the audit log."""

from __future__ import annotations

import typer

privacy_app = typer.Typer(
    help="Personal data: forget a person, export what is held about them, purge past the "
    "retention periods, rotate the data key, verify the audit log.",
    no_args_is_help=True,
)


# -- forget (erasure) ------------------------------------------------------------------


# -- export (access request) -------------------------------------------------------------


# -- audit --------------------------------------------------------------------------------


# -- rotate-key ---------------------------------------------------------------------------


# -- retention ---------------------------------------------------------------------------


# -- do-not-sell ---------------------------------------------------------------------------
