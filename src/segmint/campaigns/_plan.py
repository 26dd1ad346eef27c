"""Planning a campaign: validate the playbook against the store, build the audience in
SQL, split it into stable arms, store the plan, and check every template on real users."""

from __future__ import annotations

import difflib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint._playbook import (
    ANY_SEGMENT,
    DEFAULT_CONTROL,
    CampaignSpec,
    FileChannelSpec,
    LifecycleTransitionTrigger,
    WebhookChannelSpec,
)
from segmint.campaigns._arms import design_from_params, make_design, run_designs
from segmint.campaigns._audience import (
    REASONS,
    AudienceSpec,
    ChannelRow,
    audience_sql,
    bucket_sql,
    hash_sql,
    index_suppressions,
)
from segmint.campaigns._messages import MessageBuilder, Recs
from segmint.campaigns._resolve import resolve_segments
from segmint.errors import ConfigError, NotFoundError
from segmint.store import Store, date_lit, latest_run_sql, lit, open_vault, ts_lit

if TYPE_CHECKING:
    from segmint.config import Config
    from segmint.store import Staging

__all__ = [
    "CampaignPlan",
    "PreviewMessage",
    "latest_plan",
    "load_audience",
    "plan_campaign",
    "preview",
    "validate_playbook",
]

log = logging.getLogger(__name__)

IN_SEGMENTS = "in the campaign's segments"
HOLDOUT = "holdout (control group)"


@dataclass(frozen=True)
class CampaignPlan:
    """One stored plan of a campaign.

    Attributes
    ----------
    run_id : str
        ``c-<timestamp>-<campaign>-<hex>``; the audience rows carry it.
    funnel : DataFrame
        ``step, excluded, remaining``: segment members, then one row per exclusion reason
        in order, then the holdout; the last ``remaining`` is the treatment group.
    n_treatment, n_control : int
        Users sent to (every arm but the control, summed) and held out (stored in
        ``campaign_audiences``; see :func:`load_audience`).
    by_segment : DataFrame
        ``segment, channel, treatment, control`` (treatment: every treated arm).
    control : str
        The control arm's label.
    split : dict of str to float
        The designed share of every arm (treated arms in order, then the control).
    n_by_arm : dict of str to int
        Users in each arm, in the order of ``split`` (an arm a user kept from an earlier
        design comes last).
    baseline, mde, warnings
        The planned audience's conversion rate in the 30 days before ``as_of``, the
        conversion MDE of each treatment arm against the control, and warnings when the
        control is too small (see :mod:`segmint.campaigns._plan_power`).
    """

    run_id: str
    campaign: str
    segmentation: str
    segment_run_id: str
    previous_run_id: str | None
    as_of: date
    created_at: datetime
    holdout: float
    funnel: pd.DataFrame
    n_eligible: int
    n_treatment: int
    n_control: int
    by_segment: pd.DataFrame = field(default_factory=pd.DataFrame)
    status: str = "planned"
    seconds: float = 0.0
    control: str = DEFAULT_CONTROL
    split: dict[str, float] = field(default_factory=dict)
    n_by_arm: dict[str, int] = field(default_factory=dict)
    baseline: float | None = None
    mde: dict[str, float | None] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "run_id": self.run_id,
            "campaign": self.campaign,
            "segmentation": self.segmentation,
            "segment_run_id": self.segment_run_id,
            "previous_run_id": self.previous_run_id,
            "as_of": self.as_of.isoformat(),
            "created_at": self.created_at.isoformat(),
            "holdout": self.holdout,
            "status": self.status,
            "n_eligible": self.n_eligible,
            "n_treatment": self.n_treatment,
            "n_control": self.n_control,
            "control": self.control,
            "split": dict(self.split),
            "n_by_arm": dict(self.n_by_arm),
            "funnel": self.funnel.to_dict("records"),
            "by_segment": self.by_segment.to_dict("records"),
            "baseline": self.baseline,
            "mde": dict(self.mde),
            "warnings": list(self.warnings),
        }


