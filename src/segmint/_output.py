"""Where an export or a report goes: checked before any work, folders created.

``-o`` may name a file in a folder that does not exist yet (the folders are created), but
not an existing folder where a file is expected, nor an existing file where a folder is;
each is a :class:`~segmint.errors.ConfigError` saying what to give instead.
"""

from __future__ import annotations

from pathlib import Path

from segmint.errors import ConfigError


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def output_file(path: str | Path, *, example: str) -> Path:
    """``path`` as a file to (over)write, its folders created.

    Parameters
    ----------
    path : str or Path
        Where the file goes.
    example : str
        A file name to suggest when ``path`` is a folder (e.g. ``"profiles.csv"``).

    Raises
    ------
    segmint.errors.ConfigError
        ``path`` is an existing folder, or its folder cannot be created.
    """
    out = Path(path)
    if out.is_dir():
        raise ConfigError(
            f"{out} is a folder, not a file: give a file name, e.g. -o {out / example}"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder {out.parent} for {out.name}: {_reason(exc)} "
            "(is part of that path a file?)"
        ) from None
    return out


def output_folder(path: str | Path, *, hint: str = "") -> Path:
    """``path`` as a folder to write files into, created if missing.

    Raises
    ------
    segmint.errors.ConfigError
        ``path`` is an existing file, or the folder cannot be created.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a folder: give a folder name{hint}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {out}: {_reason(exc)}") from None
    return out


def cannot_write(path: Path, exc: OSError) -> ConfigError:
    """The error for a write that the system refused (permissions, a full disk)."""
    return ConfigError(f"cannot write {path}: {_reason(exc)}")
