"""The workspace's Segments pages: every segmentation of ``segmint.yaml`` with its sizes and
revenue, one segmentation's latest run (history, migrations, personas, members), exports
of its members and running it now. The rule editor lives in :mod:`segmint.web._segments_edit`.

Routes (V = any signed-in person, E = editor):

- ``GET /segments`` (V), ``GET /segments/{name}`` (V), ``GET /segments/{name}/members`` (V),
  ``GET /segments/{name}/personas`` (V, a fragment: persona cards, computed once per run in
  the background and cached), ``POST /segments/{name}/export`` (E),
  ``GET /segments/{name}/exports/{export_id}`` (E, the file), ``POST /segments/{name}/run`` (E).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from segmint.errors import NotFoundError, SegmintError
from segmint.web import _segments_edit
from segmint.web._auth import Editor, Viewer
from segmint.web._charts import bars
from segmint.web._core import Workspace, fragment, language_of, page, record, workspace
from segmint.web._text import N_

log = logging.getLogger("segmint.web")

router = APIRouter()
router.include_router(_segments_edit.router)  # /segments/new, /preview, /save before /{name}

PAGE_SIZE = 50
EXPORT_DIR = Path(".segmint") / "exports"
"""Where the workspace writes the lists it exports (project-relative; each is recorded)."""


# -- reading the store ------------------------------------------------------------------------
def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return json.loads(value) if value else {}


def latest_runs(store: Any) -> dict[str, dict[str, Any]]:
    """The newest run of every segmentation that has one: id, method, time, users."""
    from segmint.store import latest_runs_sql

    cols = "segmentation, run_id, method, created_at, n_users, feature_run_id, metrics"
    frame = store.query(latest_runs_sql(columns=cols))
    out = {}
    for row in frame.to_dict(orient="records"):
        row["metrics"] = _json(row["metrics"])
        out[str(row["segmentation"])] = row
    return out


def segment_table(store: Any, run_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Per run: its segments with users, revenue (``monetary`` of the run's own feature run)
    and both shares, largest first (one aggregate query for all the runs)."""
    if not run_ids:
        return {}
    marks = ", ".join("?" for _ in run_ids)
    frame = store.query(
        "SELECT r.run_id, a.segment, count(*) AS n_users, "
        "coalesce(sum(f.monetary), 0) AS revenue "
        "FROM segment_runs r JOIN segment_assignments a ON a.run_id = r.run_id "
        "LEFT JOIN features f ON f.run_id = r.feature_run_id AND f.user_id = a.user_id "
        f"WHERE r.run_id IN ({marks}) GROUP BY r.run_id, a.segment "
        "ORDER BY r.run_id, n_users DESC, a.segment",
        list(run_ids),
    )
    out: dict[str, list[dict[str, Any]]] = {r: [] for r in run_ids}
    for row in frame.to_dict(orient="records"):
        out[str(row["run_id"])].append(
            {"segment": str(row["segment"]), "n_users": int(row["n_users"]),
             "revenue": float(row["revenue"])}
        )  # fmt: skip
    for rows in out.values():
        users = sum(r["n_users"] for r in rows) or 1
        revenue = sum(r["revenue"] for r in rows) or 1.0
        for r in rows:
            r["user_share"] = r["n_users"] / users
            r["revenue_share"] = r["revenue"] / revenue
    return out


def describe(spec: Any) -> str:
    """A segmentation's method in a few words (English id, translated in the template)."""
    return {
        "rfm": N_("RFM scores"),
        "lifecycle": N_("Lifecycle stages"),
        "value_tiers": N_("Value tiers"),
        "rules": N_("Rules"),
        "tree": N_("Decision tree"),
        "propensity": N_("Propensity"),
    }.get(spec.type, N_("Clustering"))


# -- GET /segments -----------------------------------------------------------------------------
@router.get("/segments", response_class=HTMLResponse)
def segments_page(request: Request, session: Viewer) -> HTMLResponse:
    ws = workspace(request)
    config = ws.config()
    with ws.project() as p:
        latest = latest_runs(p.store)
        tables = segment_table(p.store, [r["run_id"] for r in latest.values()])
    items = []
    for name, spec in config.segmentations.items():
        run = latest.get(name)
        rows = tables.get(run["run_id"], []) if run else []
        items.append(
            {"name": name, "spec": spec, "method": describe(spec), "run": run, "rows": rows,
             "chart": _share_chart(request, rows, name) if rows else None}
        )  # fmt: skip
    orphans = sorted(set(latest) - set(config.segmentations))
    return page(
        request,
        "segments.html.j2",
        active="segments",
        title=N_("Segments"),
        items=items,
        orphans=orphans,
    )


