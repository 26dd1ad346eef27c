"""The ``segmint`` command line (Typer + Rich). Holds no business logic: it calls the
library and draws the results. One module per command group; each adds its commands to
:data:`app` when imported, in the order ``segmint --help`` lists them. Importing this
package imports neither pandas nor any layer: heavy imports happen inside the commands.

Exit codes: 0 success; 1 a run failed (load rolled back, store error); 2 a usage or
configuration error (bad segmint.yaml, unknown source, missing file); 3 ``--strict`` and
some rows were quarantined; 4 ``segmint evaluate`` found a sample ratio mismatch.

Logging goes to stderr at WARNING; ``SEGMINT_LOG=info`` (or ``debug``) shows more. No
level logs personal data (a test runs the demo, the service and failing loads at debug).
"""

from __future__ import annotations

import logging
import os
import sys

# isort: off
# the order of these imports is the order of the commands in `segmint --help`
from segmint.cli._app import app
from segmint.cli._access import guard as _guard
from segmint.cli import ingest, campaigns, experiments, segments, profiles  # noqa: F401
from segmint.cli import export, recommend, predict, report, serve, demo  # noqa: F401
from segmint.cli import jobs  # noqa: F401
from segmint.cli import keys  # noqa: F401
from segmint.cli import users  # noqa: F401
from segmint.cli import privacy  # noqa: F401

# isort: on

app.add_typer(segments.segments_app, name="segments")
app.add_typer(export.export_app, name="export")
app.add_typer(recommend.recommend_app, name="recommend")
app.add_typer(predict.predict_app, name="predict")
app.add_typer(campaigns.campaign_app, name="campaign")
app.add_typer(campaigns.playbook_app, name="playbook")
app.add_typer(jobs.jobs_app, name="jobs")
app.add_typer(keys.keys_app, name="keys")
app.add_typer(users.users_app, name="users")
app.add_typer(privacy.privacy_app, name="privacy")

# last: every command runs in the access mode of its kind (segmint.cli._access.ACCESS)
_guard(app)

__all__ = ["app", "main"]


class _RedactingFormatter(logging.Formatter):
    """Log lines (tracebacks included) with quoted values, e-mails and phones masked."""

    def format(self, record: logging.LogRecord) -> str:
        from segmint._redact import redact_values

        return redact_values(super().format(record))


def main() -> None:
    """Entry point of the ``segmint`` console script."""
    name = os.environ.get("SEGMINT_LOG", "").strip().upper()
    level = logging.getLevelNamesMapping().get(name, logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # the last net: no value quoted in a log
        handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover
        sys.exit(130)
