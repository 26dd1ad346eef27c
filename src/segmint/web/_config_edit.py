"""Edits to ``segmint.yaml`` from the workspace: ``segmint.yaml`` stays the source of truth.

An edit is a list of changes at key paths (``("segmentations", "vip")`` set to a mapping,
``("playbook", "strategies", "at_risk", "offer")`` deleted ...). :func:`propose` applies
them to the file's text by replacing only the lines of the keys it changes (located with
the YAML parser's marks; comments, order and layout of everything else are kept, so the
diff shows just the edit), validates the result exactly as ``segmint.yaml`` is
validated on load (an error names the key and the line), and returns the new text with a
unified diff. :func:`save` writes it only if the file is still the one the edit started
from (its SHA-256; otherwise someone changed it meanwhile and the edit must be redone),
atomically (a temporary file renamed over), keeping the previous version under
``.segmint/config-history/``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from segmint.errors import ConfigChangedError

__all__ = ["DELETE", "ConfigChangedError", "Proposal", "current", "propose", "save"]

DELETE = object()
"""The value of a change that removes the key."""

HISTORY = Path(".segmint") / "config-history"


@dataclass(frozen=True)
class Proposal:
    """A validated edit of ``segmint.yaml``: the new text, the diff from the current file
    and the hash of the file it applies to."""

    path: Path
    base_sha: str
    text: str
    diff: str

    @property
    def changed(self) -> bool:
        return bool(self.diff)

    def diff_lines(self) -> list[tuple[str, str]]:
        """The diff as (kind, line): kind ``add``, ``del``, ``hunk`` or ``ctx``."""
        out = []
        for line in self.diff.splitlines():
            if line.startswith(("+++", "---")):
                continue
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "ctx")
            out.append((kind, line))
        return out


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def current(path: Path) -> tuple[str, str]:
    """The file's text and its SHA-256."""
    text = path.read_text(encoding="utf-8")
    return text, sha(text)


def _lines_end(lines: list[str], end: int, floor: int) -> int:
    """Move an exclusive end line back over trailing blank and comment-only lines (they
    belong to what follows)."""
    while end > floor and (not lines[end - 1].strip() or lines[end - 1].lstrip().startswith("#")):
        end -= 1
    return end


def _end_line(lines: list[str], node: Any) -> int:
    """The exclusive end line of ``node``: a block ends where the next token starts (that
    line is not the node's), a scalar or flow value on the line it ends on."""
    mark = node.end_mark
    if mark.line >= len(lines):
        return len(lines)
    before = lines[mark.line][: mark.column]
    return mark.line if not before.strip() else mark.line + 1


def _block(key: Any, value: Any, indent: int) -> list[str]:
    import yaml

    dumped = yaml.safe_dump(
        {key: value}, sort_keys=False, allow_unicode=True, default_flow_style=False, width=4096
    )
    return [" " * indent + line + "\n" for line in dumped.splitlines()]


def _find(node: Any, key: Any) -> tuple[Any, Any] | None:
    for k, v in node.value:
        if getattr(k, "value", None) == str(key):
            return k, v
    return None


def _splice(text: str, keys: tuple[Any, ...], value: Any) -> str:
    """``text`` with the value at ``keys`` replaced (or added, or deleted): only the lines
    of that key change; comments and layout elsewhere stay as they are."""
    import yaml

    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    root = yaml.compose(text) if text.strip() else None
    if root is None:
        return "".join(lines + ([] if value is DELETE else _nest(keys, value, 0)))
    node = root
    for depth, key in enumerate(keys[:-1]):
        found = _find(node, key) if isinstance(node, yaml.MappingNode) else None
        if found is None or not isinstance(found[1], yaml.MappingNode) or found[1].flow_style:
            if value is DELETE and found is None:
                return text
            if found is not None:  # a flow mapping, or not a mapping: rewrite it whole
                current = _value_at(text, keys[: depth + 1])
                merged = _merged(current, keys[depth + 1 :], value)
                return _splice(text, keys[: depth + 1], merged)
            return _add(lines, node, keys[depth:], value)
        node = found[1]
    found = _find(node, keys[-1])
    if found is None:
        return text if value is DELETE else _add(lines, node, keys[-1:], value)
    key_node, value_node = found
    start = key_node.start_mark.line
    end = max(start + 1, _lines_end(lines, _end_line(lines, value_node), start + 1))
    new = [] if value is DELETE else _block(keys[-1], value, key_node.start_mark.column)
    return "".join(lines[:start] + new + lines[end:])


def _nest(keys: tuple[Any, ...], value: Any, indent: int) -> list[str]:
    nested: Any = value
    for key in reversed(keys[1:]):
        nested = {key: nested}
    return _block(keys[0], nested, indent)


def _add(lines: list[str], mapping: Any, keys: tuple[Any, ...], value: Any) -> str:
    """Add ``keys`` (the first one new in ``mapping``) after the mapping's last entry."""
    if mapping.value:
        indent = mapping.value[0][0].start_mark.column
        last = mapping.value[-1][1]
        end = _lines_end(lines, _end_line(lines, last), mapping.value[-1][0].start_mark.line + 1)
    else:
        indent, end = 0, len(lines)
    return "".join(lines[:end] + _nest(keys, value, indent) + lines[end:])


def _value_at(text: str, keys: tuple[Any, ...]) -> Any:
    import yaml

    node = yaml.safe_load(text)
    for key in keys:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def _merged(current: Any, keys: tuple[Any, ...], value: Any) -> Any:
    out = dict(current) if isinstance(current, dict) else {}
    if len(keys) == 1:
        if value is DELETE:
            out.pop(keys[0], None)
        else:
            out[keys[0]] = value
        return out
    out[keys[0]] = _merged(out.get(keys[0]), keys[1:], value)
    return out


def propose(path: Path, changes: list[tuple[tuple[Any, ...], Any]]) -> Proposal:
    """Apply ``changes`` to the file at ``path`` and validate the result.

    Raises :class:`~segmint.errors.ConfigError` with the loader's message (key, line, fix)
    when the edited file would not load."""
    from segmint.config import parse_config

    text, base = current(path)
    new = text
    for keys, value in changes:
        if not keys:
            raise ValueError("a change needs a key path")
        new = _splice(new, tuple(keys), value)
    parse_config(new, path=path, root=path.parent.resolve())  # raises ConfigError
    diff = "".join(
        difflib.unified_diff(
            text.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=f"{path.name} (now)",
            tofile=f"{path.name} (after)",
            n=2,
        )
    )
    return Proposal(path=path, base_sha=base, text=new, diff=diff)


def save(path: Path, text: str, base_sha: str) -> Path | None:
    """Write ``text`` to ``path`` if the file still hashes to ``base_sha``; returns where
    the previous version was kept (None if the file did not change).

    Raises :class:`~segmint.errors.ConfigChangedError` if the file changed since, and
    :class:`~segmint.errors.ConfigError` if ``text`` does not load."""
    from segmint.config import parse_config

    now_text, now_sha = current(path)
    if now_sha != base_sha:
        raise ConfigChangedError(
            f"{path.name} changed since this edit was prepared (by hand or by someone else); "
            "nothing was written: review the edit again"
        )
    if text == now_text:
        return None
    parse_config(text, path=path, root=path.parent.resolve())
    history = path.parent / HISTORY
    history.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = history / f"{path.stem}.{stamp}{path.suffix}"
    kept.write_text(now_text, encoding="utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return kept
