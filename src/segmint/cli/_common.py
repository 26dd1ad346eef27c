"""What every ``segmint`` command module shares: the consoles, the common options and the
one way a command ends in failure: one line on stderr and a documented exit code, never a
traceback.

Exit codes: 0 success · 1 a run failed (rolled back), or an unexpected error · 2 usage or
configuration error · 3 ``--strict`` and some rows were quarantined · 4 ``segmint evaluate``
found a sample ratio mismatch · 130 interrupted (Ctrl-C).

The consoles interpret neither markup nor emoji codes in what they print: user data (a
segment named ``[bold]``, a reason holding ``:x:``) is shown as it is. Our own styling is
passed explicitly (``markup=True`` with :func:`rich.markup.escape` around data, or
:class:`rich.text.Text`).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text

from segmint.errors import SegmintError

# Wide enough for the tables when output goes to a pipe or a CI log.
console = Console(
    width=None if sys.stdout.isatty() else 140, markup=False, emoji=False, highlight=False
)
err = Console(stderr=True, markup=False, emoji=False, highlight=False)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p", help="Folder holding segmint.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
CountOpt = Annotated[int, typer.Option("--n", "-n", min=1, help="How many to show.")]

# The short options mean the same in every command (a test walks the app to check):
SHORT_OPTIONS = {
    "-p": "project",  # the folder holding segmint.yaml
    "-n": "count",  # how many (rows shown, items per user, messages rendered)
    "-o": "output",  # the file or folder written
    "-f": "format",  # the format of -o when its extension does not say
    "-s": "source",  # a source of segmint.yaml
}


def json_value(value: Any) -> Any:
    """``value`` as JSON can hold it: times as ISO 8601 with their UTC offset (a naive time
    is taken as UTC), dates as ISO dates, numpy and pandas scalars as Python ones, NaN and
    NaT as null, paths and anything else as text. The one conversion every ``--json`` uses.
    """
    import math
    from datetime import date, datetime

    import numpy as np
    import pandas as pd

    if value is None or isinstance(value, bool | int | str):
        return value
    if value is pd.NaT:
        return None
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, pd.Timestamp):
        if pd.isna(value):
            return None
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return json_value(value.item())
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [json_value(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [
            {str(k): json_value(v) for k, v in row.items()}
            for row in value.to_dict(orient="records")
        ]
    if isinstance(value, pd.Series):
        return {str(k): json_value(v) for k, v in value.to_dict().items()}
    return str(value)


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout (see :func:`json_value`); non-ASCII text
    is written as is."""
    import json

    sys.stdout.write(json.dumps(json_value(value), indent=2, ensure_ascii=False) + "\n")


def print_result(result: Any, as_json: bool, show: Any, *, to_json: Any = None) -> None:
    """End a command: with ``--json`` print ``result`` as JSON (``to_json(result)`` when
    given, e.g. a result's ``to_dict``), else draw it with ``show(result)``."""
    if as_json:
        print_json(result if to_json is None else to_json(result))
    else:
        show(result)


def spinner(*, elapsed: bool = True, disable: bool = False) -> Any:
    """The progress line a long step draws on stderr (a spinner, the step's description
    and, with ``elapsed``, the time so far); it disappears when the step is done.
    ``disable``: draw nothing (``--json``)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if elapsed:
        columns.append(TimeElapsedColumn())
    return Progress(*columns, console=err, transient=True, disable=disable)


def show_time(value: Any, timezone: str = "UTC") -> str:
    """A stored time as a person reads it: ``2026-11-27 10:15 CET`` in the project's time
    zone (a naive time is taken as UTC); empty for a missing one."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
    return ts.tz_convert(timezone).strftime("%Y-%m-%d %H:%M %Z")


MAX_LINE = 400
"""Characters of one message line shown; longer lines (a row quoted by a driver) are cut."""
MAX_LINES = 40


def short(message: str) -> str:
    """``message`` cut to :data:`MAX_LINES` lines of at most :data:`MAX_LINE` characters."""
    lines = message.splitlines() or [""]
    cut = [line if len(line) <= MAX_LINE else line[: MAX_LINE - 1] + "…" for line in lines]
    if len(cut) > MAX_LINES:
        cut = [*cut[:MAX_LINES], f"… ({len(cut) - MAX_LINES} more lines)"]
    return "\n".join(cut)


def fail(message: str, code: int, *, label: str = "error") -> typer.Exit:
    """Print ``label: message`` (one red label, the message as plain text) on stderr and
    return the :class:`typer.Exit` to raise."""
    err.print(Text.assemble((f"{label}: ", "bold red"), short(message)), soft_wrap=True)
    return typer.Exit(code)


def _save_traceback(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected error to a file; its path, or None."""
    from segmint._redact import redact_values

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        fd, name = tempfile.mkstemp(prefix=f"segmint-error-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(redact_values("".join(traceback.format_exception(exc))))
        return Path(name)
    except OSError:
        return None


def run(fn: Any) -> Any:
    """Call ``fn()``. A :class:`SegmintError` becomes one line on stderr and its exit code;
    an error of the machine (a full disk, no permission, out of memory) one line and exit
    1; anything else is a bug in segmint: one line saying so, the traceback saved to a file
    (printed instead when ``SEGMINT_DEBUG`` is set), exit 1."""
    try:
        return fn()
    except SegmintError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        raise fail("interrupted; every load and send is transactional, run it again", 130) from None
    except MemoryError:
        raise fail(
            "out of memory; free memory or lower the data volume (e.g. sample_size)", 1
        ) from None
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise fail(f"the system refused an operation on{where}: {exc.strerror or exc}", 1) from None
    except Exception as exc:
        if os.environ.get("SEGMINT_DEBUG"):
            raise
        from segmint._redact import redact_values

        saved = _save_traceback(exc)
        where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
        raise fail(
            f"{type(exc).__name__}: {redact_values(str(exc))}\nThis is a bug in segmint, not in your input: "
            f"{where} (set SEGMINT_DEBUG=1 to print it); please report it",
            1,
            label="internal error",
        ) from None


def frame_table(frame: Any, title: str | None = None, *, locale: str = "en") -> Any:
    """A :class:`rich.table.Table` of a DataFrame: text left, numbers right with 4
    significant digits (whole numbers grouped), missing values as ``–``."""
    import math

    import pandas as pd
    from rich.table import Table

    from segmint._i18n import language

    lang = language(locale)
    t = Table(title=title)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    for c, num in zip(frame.columns, numeric, strict=True):
        t.add_column(str(c), justify="right" if num else "left", overflow="fold")

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NaT:
            return "–"
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int | float) and not isinstance(v, bool):
            return lang.integer(v) if float(v).is_integer() else lang.number(float(v), digits=4)
        if hasattr(v, "item") and not isinstance(v, str):
            return cell(v.item())
        return str(v)

    for row in frame.itertuples(index=False):
        t.add_row(*[cell(v) for v in row])
    return t


def _rows(n: int, what: str = "row") -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def _shown(value: Any, width: int = 60) -> str:
    """A raw value for a terminal: control and bidirectional characters escaped, cut to
    ``width`` characters."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    # line breaks, tabs, other control characters and bidirectional overrides (all
    # non-printable) are shown as escapes: a value cannot break or reorder the table
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value))
    return text if len(text) <= width else text[: width - 1] + "…"


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


def cli_actor() -> str:
    """Who runs the command (the audit log's actor): ``cli:<login name>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name (a container without an /etc/passwd entry)
        return "cli"
