"""Look for a person everywhere: every text column of every table, every file of the project.

:func:`scan_for` is what the erasure test runs after :func:`~segmint.privacy.forget`, and
what an operator can run to answer "is anything of this person left?". It checks:

* every table of the store and every column holding text (VARCHAR, JSON, lists and structs
  read as text), with a case-insensitive substring search in SQL; values sealed with the
  vault (``enc1:...``, whole or inside JSON) are opened and searched too, so a sealed
  e-mail is found;
* every file under the project folder (the store file itself included), as bytes, and
  inside ``.gz`` files and the zip entries of ``.xlsx`` files, except the configured input
  sources (the shop's own exports: not the project's to rewrite) and what ``exclude`` names.

Identifiers are searched as given and lower-cased. The report lists what was checked and
every hit by identifier *label* (never the identifier itself, so the report can be printed).
"""

from __future__ import annotations

import gzip
import os
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmint.store import SEALED_COLUMNS, SEALED_JSON_COLUMNS, SEALED_PATTERN, is_sealed

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store import Store, Vault

__all__ = ["ScanHit", "ScanReport", "open_any", "scan_for"]

_SEALED = SEALED_PATTERN
_TEXT_TYPES = ("VARCHAR", "JSON", "TEXT", "CHARACTER", "[]", "STRUCT", "MAP", "UNION")
EXTRA_FIELDS = ("spool.line", "tracking.message", "journal.line")
"""Field names tried, after the known sealed columns, on a sealed value found elsewhere."""


@dataclass(frozen=True)
class ScanHit:
    """Where an identifier was found: ``place`` is ``table.column`` or a file path (with
    ``!entry`` for a member of an archive), ``label`` names the identifier, ``n`` counts."""

    place: str
    label: str
    n: int


@dataclass
class ScanReport:
    """What :func:`scan_for` checked and found."""

    tables: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    hits: list[ScanHit] = field(default_factory=list)
    n_sealed_opened: int = 0
    n_sealed_unopened: int = 0  # in the tables: each should open (the field is known)
    # sealed-looking text in files' bytes that did not open: in a binary store file a
    # value may be cut by a block or compressed; its field (a JSON key) is unknown there
    n_sealed_unopened_in_files: int = 0
    n_identifiers: int = 0

    def summary(self) -> str:
        """One paragraph a person can quote."""
        lines = [
            f"identifiers: {self.n_identifiers}; tables checked: {len(self.tables)} ({len(self.columns)} text columns); "
            f"files checked: {len(self.files)}; sealed values opened: {self.n_sealed_opened}"
            f" (not openable: {self.n_sealed_unopened} in tables, "
            f"{self.n_sealed_unopened_in_files} in file bytes); hits: {len(self.hits)}",
        ]
        if self.excluded:
            lines.append("not checked (inputs): " + ", ".join(self.excluded))
        lines.append("files: " + ", ".join(self.files))
        lines += [f"  HIT {h.label} in {h.place} ({h.n})" for h in self.hits]
        return "\n".join(lines)


def open_any(vault: Vault, value: Any, fields: Iterable[str] = ()) -> str | None:
    """The clear text of a sealed ``value``, trying ``fields`` then every known sealed
    field; None when no field opens it (sealed under a key this store lacks)."""
    if not is_sealed(value):
        return value if isinstance(value, str) else None
    candidates = [*fields, *(f"{t}.{c}" for t, c in SEALED_COLUMNS), *EXTRA_FIELDS]
    for name in dict.fromkeys(candidates):
        try:
            return vault.open(value, name)
        except Exception:  # wrong field (the associated data differs): try the next
            continue
    return None


def _opened_text(vault: Vault, text: str, table: str, column: str) -> tuple[str, int, int]:
    """``text`` with every sealed value inside it opened (whole value, JSON values keyed by
    their property name); returns (text, opened, not opened)."""
    opened = unopened = 0
    keys = re.findall(r'"([^"]{1,200})"\s*:\s*"enc1:', text)
    hints = [f"{table}.{column}", *(f"{t}.{c}.{k}" for t, c in SEALED_JSON_COLUMNS for k in keys)]
    hints += [f"{table}.{column}.{k}" for k in keys]
    parts = []
    for token in _SEALED.findall(text):
        clear = open_any(vault, token, hints)
        if clear is None:
            unopened += 1
        else:
            opened += 1
            parts.append(clear)
    return text + "\n" + "\n".join(parts), opened, unopened


def _text_columns(store: Store) -> dict[str, list[str]]:
    rows = store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
    )
    out: dict[str, list[str]] = {}
    for t, c, ty in rows.itertuples(index=False, name=None):
        out.setdefault(str(t), [])
        if any(k in str(ty).upper() for k in _TEXT_TYPES):
            out[str(t)].append(str(c))
    return out


