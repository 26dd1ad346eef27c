"""Creating and editing a rule segmentation (``type: rules``) from the workspace.

The form holds ordered rows (segment name, condition over feature columns) and a default
segment. Every change is previewed (``POST /segments/preview``): the conditions are checked
and run exactly as ``segmint segment`` will (:func:`segmint.segments.run_segmentation`,
without saving, over the latest feature run), which gives the live count of users each rule
takes (first match wins) and the default's; the edit of ``segmint.yaml`` is validated as the
file is on load and shown as a diff. ``POST /segments/save`` does it all again and writes the
file only if it is still the one the editor was opened on (``base_sha``).

Routes: ``GET /segments/new`` (E), ``GET /segments/{name}/edit`` (E),
``POST /segments/preview`` (E), ``POST /segments/save`` (E).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from segmint.errors import ConfigError
from segmint.web._auth import Editor
from segmint.web._core import Workspace, fragment, page, record, workspace
from segmint.web._text import N_

router = APIRouter()

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
RESERVED = frozenset({"new", "preview", "save"})
MAX_RULES = 30


# -- the latest feature run, kept in memory between previews ----------------------------------
class FeatureFrame:
    """The latest feature run's frame (one per process; reloaded when a newer run exists)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._run_id: str | None = None
        self._frame: Any = None
        self._columns: list[dict[str, Any]] = []

    def get(self, p: Any) -> tuple[str | None, Any, list[dict[str, Any]]]:
        """(feature run id, frame, columns with their median) or (None, None, [])."""
        from segmint.store import latest_run_sql

        run_id = p.store.scalar(latest_run_sql("feature", columns="run_id"))
        if run_id is None:
            return None, None, []
        with self._lock:
            if run_id != self._run_id:
                frame = p.features(str(run_id))
                self._run_id, self._frame = str(run_id), frame
                self._columns = _columns(frame)
            return self._run_id, self._frame, self._columns


MONEY_PREDICTIONS = frozenset({"clv", "clv_low", "clv_high", "expected_order_value"})
"""Prediction columns that are amounts in the project's currency."""