def _campaign(config: Config, name: str) -> CampaignSpec:
    campaigns = config.playbook.campaigns
    if name not in campaigns:
        close = difflib.get_close_matches(name, list(campaigns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(campaigns) or "(none: add playbook.campaigns, or `segmint playbook init`)"
        raise NotFoundError(
            f"no campaign named {name!r} in segmint.yaml{hint} (campaigns: {known})"
        )
    if "|" in name:
        raise ConfigError(f"campaign name {name!r} must not contain '|'")
    return campaigns[name]


def _segment_runs(store: Store, segmentation: str) -> list[str]:
    if not store.scalar("SELECT count(*) FROM segment_runs"):
        raise NotFoundError(
            f"no segmentation runs in the store; run `segmint segment {segmentation}` first"
        )
    runs = store.query(
        "SELECT run_id FROM segment_runs WHERE segmentation = "
        f"{lit(segmentation)} ORDER BY created_at DESC, run_id DESC LIMIT 2"
    )
    if runs.empty:
        raise NotFoundError(
            f"segmentation {segmentation!r} has no run yet; run `segmint segment {segmentation}`"
        )
    return [str(r) for r in runs["run_id"]]


def _run_segments(store: Store, run_id: str) -> list[str]:
    frame = store.query(
        "SELECT DISTINCT segment FROM segment_assignments "
        f"WHERE run_id = {lit(run_id)} ORDER BY segment"
    )
    return [str(s) for s in frame["segment"]]


def validate_playbook(store: Store, config: Config, name: str | None = None) -> list[str]:
    """Check the playbook's segment names against the latest run of each segmentation.

    The loader already checked channels, templates and their fields; this checks what only
    the store knows: every segment named by a strategy or a campaign exists in the latest
    run of its segmentation, directly or, for clusterings, through the cluster's identity
    (a ``cluster:`` pin, a cluster key, or a name it had in an earlier run, matched by
    centroid; see :mod:`segmint.campaigns._resolve`).

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    config : segmint.Config
        The project configuration.
    name : str, optional
        Only this campaign (and the strategies of its segmentation).

    Returns
    -------
    list of str
        What moved: renamed or renumbered clusters whose strategy was kept, new clusters
        without a strategy, strategies whose cluster is gone.

    Raises
    ------
    segmint.errors.ConfigError
        Listing every unknown segment with a did-you-mean.
    segmint.errors.NotFoundError
        When a segmentation has no run.
    """
    playbook = config.playbook
    if name is not None:
        wanted = {_campaign(config, name).segmentation}
    else:
        wanted = set(playbook.strategies) | {c.segmentation for c in playbook.campaigns.values()}
    problems = []
    notes: list[str] = []
    for segmentation in sorted(wanted):
        run = _segment_runs(store, segmentation)[0]
        known = _run_segments(store, run)
        resolution = resolve_segments(store, playbook, segmentation, run, known)
        notes += resolution.notes()
        named = [(f"strategies.{segmentation}", m) for m in resolution.matches]
        for cname, c in playbook.campaigns.items():
            if c.segmentation == segmentation and c.segments != "all" and name in (None, cname):
                named += [
                    (f"campaigns.{cname}.segments", resolution.segment_for(s)) for s in c.segments
                ]
        for where, match in named:
            if match.how == "unknown":
                seg = match.strategy
                close = difflib.get_close_matches(seg, known, n=1, cutoff=0.5)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"playbook.{where}: unknown segment {seg!r}{hint}; the latest {segmentation} "
                    f"run ({run}) has: {', '.join(known)}"
                )
    if problems:
        raise ConfigError("invalid playbook:\n  " + "\n  ".join(problems))
    return notes


def _targets(
    store: Store, config: Config, spec: CampaignSpec, run: str
) -> tuple[list[str], dict[str, str]]:
    """The campaign's segments in run ``run``, and segment -> strategy key."""
    known = _run_segments(store, run)
    resolution = resolve_segments(store, config.playbook, spec.segmentation, run, known)
    keys = resolution.strategy_keys()
    if spec.segments == "all":
        if ANY_SEGMENT in config.playbook.strategies[spec.segmentation]:
            return known, keys
        return [s for s in known if s in keys], keys
    targeted = []
    for name in spec.segments:
        segment = resolution.segment_for(name).segment
        if segment is not None and segment in known and segment not in targeted:
            targeted.append(segment)
    return targeted, keys


def _channel_rows(
    config: Config, spec: CampaignSpec, segments: list[str], keys: dict[str, str] | None = None
) -> list[ChannelRow]:
    rows = []
    for seg in segments:
        strategy = config.playbook.strategy_for(spec.segmentation, seg, keys)
        assert strategy is not None
        for pref, ch in enumerate(spec.channels or strategy.channels):
            chspec = config.playbook.channels[ch]
            if isinstance(chspec, WebhookChannelSpec):
                address = "user_id"
            elif isinstance(chspec, FileChannelSpec):
                address = chspec.address
            else:
                address = "email"
            shares = isinstance(chspec, WebhookChannelSpec | FileChannelSpec)  # third parties
            rows.append(ChannelRow(seg, pref, ch, chspec.consent, address, shares))
    return rows


def arm_sql(bucket: str, split: dict[str, float], control: str) -> str:
    """SQL giving the arm of a bucket in [0, 1): the control below its share, then each
    treated arm in order up to its cumulative share (the last one takes the rest)."""
    treated = [a for a in split if a != control]
    bound = split[control]
    whens = [f"WHEN {bucket} < {float(bound)!r} THEN {lit(control)}"]
    for arm in treated[:-1]:
        bound += split[arm]
        whens.append(f"WHEN {bucket} < {float(bound)!r} THEN {lit(arm)}")
    return f"CASE {' '.join(whens)} ELSE {lit(treated[-1])} END"


def _arm_counts(store: Store, run_id: str, control: str) -> tuple[pd.DataFrame, pd.Series]:
    """By segment and channel (treated arms together, control), and users per arm."""
    c = lit(control)
    by_segment = store.query(
        f"SELECT segment, channel, count(*) FILTER (WHERE arm <> {c}) AS treatment, "
        f"count(*) FILTER (WHERE arm = {c}) AS control FROM campaign_audiences "
        f"WHERE run_id = {lit(run_id)} GROUP BY segment, channel ORDER BY segment, channel"
    )
    for col in ("treatment", "control"):
        by_segment[col] = pd.to_numeric(by_segment[col]).astype("int64")
    arms = store.query(
        "SELECT arm, count(*) AS n FROM campaign_audiences "
        f"WHERE run_id = {lit(run_id)} GROUP BY arm ORDER BY arm"
    )
    by_arm = pd.Series(
        pd.to_numeric(arms["n"]).astype("int64").to_numpy(), index=arms["arm"].astype(str)
    )
    return by_segment, by_arm


def _ordered_counts(by_arm: pd.Series, split: dict[str, float]) -> dict[str, int]:
    out = {a: int(by_arm.get(a, 0)) for a in split}
    out.update({str(a): int(n) for a, n in by_arm.items() if a not in out})
    return out


def _unset_arm_keys(spec: CampaignSpec) -> set[str] | None:
    """The arm keys a campaign without variants leaves out of its stored spec (as before)."""
    return {"variants", "control"} if spec.variants is None and spec.control is None else None


def _design_params(split: dict[str, float], control: str) -> dict[str, Any]:
    """``control`` and ``split`` for the run's params (:mod:`segmint.campaigns._arms`);
    nothing for a campaign without a control group (its ``holdout`` 0 says it all)."""
    if split[control] <= 0:
        return {}
    return make_design(split, control).to_params()


def _same_control(store: Store, campaign: str, control: str) -> None:
    """Refuse a control label other than the one earlier plans recorded: their control
    users keep their arm, and under a new label they would be sent to."""
    earlier = {d.control for d in run_designs(store, campaign).values() if d.split}
    if earlier and earlier != {control}:
        raise ConfigError(
            f"campaign {campaign!r}: earlier plans named the control arm "
            f"{', '.join(sorted(earlier))!r}, this configuration {control!r}; its users keep "
            f"their arm, so set `control: {sorted(earlier)[0]}` again (or start a campaign "
            "under a new name)"
        )


def new_run_id(campaign: str, now: datetime) -> str:
    """``c-YYYYmmddTHHMMSS-<campaign>-xxxxxx`` (sorts by creation time)."""
    return f"c-{now.strftime('%Y%m%dT%H%M%S')}-{campaign}-{secrets.token_hex(3)}"


_PLAN_COLUMNS = dict.fromkeys(
    ("user_id", "segment", "channel", "step", "idempotency_key", "reason"), "VARCHAR"
)
"""The columns of :func:`~segmint.campaigns.audience_sql`, as staged in the engine."""

_AUDIENCE_COLUMNS = (
    "run_id", "campaign", "user_id", "segment", "channel", "step", "arm", "idempotency_key",
)  # fmt: skip
"""The columns of ``campaign_audiences``."""


def _insert_audience(
    store: Store,
    stage: Staging,
    plan: str,
    name: str,
    run_id: str,
    split: dict[str, float],
    control: str,
    now: datetime,
) -> None:
    """The eligible rows of staged ``plan`` into ``campaign_audiences``, each with its arm
    (a user's first arm is kept; new users by the hash of campaign and user), and the new
    users' arms into ``campaign_assignments``."""
    c = lit(name)
    assigned = stage.from_store(
        "assigned",
        f"SELECT user_id, arm FROM campaign_assignments WHERE campaign = {c}",
        dict.fromkeys(("user_id", "arm"), "VARCHAR"),
    )
    audience = stage.table(
        "audience",
        f"SELECT {lit(run_id)} AS run_id, {c} AS campaign, p.user_id, p.segment, p.channel, "
        f"p.step, coalesce(x.arm, {arm_sql(bucket_sql('p.h'), split, control)}) AS arm, "
        "p.idempotency_key, p.h, x.arm IS NULL AS is_new FROM (SELECT q.*, "
        f"{hash_sql(name, 'q.user_id')} AS h FROM {plan} q WHERE q.reason IS NULL) p "
        f"LEFT JOIN {assigned} x ON x.user_id = p.user_id",
    )
    stage.write("campaign_audiences", audience, _AUDIENCE_COLUMNS)
    stage.write(
        "campaign_assignments",
        f"(SELECT {c} AS campaign, a.user_id, a.arm, {bucket_sql('a.h')} AS bucket, "
        f"{ts_lit(now)} AS assigned_at, {lit(run_id)} AS run_id FROM {audience} a "
        "WHERE a.is_new)",
        ["campaign", "user_id", "arm", "bucket", "assigned_at", "run_id"],
    )


# long on purpose: a 50-line docstring; the ~95-line body is one transaction whose steps
# share a staging area (splitting it would pass the transaction and the stage around)
def plan_campaign(
    store: Store,
    config: Config,
    name: str,
    *,
    as_of: date | None = None,
    now: datetime | None = None,
    recs: Recs | None = None,
) -> CampaignPlan:
    """Build and store a campaign's audience: funnel, arms, and a template check.

    The audience is built in SQL in the store: members of the campaign's segments in the
    latest run of its segmentation (for ``lifecycle_transition``, minus those already in
    the segment at the previous run), whose trigger holds on ``as_of`` (birthday within N
    days, inside the promotion window), then without an active unsubscribe, with consent
    for a channel of their strategy and the campaign's purpose (the latest consent row per
    user, channel and purpose wins), not suppressed, under the frequency cap (deliveries
    of any campaign in the rolling window) and with a usable address. Each exclusion is
    counted under the first reason that applies. The eligible are split by a stable hash
    of (campaign, user) into control (``holdout`` share) and treatment, or, with
    ``variants``, the control and then each variant by cumulative share of the same number;
    a user's first arm is stored and kept on every later plan.

    Parameters
    ----------
    store : segmint.store.Store
        The store (DuckDB or PostgreSQL).
    config : segmint.Config
        The project configuration with a ``playbook:`` section.
    name : str
        The campaign (``playbook.campaigns``).
    as_of : date, optional
        The plan date for triggers (today, UTC, by default).
    now : datetime, optional
        The instant the frequency-cap window ends (now by default).
    recs : mapping, optional
        user_id -> recommendations, used instead of the stored batch run.

    Returns
    -------
    CampaignPlan
        The stored plan.

    Raises
    ------
    segmint.errors.ConfigError
        Unknown segment (with a did-you-mean), or a template that does not render
        (:class:`~segmint.errors.TemplateError`): nothing is stored then.
    segmint.errors.NotFoundError
        Unknown campaign, or a segmentation without a run (two runs for
        ``lifecycle_transition``).
    """
    started = time.perf_counter()
    spec = _campaign(config, name)
    now = now or datetime.now(UTC)
    as_of = as_of or now.astimezone(UTC).date()
    validate_playbook(store, config, name)
    runs = _segment_runs(store, spec.segmentation)
    segment_run, previous = runs[0], (runs[1] if len(runs) > 1 else None)
    if isinstance(spec.trigger, LifecycleTransitionTrigger) and previous is None:
        raise NotFoundError(
            f"campaign {name!r} targets users newly entering a segment, which needs two runs "
            f"of {spec.segmentation!r}; only {segment_run} exists. Run `segmint segment "
            f"{spec.segmentation}` again after new data arrives"
        )
    targeted, keys = _targets(store, config, spec, segment_run)
    holdout = config.playbook.holdout if spec.holdout is None else spec.holdout
    split = spec.arms(config.playbook.holdout)
    control = list(split)[-1]
    _same_control(store, name, control)
    run_id = new_run_id(name, now)
    builder = MessageBuilder(store, config, name, run_id, segment_run, recs=recs, control=control)
    builder.check_templates()  # every template against the full field schema, before SQL
    aspec = AudienceSpec(
        campaign=name,
        segment_run_id=segment_run,
        previous_run_id=previous,
        segments=tuple(targeted),
        channels=tuple(_channel_rows(config, spec, targeted, keys)),
        purpose=spec.purpose,
        trigger=spec.trigger,
        as_of=as_of,
        now=now,
        cap=spec.frequency_cap or config.playbook.frequency_cap,
        step=spec.step,
    )
    sql = audience_sql(aspec)
    index_suppressions(store, open_vault(store, config))  # suppressions from before issue 21
    with store.staging() as stage, store.transaction():
        staged = stage.from_store("plan", sql, _PLAN_COLUMNS)
        counts = stage.query(f"SELECT reason, count(*) AS n FROM {staged} GROUP BY reason")
        _insert_audience(store, stage, staged, name, run_id, split, control, now)
        by_segment, by_arm = _arm_counts(store, run_id, control)
        n_treatment = int(by_segment["treatment"].sum())
        n_control = int(by_segment["control"].sum())
        funnel = _funnel(counts, n_control)
        n_eligible = n_treatment + n_control
        # every template on the first real user of each segment and arm: fail now, not
        # at send
        builder.check_templates(builder.first_contexts())
        builder.audit(why="campaign plan: templates tried on real users")
        params = {
            "campaign": spec.model_dump(mode="json", exclude=_unset_arm_keys(spec)),
            **_design_params(split, control),
            "holdout": holdout,
            "segments": targeted,
            "frequency_cap": aspec.cap.model_dump(),
        }
        store.execute(
            "INSERT INTO campaign_runs (run_id, campaign, created_at, as_of, segmentation, "
            "segment_run_id, previous_run_id, status, n_eligible, n_treatment, n_control, "
            f"params, funnel) VALUES ({lit(run_id)}, {lit(name)}, {ts_lit(now)}, "
            f"{date_lit(as_of)}, {lit(spec.segmentation)}, "
            f"{lit(segment_run)}, {lit(previous) if previous else 'NULL'}, 'planned', "
            f"{n_eligible}, {n_treatment}, {n_control}, "
            f"CAST({lit(json.dumps(params))} AS JSON), "
            f"CAST({lit(funnel.to_json(orient='records'))} AS JSON))"
        )
    seconds = time.perf_counter() - started
    log.info(
        "campaign %s: planned %s, %d eligible (%d treatment, %d control) in %.2fs",
        name, run_id, n_eligible, n_treatment, n_control, seconds,
    )  # fmt: skip
    from segmint.campaigns._plan_power import with_power

    plan = CampaignPlan(
        run_id=run_id,
        campaign=name,
        segmentation=spec.segmentation,
        segment_run_id=segment_run,
        previous_run_id=previous,
        as_of=as_of,
        created_at=now,
        holdout=holdout,
        funnel=funnel,
        n_eligible=n_eligible,
        n_treatment=n_treatment,
        n_control=n_control,
        by_segment=by_segment,
        seconds=seconds,
        control=control,
        split=split,
        n_by_arm=_ordered_counts(by_arm, split),
    )
    return with_power(store, plan)


def mask_email(email: str | None) -> str | None:
    """``jane.doe@example.com`` -> ``j***@example.com`` (previews never show addresses)."""
    if not email or "@" not in email:
        return None if not email else "***"
    local, domain = email.split("@", 1)
    return f"{local[:1]}***@{domain}"


def _funnel(counts: pd.DataFrame, n_control: int) -> pd.DataFrame:
    by_reason = {
        (None if r is None or r != r else str(r)): int(n)
        for r, n in zip(counts["reason"], counts["n"], strict=True)
    }
    remaining = sum(by_reason.values())
    rows = [(IN_SEGMENTS, 0, remaining)]
    for reason in REASONS:
        n = by_reason.get(reason, 0)
        remaining -= n
        rows.append((reason, n, remaining))
    rows.append((HOLDOUT, n_control, remaining - n_control))
    return pd.DataFrame(rows, columns=["step", "excluded", "remaining"])


def latest_plan(store: Store, campaign: str) -> CampaignPlan | None:
    """The newest stored plan of a campaign, or None."""
    rid = store.scalar(latest_run_sql("campaign", campaign=campaign))
    return None if rid is None else load_plan(store, str(rid))


def load_plan(store: Store, run_id: str) -> CampaignPlan:
    """A stored plan by run id (or the start of one, see :func:`segmint._ids.by_prefix`)."""
    frame = store.query(f"SELECT * FROM campaign_runs WHERE run_id = {lit(run_id)}")
    if frame.empty:
        from segmint._ids import by_prefix

        full = by_prefix(store, "campaign_runs", "run_id", run_id, what="campaign plan")
        if full is not None:
            frame = store.query(f"SELECT * FROM campaign_runs WHERE run_id = {lit(full)}")
            run_id = full
    if frame.empty:
        raise NotFoundError(f"no campaign run {run_id!r}; see `segmint campaign plan`")
    row = frame.iloc[0]
    params = json.loads(row["params"]) if row["params"] else {}
    funnel = pd.DataFrame(json.loads(row["funnel"]) if row["funnel"] else [])
    design = design_from_params(params)
    by_segment, by_arm = _arm_counts(store, run_id, design.control)
    as_of = pd.Timestamp(row["as_of"]).date()
    created = pd.Timestamp(row["created_at"])
    created = created.tz_localize("UTC") if created.tzinfo is None else created
    prev = row["previous_run_id"]
    return CampaignPlan(
        run_id=str(row["run_id"]),
        campaign=str(row["campaign"]),
        segmentation=str(row["segmentation"]),
        segment_run_id=str(row["segment_run_id"]),
        previous_run_id=None if prev is None or prev != prev else str(prev),
        as_of=as_of,
        created_at=created.to_pydatetime(),
        holdout=float(params.get("holdout", 0.0)),
        funnel=funnel,
        n_eligible=int(row["n_eligible"]),
        n_treatment=int(row["n_treatment"]),
        n_control=int(row["n_control"]),
        by_segment=by_segment,
        status=str(row["status"]),
        control=design.control,
        split=dict(design.split),
        n_by_arm=_ordered_counts(by_arm, design.split),
    )


def load_audience(store: Store, run_id: str, arm: str | None = None) -> pd.DataFrame:
    """The stored audience of a plan: ``user_id, segment, channel, step, arm,
    idempotency_key`` (optionally one arm), sorted by user."""
    where = f"run_id = {lit(run_id)}" + (f" AND arm = {lit(arm)}" if arm else "")
    return store.query(
        "SELECT user_id, segment, channel, step, arm, idempotency_key FROM campaign_audiences "
        f"WHERE {where} ORDER BY user_id"
    )


@dataclass(frozen=True)
class PreviewMessage:
    """One rendered example (the address masked; ``html`` is the HTML body when the
    template has one)."""

    user_id: str
    segment: str
    channel: str
    to: str | None
    subject: str
    body: str
    message_id: str
    arm: str = ""
    html: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def preview(
    store: Store,
    config: Config,
    name: str,
    n: int = 5,
    *,
    run_id: str | None = None,
    recs: Recs | None = None,
    actor: str | None = None,
) -> list[PreviewMessage]:
    """Render real messages of a campaign's plan (the latest; planned now if none).

    Examples are taken round-robin across segments and treated arms, so each strategy
    and each variant shows up. Nothing is
    sent or logged as a delivery.

    Parameters
    ----------
    store : segmint.store.Store
        The store.
    config : segmint.Config
        The project configuration.
    name : str
        The campaign.
    n : int, default 5
        Number of messages.
    run_id : str, optional
        A specific plan.
    recs : mapping, optional
        user_id -> recommendations, instead of the stored batch run.
    actor : str, optional
        Who asks, for the audit log (one ``personal.read`` entry for the values opened);
        the operating-system user by default.

    Returns
    -------
    list of PreviewMessage
    """
    _campaign(config, name)
    plan = load_plan(store, run_id) if run_id else latest_plan(store, name)
    if plan is None:
        plan = plan_campaign(store, config, name, recs=recs)
    builder = MessageBuilder(
        store, config, name, plan.run_id, plan.segment_run_id, recs=recs, control=plan.control
    )
    rows = builder.rows(
        "a.idempotency_key IN (SELECT idempotency_key FROM (SELECT b.idempotency_key, "
        "row_number() OVER (PARTITION BY b.segment, b.arm ORDER BY b.idempotency_key) AS rn "
        f"FROM campaign_audiences b WHERE b.run_id = {lit(plan.run_id)} "
        f"AND b.{builder.treated}) r WHERE r.rn <= {int(n)})"
    )
    if rows.empty:
        return []
    rows["_rn"] = rows.groupby(["segment", "arm"]).cumcount()
    rows = rows.sort_values(["_rn", "segment", "arm"], kind="stable").head(n)
    rows = rows.drop(columns="_rn")
    out = []
    builder.actor = actor
    messages = builder.messages(rows.reset_index(drop=True))
    builder.audit(why="campaign preview")
    for pm in messages:
        m = pm.message
        out.append(
            PreviewMessage(
                m.user_id,
                pm.segment,
                pm.channel,
                mask_email(m.to),
                m.subject,
                m.body,
                m.message_id,
                str(m.payload.get("arm", "")),
                m.html,
            )
        )
    return out
