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
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    try:
        fd, name = tempfile.mkstemp(prefix=f"segmint-error-{stamp}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(traceback.format_exception(exc)))
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
        saved = _save_traceback(exc)
        where = f"the traceback is in {saved}" if saved else "the traceback could not be saved"
        raise fail(
            f"{type(exc).__name__}: {exc}\nThis is a bug in segmint, not in your input: "
            f"{where} (set SEGMINT_DEBUG=1 to print it); please report it",
            1,
            label="internal error",
        ) from None
