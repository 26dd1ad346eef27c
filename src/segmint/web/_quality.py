"""The workspace's Data quality pages: every load accounted for (``/quality``: rows read =
accepted + rejected, paged) and, per load, why rows were quarantined (``/quality/{load}``:
counts per rule and field, example rows with their reason, paged).

Quarantined rows are shown as the source held them — they may hold personal data: this is
the data person's tool — but never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from segmint.sources import open_quarantine
from segmint.store import open_vault
from segmint.web._auth import Viewer
from segmint.web._core import N_, page, record, workspace

router = APIRouter()

LOADS_PER_PAGE = 25
EXAMPLES_PER_PAGE = 20
MAX_VALUE = 300
"""Characters of one raw value shown (the rest is cut, with an ellipsis)."""


@dataclass(frozen=True)
class Pager:
    """Which page of ``total`` rows, ``size`` a page (``number`` starts at 1)."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def first(self) -> int:
        return min(self.total, self.offset + 1)

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.size)


LOAD_COLUMNS = (
    "load_id, source, target_table, started_at, finished_at, rows_read, rows_accepted, "
    "rows_rejected, coalesce(field_issues, 0) AS field_issues"
)


def read_loads(
    store: Any, *, source: str | None, number: int
) -> tuple[list[dict[str, Any]], Pager, int]:
    """One page of loads (newest first), the pager, and how many loads of the selection do
    not add up (read != accepted + rejected)."""
    where, params = ("WHERE source = ?", [source]) if source else ("", [])
    totals = store.query(
        "SELECT count(*) AS n, count(*) FILTER (WHERE rows_read <> rows_accepted + rows_rejected) "
        f"AS n_off FROM loads {where}",
        params or None,
    ).iloc[0]
    pager = Pager(number, LOADS_PER_PAGE, int(totals["n"]))
    if pager.number > pager.pages:
        pager = Pager(pager.pages, LOADS_PER_PAGE, pager.total)
    rows = store.query(
        f"SELECT {LOAD_COLUMNS} FROM loads {where} "
        "ORDER BY started_at DESC, load_id LIMIT ? OFFSET ?",
        [*params, pager.size, pager.offset],
    )
    return rows.to_dict(orient="records"), pager, int(totals["n_off"])


def _clamp(number: int) -> int:
    """A page number from the address, within 1 .. 1,000,000 (the last page is found later)."""
    return min(max(1, number), 1_000_000)


@router.get("/quality", response_class=HTMLResponse)
def quality_page(
    request: Request,
    session: Viewer,
    page_number: int = Query(1, alias="page"),
    source: str | None = Query(None, max_length=200),
) -> HTMLResponse:
    ws = workspace(request)
    source = source or None
    with ws.project() as p:
        sources = [
            str(s) for s in p.store.query("SELECT DISTINCT source FROM loads ORDER BY 1")["source"]
        ]
        loads, pager, n_off = read_loads(p.store, source=source, number=_clamp(page_number))
        summary = p.quarantine_summary(source).head(100).to_dict(orient="records")
    return page(
        request,
        "quality.html.j2",
        active="quality",
        title=N_("Data quality"),
        loads=loads,
        pager=pager,
        n_off=n_off,
        sources=sources,
        source=source,
        summary=summary,
    )


# -- one load --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example:
    """A quarantined row: where it was, why, and what the source held."""

    row: int
    kind: str
    rule: str
    field: str
    reason: str
    raw_value: str | None
    raw: list[tuple[str, str, bool]]  # (source column, value, the column at fault)


def _source_column(config: Any, source: str, field: str) -> str:
    """The source's own name of our column ``field`` (the raw row uses it)."""
    spec = config.sources.get(source) if field else None
    if spec is None:
        return field
    ref = spec.columns.get(field, field)
    return ref if isinstance(ref, str) else field


def _clip(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _raw(raw: Any, at_fault: str) -> list[tuple[str, str, bool]]:
    if raw is None or (isinstance(raw, float) and raw != raw):
        return []
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [("", _clip(raw), False)]
    if not isinstance(data, dict):
        return [("", _clip(data), False)]
    return [(str(k), _clip(v), str(k) == at_fault) for k, v in data.items()]


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def read_load(
    store: Any, config: Any, load_id: str, *, rule: str | None, number: int
) -> dict[str, Any] | None:
    """A load, its quarantine counted by kind, rule and field, and one page of examples."""
    found = store.query(
        f"SELECT {LOAD_COLUMNS}, location, checksum, retry_of FROM loads WHERE load_id = ?",
        [load_id],
    )
    if found.empty:
        return None
    load = found.iloc[0].to_dict()
    reasons = store.query(
        "SELECT kind, rule, field, count(*) AS n, min(reason) AS example FROM quarantine "
        "WHERE load_id = ? GROUP BY kind, rule, field ORDER BY n DESC, rule, field",
        [load_id],
    ).to_dict(orient="records")
    where, params = ("AND rule = ?", [rule]) if rule else ("", [])
    total = sum(int(r["n"]) for r in reasons if not rule or r["rule"] == rule)
    pager = Pager(number, EXAMPLES_PER_PAGE, total)
    if pager.number > pager.pages:
        pager = Pager(pager.pages, EXAMPLES_PER_PAGE, total)
    rows = store.query(
        'SELECT "row", kind, rule, field, reason, raw_value, CAST(raw AS VARCHAR) AS raw '
        f"FROM quarantine WHERE load_id = ? {where} "
        'ORDER BY "row", rule, field LIMIT ? OFFSET ?',
        [load_id, *params, pager.size, pager.offset],
    )
    if len(rows):  # only the examples shown are opened (the caller records the read)
        rows = open_quarantine(open_vault(store, config), rows)
    examples = []
    for r in rows.to_dict(orient="records"):
        field = _text(r["field"])
        column = _source_column(config, str(load["source"]), field)
        examples.append(
            Example(
                int(r["row"]),
                str(r["kind"]),
                str(r["rule"]),
                field,
                _text(r["reason"]),
                _text(r["raw_value"]) or None,
                _raw(r["raw"], column),
            )
        )
    return {"load": load, "reasons": reasons, "examples": examples, "pager": pager}


@router.get("/quality/{load_id}", response_class=HTMLResponse)
def quality_load_page(
    request: Request,
    load_id: str,
    session: Viewer,
    page_number: int = Query(1, alias="page"),
    rule: str | None = Query(None, max_length=200),
) -> HTMLResponse:
    from segmint.web._app import message

    ws = workspace(request)
    config = ws.config()
    with ws.project() as p:
        found = read_load(p.store, config, load_id, rule=rule or None, number=_clamp(page_number))
        if found is not None and found["examples"]:
            record(p.store, session.name, "personal.read", load_id, what="quarantine examples",
                   n_rows=len(found["examples"]))  # fmt: skip
    if found is None:
        return message(
            request, 404, N_("Not found"), N_("There is no load with this id."), back="/quality"
        )
    return page(
        request,
        "quality_load.html.j2",
        active="quality",
        title=N_("Load"),
        rule=rule or None,
        **found,
    )