def _columns(frame: Any) -> list[dict[str, Any]]:
    """The columns a condition may use, with their median (to help write thresholds);
    ``money`` for the amounts (the catalog's features in ``currency``)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    from segmint.features import CATALOG, PERSONAL_COLUMNS

    out = []
    for col in frame.columns:
        if col == "user_id" or col in PERSONAL_COLUMNS:
            continue
        series = frame[col]
        numeric = is_numeric_dtype(series) and not is_bool_dtype(series)
        spec = CATALOG.get(col)
        out.append(
            {
                "name": col,
                "median": float(series.median()) if numeric else None,
                "money": spec is not None and spec.unit == "currency",
            }
        )
    return out


FEATURES = FeatureFrame()


CHANGE_NOTE = N_("empty: needs a churn run at an earlier date (segmint predict churn --as-of)")


def _prediction_columns(p: Any) -> list[dict[str, Any]]:
    """The prediction columns a condition may use too (``clv``, ``churn_risk``, ...), with
    the median of the latest runs (``money``: an amount, :data:`MONEY_PREDICTIONS`); none
    before a first ``segmint predict`` run of their kind. ``churn_risk_change`` is listed with the churn run even while it is empty (no
    churn run at an earlier date yet), with a note saying what it needs."""
    from segmint.predict import PREDICTION_FEATURES, latest_predictions_sql

    medians = ", ".join(f"median({c}) AS {c}" for c in PREDICTION_FEATURES)
    row = p.store.query(f"SELECT {medians} FROM ({latest_predictions_sql()}) AS v").iloc[0]
    out = []
    for c in PREDICTION_FEATURES:
        if _has_value(row[c]):
            out.append({"name": c, "median": float(row[c]), "money": c in MONEY_PREDICTIONS})
        elif c == "churn_risk_change" and _has_value(row["churn_risk"]):
            out.append({"name": c, "median": None, "note": CHANGE_NOTE})
    return out


def _has_value(x: Any) -> bool:
    return x is not None and x == x


# -- the form ----------------------------------------------------------------------------------
@dataclass
class RuleForm:
    """What the editor sent: a new segmentation (``original`` empty) or an edit of one."""

    name: str = ""
    original: str = ""
    rules: list[tuple[str, str]] = field(default_factory=list)
    default: str = "Other"
    base_sha: str = ""

    @property
    def is_new(self) -> bool:
        return not self.original

    def spec(self) -> dict[str, Any]:
        return {
            "type": "rules",
            "rules": [{"segment": s, "when": w} for s, w in self.rules],
            "default": self.default,
        }


def _form(
    name: str, original: str, segments: list[str], whens: list[str], default: str, base_sha: str
) -> RuleForm:
    rows = [
        (s.strip(), " ".join(w.split()))
        for s, w in zip(segments, whens, strict=False)
        if s.strip() or w.strip()
    ]
    return RuleForm(
        name=(original or name).strip(),
        original=original.strip(),
        rules=rows[:MAX_RULES],
        default=default.strip(),
        base_sha=base_sha,
    )


Segments = Annotated[list[str], Form()]


@dataclass
class Checked:
    """The outcome of checking a form: errors, or the proposal and the live counts."""

    errors: list[str] = field(default_factory=list)
    proposal: Any = None
    counts: list[dict[str, Any]] = field(default_factory=list)
    default_count: dict[str, Any] | None = None
    n_users: int = 0
    feature_run: str | None = None
    stale: bool = False
    unchanged: bool = False
    """The form says what segmint.yaml says already (nothing to write)."""
    notes: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """Why a rule may match fewer users than expected: (text id, its arguments)."""


def _check_names(form: RuleForm, config: Any, stored: set[str]) -> list[str]:
    errors = []
    if form.is_new:
        if not NAME.match(form.name) or form.name.lower() in RESERVED:
            errors.append(
                "name: use 1 to 40 letters, digits, - or _, starting with a letter "
                "(not new, preview or save)"
            )
        elif form.name in config.segmentations or form.name in stored:
            errors.append(f"name: a segmentation named {form.name!r} exists already")
    else:
        spec = config.segmentations.get(form.original)
        if spec is None or spec.type != "rules":
            errors.append(f"{form.original!r} is not a rules segmentation of segmint.yaml")
    if not form.rules:
        errors.append("add at least one rule (a segment name and its condition)")
    for i, (segment, when) in enumerate(form.rules, start=1):
        if not segment or not when:
            errors.append(f"rule {i}: give both the segment's name and its condition")
    if not form.default:
        errors.append("default: name the segment of users no rule matches")
    return errors


def check(ws: Workspace, p: Any, form: RuleForm) -> Checked:
    """Validate the form as ``segmint.yaml`` and ``segmint segment`` would, and count."""
    from segmint.config import RulesSegmentation
    from segmint.web._config_edit import propose

    stored = {str(s) for s in p.store.query("SELECT DISTINCT segmentation FROM segment_runs")[
        "segmentation"]}  # fmt: skip
    config = ws.config()
    out = Checked(errors=_check_names(form, config, stored))
    if out.errors:
        return out
    now = config.segmentations.get(form.original)
    try:
        out.proposal = propose(ws.config_path, [(("segmentations", form.name), form.spec())])
    except ConfigError as exc:
        out.errors.append(str(exc))
        return out
    out.unchanged = now is not None and now.model_dump(mode="json") == form.spec()
    out.stale = bool(form.base_sha) and out.proposal.base_sha != form.base_sha
    out.feature_run, frame, _ = FEATURES.get(p)
    if frame is None:
        return out
    spec = RulesSegmentation.model_validate(form.spec())
    try:
        _count(p, form.name, spec, frame, out)
    except ConfigError as exc:
        out.errors.append(str(exc))
    return out


def _count(p: Any, name: str, spec: Any, frame: Any, out: Checked) -> None:
    """Run the rules as the segmentation will (errors name the rule), then once more with
    each rule as its own segment, for the count of users each rule takes."""
    from segmint.config import RuleSpec, RulesSegmentation
    from segmint.features import CustomFeature
    from segmint.segments import run_segmentation

    custom = [CustomFeature(n, c.expr, c.table) for n, c in p.config.features.custom.items()]
    # as `segmint segment` runs it: the project's predict: settings and custom features,
    # the predictions at the feature run's as-of date
    kw = {"save": False, "predict": p.config.predict, "custom_features": custom,
          "feature_run_id": out.feature_run}  # fmt: skip
    checked = run_segmentation(p.store, name, spec, frame, **kw)  # raises with the rule's name
    used = checked.details.get("predictions") or {}
    if "churn_risk_change" in used.get("columns", []) and not used.get("churn_previous"):
        out.notes.append((EMPTY_CHANGE, {"date": str(used.get("as_of", ""))[:10]}))
    keys = [f"#{i}" for i in range(len(spec.rules))]
    indexed = RulesSegmentation(
        type="rules",
        rules=[RuleSpec(segment=k, when=r.when) for k, r in zip(keys, spec.rules, strict=True)],
        default="#default",
    )
    metrics = run_segmentation(p.store, name, indexed, frame, **kw).metrics
    sizes, revenue = metrics["sizes"], metrics["revenue_share"]
    out.n_users = int(metrics["n_users"])
    n = out.n_users or 1
    for key, rule in zip(keys, spec.rules, strict=True):
        out.counts.append(
            {"segment": rule.segment, "when": rule.when, "n_users": sizes.get(key, 0),
             "share": sizes.get(key, 0) / n, "revenue_share": revenue.get(key, 0.0)}
        )  # fmt: skip
    size = sizes.get("#default", 0)
    out.default_count = {"segment": spec.default, "n_users": size, "share": size / n,
                         "revenue_share": revenue.get("#default", 0.0)}  # fmt: skip


EMPTY_CHANGE = N_("churn_risk_change is empty for every customer: it is the change of churn risk since a churn run at an earlier date, and there is no churn run before {date}. A condition on it matches nobody until one exists: stop the service and run segmint predict churn --as-of with an earlier date (a month before, say), or add a monthly predict job.")  # fmt: skip


# -- pages -------------------------------------------------------------------------------------
def _editor(
    request: Request, form: RuleForm, *, errors: list[str] | None = None, status: int = 200
) -> HTMLResponse:
    from segmint.web._config_edit import current

    ws = workspace(request)
    _, sha = current(ws.config_path)
    form.base_sha = form.base_sha or sha
    with ws.project() as p:
        feature_run, _, columns = FEATURES.get(p)
        columns = [*columns, *_prediction_columns(p)]
    return page(
        request,
        "segments_editor.html.j2",
        active="segments",
        title=N_("New rule segmentation") if form.is_new else N_("Edit rule segmentation"),
        form=form,
        errors=errors or [],
        columns=columns,
        feature_run=feature_run,
        status=status,
    )


@router.get("/segments/new", response_class=HTMLResponse)
def new_page(request: Request, session: Editor) -> HTMLResponse:
    return _editor(request, RuleForm(rules=[("", "")]))


@router.get("/segments/{name}/edit", response_class=HTMLResponse)
def edit_page(request: Request, name: str, session: Editor) -> HTMLResponse:
    from segmint.web._app import message

    spec = workspace(request).config().segmentations.get(name)
    if spec is None:
        return message(request, 404, N_("Not found"), N_("There is no segmentation by this name in segmint.yaml or in the store."), back="/segments")  # fmt: skip
    if spec.type != "rules":
        return message(request, 400, N_("Only rule segmentations are edited here"), N_("Change this segmentation in segmint.yaml; its page shows it as the file says."), back=f"/segments/{name}")  # fmt: skip
    form = RuleForm(name=name, original=name, rules=[(r.segment, r.when) for r in spec.rules],
                    default=spec.default)  # fmt: skip
    return _editor(request, form)


@router.post("/segments/preview", response_class=HTMLResponse)
def preview(
    request: Request,
    session: Editor,
    name: Annotated[str, Form()] = "",
    original: Annotated[str, Form()] = "",
    rule_segment: Segments = [],  # noqa: B006 - FastAPI copies defaults
    rule_when: Segments = [],  # noqa: B006
    default: Annotated[str, Form()] = "",
    base_sha: Annotated[str, Form()] = "",
) -> HTMLResponse:
    form = _form(name, original, rule_segment, rule_when, default, base_sha)
    ws = workspace(request)
    with ws.project() as p:
        checked = check(ws, p, form)
    # 200 even when invalid: the answer is a message to show, not a failed request
    return fragment(request, "segments_preview_part.html.j2", form=form, c=checked)


@router.post("/segments/save", response_model=None)
def save_rules(
    request: Request,
    session: Editor,
    name: Annotated[str, Form()] = "",
    original: Annotated[str, Form()] = "",
    rule_segment: Segments = [],  # noqa: B006
    rule_when: Segments = [],  # noqa: B006
    default: Annotated[str, Form()] = "",
    base_sha: Annotated[str, Form()] = "",
) -> Response:
    """Check again, write ``segmint.yaml`` if it did not change meanwhile, record it."""
    from segmint.web._config_edit import ConfigChangedError, save

    form = _form(name, original, rule_segment, rule_when, default, base_sha)
    ws = workspace(request)
    with ws.project() as p:
        checked = check(ws, p, form)
    if checked.errors:
        return _editor(request, form, errors=checked.errors, status=400)
    if checked.unchanged:
        return RedirectResponse(f"/segments/{form.name}", status_code=303)
    try:
        kept = save(ws.config_path, checked.proposal.text, form.base_sha)
    except ConfigChangedError as exc:
        form.base_sha = ""  # the editor reopens on the file as it is now
        return _editor(request, form, errors=[str(exc)], status=409)
    ws.note_saved()
    with ws.project() as p:
        record(p.store, session.name, "config.save", f"segmentations.{form.name}",
               new=form.is_new, rules=len(form.rules), kept=str(kept) if kept else None)  # fmt: skip
    return RedirectResponse(f"/segments/{form.name}?done=saved", status_code=303)