def _scan_tables(
    store: Store, vault: Vault | None, needles: dict[str, str], report: ScanReport
) -> None:
    for table, columns in _text_columns(store).items():
        report.tables.append(table)
        for column in columns:
            report.columns.append(f"{table}.{column}")
            expr = f'lower(CAST("{column}" AS VARCHAR))'
            for label, needle in needles.items():
                n = store.scalar(
                    f'SELECT count(*) FROM "{table}" WHERE contains({expr}, ?)', [needle]
                )
                if n:
                    report.hits.append(ScanHit(f"{table}.{column}", label, int(n)))
            if vault is None:
                continue
            sealed = store.query(
                f'SELECT CAST("{column}" AS VARCHAR) AS v FROM "{table}" '
                f"WHERE contains(CAST(\"{column}\" AS VARCHAR), 'enc1:')"
            )
            found: dict[str, int] = {}
            for value in sealed["v"]:
                text, ok, bad = _opened_text(vault, str(value), table, column)
                report.n_sealed_opened += ok
                report.n_sealed_unopened += bad
                for label, needle in needles.items():
                    if needle in text.lower():
                        found[label] = found.get(label, 0) + 1
            report.hits += [ScanHit(f"{table}.{column} (sealed)", k, n) for k, n in found.items()]


def _file_texts(path: Path) -> Iterable[tuple[str, bytes]]:
    """(place, bytes) of a file and of what it holds compressed (gz, xlsx/zip entries)."""
    data = path.read_bytes()
    yield str(path), data
    if path.suffix == ".gz":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError):
            inner = b""
        yield f"{path}!gunzip", inner
    elif data[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    yield f"{path}!{name}", z.read(name)
        except zipfile.BadZipFile:
            pass


def _inputs(config: Config) -> list[Path]:
    """The configured input sources' files (globs expanded), which a scan leaves out."""
    root = Path(config.root)
    out: list[Path] = []
    for source in config.sources.values():
        raw = getattr(source, "path", None)
        if not raw:
            continue
        p = Path(str(raw))
        p = p if p.is_absolute() else root / p
        out += [Path(x) for x in sorted(root.glob(str(p.relative_to(root))))] if (
            "*" in str(raw) and p.is_relative_to(root)
        ) else [p]  # fmt: skip
    return [p.resolve() for p in out]


def _scan_files(
    root: Path, skip: list[Path], needles: dict[str, str], vault: Vault | None, report: ScanReport
) -> None:
    encoded = {label: n.encode() for label, n in needles.items()}
    for folder, _dirs, names in os.walk(root):
        for name in sorted(names):
            path = Path(folder) / name
            resolved = path.resolve()
            if any(resolved == s or s in resolved.parents for s in skip):
                continue
            report.files.append(str(path.relative_to(root)))
            for place, data in _file_texts(path):
                lower = data.lower()
                if vault is not None and b"enc1:" in data:
                    text, ok, bad = _opened_text(vault, data.decode("utf-8", "replace"), "", "")
                    report.n_sealed_opened += ok
                    report.n_sealed_unopened_in_files += bad
                    lower = text.encode("utf-8", "replace").lower()
                for label, needle in encoded.items():
                    n = lower.count(needle)
                    if n:
                        report.hits.append(ScanHit(place, label, n))


def scan_for(
    project_root: str | Path,
    store: Store,
    config: Config,
    identifiers: Mapping[str, str] | Iterable[str],
    *,
    exclude: Iterable[str | Path] = (),
    vault: Vault | None = None,
) -> ScanReport:
    """Look for ``identifiers`` in every table of ``store`` and every file under
    ``project_root`` (see the module docstring).

    Parameters
    ----------
    identifiers : mapping or iterable
        ``{label: value}`` (the label is what the report shows) or values (labelled
        ``identifier 1``, ``identifier 2`` ...). Values shorter than 4 characters are refused
        (they would match everywhere).
    exclude : paths
        More inputs to leave out (project-relative or absolute; a folder leaves out all in it).
    vault : Vault, optional
        Opens sealed values (default: the store's, :func:`segmint.store.open_vault`).
    """
    from segmint.store import open_vault

    if not isinstance(identifiers, Mapping):
        identifiers = {f"identifier {i + 1}": v for i, v in enumerate(identifiers)}
    needles = {k: str(v).strip().lower() for k, v in identifiers.items()}
    short = [k for k, v in needles.items() if len(v) < 4]
    if short:
        raise ValueError(f"identifiers {short} are shorter than 4 characters")
    root = Path(project_root).resolve()
    if vault is None:
        vault = open_vault(store, config)
    report = ScanReport(n_identifiers=len(needles))
    _scan_tables(store, vault, needles, report)
    skip = _inputs(config)
    skip += [(Path(e) if Path(e).is_absolute() else root / e).resolve() for e in exclude]
    report.excluded = sorted(
        str(s.relative_to(root)) if s.is_relative_to(root) else str(s) for s in skip
    )
    _scan_files(root, skip, needles, vault, report)
    return report