def _share_chart(
    request: Request, rows: list[dict[str, Any]], name: str, key: str = "user_share"
) -> Any:
    """Share of users (or of revenue, ``key="revenue_share"``) per segment as bars, in %."""
    lang = language_of(request)
    revenue = key == "revenue_share"
    return bars(
        [(r["segment"], r[key], lang.percent(r[key], 1)) for r in rows[:12]],
        title=lang.t("Segments of {name}", name=name),
        axis_label=lang.t("Share of revenue (%)") if revenue else lang.t("Share of users (%)"),
    )


# -- GET /segments/{name} ----------------------------------------------------------------------
def _run_or_404(latest: dict[str, Any], config: Any, name: str) -> dict[str, Any] | None:
    if name not in config.segmentations and name not in latest:
        raise NotFoundError(f"no segmentation named {name!r}")
    return latest.get(name)


def _migrations(p: Any, runs: list[str]) -> dict[str, Any] | None:
    """Moves between the last two runs: (from, to, users), largest first, and the total."""
    if len(runs) < 2:
        return None
    matrix = p.segments_diff(runs[1], runs[0])
    long = matrix.stack().reset_index()
    long.columns = ["from_segment", "to_segment", "n_users"]
    total = int(long["n_users"].sum()) or 1
    moved = long[(long["from_segment"] != long["to_segment"]) & (long["n_users"] > 0)]
    moved = moved.sort_values(["n_users", "from_segment"], ascending=[False, True])
    return {
        "from_run": runs[1],
        "to_run": runs[0],
        "n_moved": int(moved["n_users"].sum()),
        "share_moved": float(moved["n_users"].sum()) / total,
        "rows": moved.head(15).to_dict(orient="records"),
        "more": max(0, len(moved) - 15),
    }


def _segmentation_exports(p: Any, name: str) -> list[dict[str, Any]]:
    frame = p.exports(limit=200)
    frame = frame[frame["segmentation"] == name].head(10)
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    folder = (p.root / EXPORT_DIR).resolve()
    for r in rows:
        path = Path(str(r["path"]))
        r["downloadable"] = path.parent == folder and path.exists()
    return rows


@router.get("/segments/{name}", response_class=HTMLResponse)
def segmentation_page(request: Request, name: str, session: Viewer) -> HTMLResponse:
    ws = workspace(request)
    config = ws.config()
    try:
        with ws.project() as p:
            latest = latest_runs(p.store)
            run = _run_or_404(latest, config, name)
            ctx = _detail(p, name, run) if run else {"rows": [], "history": [], "moves": None}
            ctx["exports"] = _segmentation_exports(p, name)
            ctx["members"] = members(p.store, run, PAGE_SIZE, 0) if run else None
    except NotFoundError:
        return _not_found(request, name)
    spec = config.segmentations.get(name)
    rows = ctx["rows"]
    ctx["chart"] = _share_chart(request, rows, name) if rows else None
    ctx["revenue_chart"] = _share_chart(request, rows, name, "revenue_share") if rows else None
    ctx["personas"] = PERSONAS.peek(run["run_id"], language_of(request).name) if run else None
    ctx["exported"] = _exported(ctx["exports"], request.query_params.get("export"))
    return page(
        request,
        "segments_detail.html.j2",
        active="segments",
        title=N_("Segmentation"),
        name=name,
        spec=spec,
        method=describe(spec) if spec else None,
        run=run,
        purposes=config.consent.all_purposes,
        notice=request.query_params.get("done"),
        **ctx,
    )


def _detail(p: Any, name: str, run: dict[str, Any]) -> dict[str, Any]:
    history = p.segment_runs(name).head(10)
    rules = _json(
        p.store.scalar("SELECT details FROM segment_runs WHERE run_id = ?", [run["run_id"]])
    ).get("rules", {})
    return {
        "rows": segment_table(p.store, [run["run_id"]])[run["run_id"]],
        "history": history.to_dict(orient="records"),
        "moves": _migrations(p, [str(r) for r in history["run_id"]]),
        "rules": rules,
    }


def _exported(exports: list[dict[str, Any]], export_id: str | None) -> dict[str, Any] | None:
    if not export_id:
        return None
    return next((e for e in exports if e["export_id"] == export_id), None)


def _not_found(request: Request, name: str) -> HTMLResponse:
    from segmint.web._app import message

    return message(
        request,
        404,
        N_("Not found"),
        N_("There is no segmentation by this name in segmint.yaml or in the store."),
        back="/segments",
    )


# -- members -----------------------------------------------------------------------------------
def _like(q: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", q) + "%"


def members(
    store: Any,
    run: dict[str, Any],
    size: int,
    offset: int,
    *,
    segment: str = "",
    q: str = "",
) -> dict[str, Any]:
    """One page of a run's members (user id, segment, a few features), by user id."""
    where, params = ["a.run_id = ?"], [run["run_id"]]
    if segment:
        where.append("a.segment = ?")
        params.append(segment)
    if q:
        where.append("a.user_id ILIKE ? ESCAPE '\\'")
        params.append(_like(q))
    cond = " AND ".join(where)
    total = int(store.scalar(f"SELECT count(*) FROM segment_assignments a WHERE {cond}", params))
    frame = store.query(
        "SELECT a.user_id, a.segment, a.probability, f.monetary, f.frequency, f.recency_days "
        "FROM segment_assignments a "
        "LEFT JOIN features f ON f.run_id = ? AND f.user_id = a.user_id "
        f"WHERE {cond} ORDER BY a.user_id LIMIT ? OFFSET ?",
        [run["feature_run_id"], *params, size, offset],
    )
    return {"rows": frame.to_dict(orient="records"), "total": total, "segment": segment, "q": q,
            "page": offset // size + 1, "pages": max(1, -(-total // size))}  # fmt: skip


@router.get("/segments/{name}/members", response_class=HTMLResponse)
def members_page(
    request: Request,
    name: str,
    session: Viewer,
    segment: str = "",
    q: str = "",
) -> HTMLResponse:
    ws = workspace(request)
    number = _page_number(request.query_params.get("page"))
    q, segment = q.strip()[:100], segment.strip()[:200]
    try:
        with ws.project() as p:
            run = _run_or_404(latest_runs(p.store), ws.config(), name)
            if run is None:
                raise NotFoundError(f"segmentation {name!r} has not run yet")
            found = members(p.store, run, PAGE_SIZE, (number - 1) * PAGE_SIZE, segment=segment, q=q)
            segments = [
                r["segment"] for r in segment_table(p.store, [run["run_id"]])[run["run_id"]]
            ]
    except NotFoundError:
        return _not_found(request, name)
    ctx: dict[str, Any] = {"name": name, "run": run, "members": found, "segments": segments}
    if request.headers.get("x-requested-with") == "fragment":
        return fragment(request, "segments_members_part.html.j2", **ctx)
    return page(request, "segments_members.html.j2", active="segments", title=N_("Members"), **ctx)


def _page_number(raw: str | None) -> int:
    try:
        return min(max(1, int(raw or 1)), 1_000_000)
    except ValueError:
        return 1


# -- personas: computed once per run, in the background ----------------------------------------
class PersonaCache:
    """Persona cards per run id: computed on first ask in a background thread (personas
    read the whole run and may take seconds on a large store), kept for the last 16 runs."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
        self._running: set[tuple[str, str]] = set()

    def peek(self, run_id: str, lang: str) -> dict[str, Any] | None:
        with self._lock:
            return self._done.get((run_id, lang))

    def get(self, ws: Workspace, run_id: str, lang: str) -> dict[str, Any] | None:
        """The cards (``{"cards": [...], "seconds": s}`` or ``{"error": ...}``), or None
        while they are being computed (the computation starts here if need be)."""
        key = (run_id, lang)
        with self._lock:
            if key in self._done:
                return self._done[key]
            if key in self._running:
                return None
            self._running.add(key)
        threading.Thread(target=self._compute, args=(ws, key), daemon=True).start()
        return None

    def _compute(self, ws: Workspace, key: tuple[str, str]) -> None:
        from segmint.profiles import personas

        run_id, lang = key
        started = time.perf_counter()
        found: dict[str, Any]
        try:
            with ws.project() as p:
                run = p.segment_run(run_id)
                made = personas(p.store, run, locale=lang, currency=p.config.currency)
            found = {"cards": [persona_card(x) for x in made]}
        except SegmintError as exc:
            found = {"error": str(exc)}
        except Exception:  # pragma: no cover - shown as a message, logged with its traceback
            log.exception("personas of run %s failed", run_id)
            found = {"error": "the personas could not be computed; see the service's log"}
        found["seconds"] = time.perf_counter() - started
        log.debug("personas of %s in %.2f s", run_id, found["seconds"])
        with self._lock:
            self._running.discard(key)
            self._done[key] = found
            while len(self._done) > self.size:
                self._done.popitem(last=False)


PERSONAS = PersonaCache()


def persona_card(persona: Any) -> dict[str, Any]:
    """What a card shows: the sentences, the key numbers, the traits, the top categories."""
    traits = persona.distinguishing
    labels = [str(x) for x in traits["label"].head(4)] if "label" in traits else []
    cats = persona.top_categories.head(3)
    return {
        "segment": persona.segment,
        "n_users": persona.n_users,
        "user_share": persona.user_share,
        "revenue_share": persona.revenue_share,
        "summary": persona.summary,
        "traits": labels,
        "categories": [(str(r["category"]), float(r["share"])) for _, r in cats.iterrows()],
    }


@router.get("/segments/{name}/personas", response_class=HTMLResponse)
def personas_part(request: Request, name: str, session: Viewer) -> HTMLResponse:
    ws = workspace(request)
    with ws.project() as p:
        run = latest_runs(p.store).get(name)
    if run is None:
        return fragment(request, "segments_personas_part.html.j2", found={"cards": []}, name=name)
    found = PERSONAS.get(ws, str(run["run_id"]), language_of(request).name)
    return fragment(request, "segments_personas_part.html.j2", found=found, name=name)


# -- export ------------------------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:40] or "all"


@router.post("/segments/{name}/export", response_model=None)
def export_segment(
    request: Request,
    name: str,
    session: Editor,
    segment: Annotated[str, Form()] = "",
    purpose: Annotated[str, Form()] = "",
    fmt: Annotated[str, Form()] = "csv",
) -> Response:
    """Write the members as a list (pseudonymous, or contacts for a consent purpose),
    record it, and show it on the segmentation's page with its download link."""
    ws = workspace(request)
    config = ws.config()
    fmt = fmt if fmt in ("csv", "xlsx") else "csv"
    if purpose and purpose not in config.consent.all_purposes:
        return _bad_export(request, name, N_("Choose a consent purpose from the list."))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    try:
        with ws.project() as p:
            out = p.root / EXPORT_DIR / f"{_slug(name)}-{_slug(segment)}-{stamp}.{fmt}"
            out.parent.mkdir(parents=True, exist_ok=True)
            rec = p.export_segment(
                name,
                out,
                segment=segment or None,
                fmt=fmt,
                purpose=purpose or None,
                command=f"workspace:{session.name}",
                actor=session.name,
            )
            record(p.store, session.name, "segment.export", name, segment=segment or None,
                   purpose=purpose or None, rows=rec.n_rows, left_out=rec.excluded,
                   export_id=rec.export_id, contact=rec.contact)  # fmt: skip
    except NotFoundError:
        return _not_found(request, name)
    except SegmintError as exc:
        return _bad_export(request, name, str(exc))
    return RedirectResponse(f"/segments/{name}?export={rec.export_id}#export", status_code=303)


def _bad_export(request: Request, name: str, text: str) -> HTMLResponse:
    from segmint.web._app import message

    return message(request, 400, N_("The list was not exported"), text, back=f"/segments/{name}")


@router.get("/segments/{name}/exports/{export_id}", response_model=None)
def download_export(request: Request, name: str, export_id: str, session: Editor) -> Response:
    """The file of an export made from the workspace (only files in its own folder)."""
    ws = workspace(request)
    with ws.project() as p:
        found = p.store.query(
            "SELECT path, segmentation FROM exports WHERE export_id = ?", [export_id]
        )
        folder = (p.root / EXPORT_DIR).resolve()
    path = Path(str(found.iat[0, 0])) if not found.empty else None
    if path is None or path.parent != folder or not path.exists() or found.iat[0, 1] != name:
        return _not_found(request, name)
    media = "text/csv; charset=utf-8" if path.suffix == ".csv" else None
    return FileResponse(path, filename=path.name, media_type=media)


# -- run now -----------------------------------------------------------------------------------
@router.post("/segments/{name}/run", response_model=None)
def run_segmentation(request: Request, name: str, session: Editor) -> Response:
    """Compute fresh features and run this segmentation now (as ``segmint segment NAME``)."""
    from segmint.web._app import message

    ws = workspace(request)
    if name not in ws.config().segmentations:
        return _not_found(request, name)
    started = time.perf_counter()
    try:
        with ws.project() as p:
            result = p.segment(name)
            seconds = time.perf_counter() - started
            record(p.store, session.name, "segment.run", name, run_id=result.run_id,
                   users=len(result.assignments), seconds=round(seconds, 2))  # fmt: skip
    except SegmintError as exc:
        return message(
            request, 400, N_("The segmentation did not run"), str(exc), back=f"/segments/{name}"
        )
    log.info("workspace: %s ran segmentation %s in %.1f s", session.name, name, seconds)
    return RedirectResponse(f"/segments/{name}?done=ran", status_code=303)
