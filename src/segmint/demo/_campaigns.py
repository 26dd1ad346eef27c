"""The campaign part of ``make demo``: default playbook, plans with funnels, two previews,
real sends to local sinks started here (SMTP via aiosmtpd, a webhook endpoint), counts.

Orchestration over a whole project (it opens the project and writes its playbook into
``segmint.yaml``), so it lives here, above the layers, not in :mod:`segmint.campaigns`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from segmint.campaigns import (
    CampaignPlan,
    Channel,
    EmailChannel,
    EmailChannelSpec,
    PreviewMessage,
    SendReport,
    SmtpSink,
    WebhookChannel,
    WebhookChannelSpec,
    WebhookSink,
    default_playbook,
    plan_campaign,
    preview,
    send_campaign,
)
from segmint.errors import SegmintError
from segmint.store import Vault, is_sealed, open_vault

if TYPE_CHECKING:
    from segmint.store import Store

__all__ = ["DemoCampaigns", "run_demo_campaigns"]

log = logging.getLogger(__name__)


@dataclass
class DemoCampaigns:
    """What :func:`run_demo_campaigns` did.

    Attributes
    ----------
    plans : dict
        Campaign -> its plan (funnel in ``plan.funnel``).
    reports : dict
        Campaign -> its send report.
    skipped : dict
        Campaign -> why it was not planned (e.g. a transition without a previous run).
    previews : list of PreviewMessage
        Rendered examples (of ``preview_campaign``).
    smtp_received, smtp_recipients, webhook_received : int
        What the local sinks received (messages, distinct recipients, POSTs).
    control_received : int
        Messages the sinks received for control-group users (always 0).
    wrote_playbook : bool
        Whether the default playbook was added to segmint.yaml.
    """

    plans: dict[str, CampaignPlan] = field(default_factory=dict)
    reports: dict[str, SendReport] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    previews: list[PreviewMessage] = field(default_factory=list)
    preview_campaign: str | None = None
    smtp_received: int = 0
    smtp_recipients: int = 0
    webhook_received: int = 0
    control_received: int = 0
    wrote_playbook: bool = False

    def table(self) -> pd.DataFrame:
        """One row per campaign: eligible, treatment, control, sent, failed, rejected."""
        rows = []
        for name, plan in self.plans.items():
            r = self.reports.get(name)
            rows.append(
                {
                    "campaign": name,
                    "segmentation": plan.segmentation,
                    "in_segments": int(plan.funnel["remaining"].to_numpy()[0]),
                    "capped": int(
                        plan.funnel.set_index("step")["excluded"].get("frequency cap reached", 0)
                    ),
                    "eligible": plan.n_eligible,
                    "treatment": plan.n_treatment,
                    "control": plan.n_control,
                    "sent": r.sent if r else 0,
                    "failed": r.failed if r else 0,
                    "rejected": r.rejected if r else 0,
                }
            )
        return pd.DataFrame(rows)


def run_demo_campaigns(
    project_path: str | Path,
    *,
    campaigns: Sequence[str] | None = None,
    n_preview: int = 2,
    preview_campaign: str | None = None,
    group_size: int = 100,
    callback: Callable[[str], None] | None = None,
) -> DemoCampaigns:
    """Build the default playbook (if the project has none), then plan, preview and send
    every campaign to local sinks this function starts and stops.

    Campaigns are planned and sent one after the other, so the frequency cap of later
    campaigns counts the messages of earlier ones. The e-mail and push channels are pointed
    at the sinks (127.0.0.1, free ports); nothing leaves the machine.

    Parameters
    ----------
    project_path : str or Path
        The demo project folder (segmented: rfm, lifecycle, value, clusters).
    campaigns : sequence of str, optional
        Only these (default: every campaign of the playbook).
    n_preview : int, default 2
        Messages to render as examples.
    preview_campaign : str, optional
        The campaign to preview (default: the first with a treatment group whose
        strategies include recommendations, else the first with a treatment group).
    group_size : int, default 100
        Messages per delivery-log commit (see :func:`send_campaign`): the demo favours
        speed (~75 s for the 55k messages of a 50k-user demo; 1, the library's default,
        takes ~4 min).
    callback : callable, optional
        ``callback(stage)`` for progress display.

    Returns
    -------
    DemoCampaigns
    """
    import segmint

    root = Path(project_path)
    out = DemoCampaigns()
    out.wrote_playbook = _ensure_playbook(root)
    with (
        segmint.open_project(root) as p,
        SmtpSink(keep_messages=False) as smtp,
        WebhookSink() as hook,
    ):
        store, config = p.store, p.config
        channels = _local_channels(config, smtp_port=smtp.port, hook_url=hook.url)
        names = list(campaigns) if campaigns else list(config.playbook.campaigns)
        for name in names:
            _plan_and_send(
                store,
                config,
                name,
                out,
                channels=channels,
                chosen=lambda: preview_campaign or _preview_choice(config, names),
                n_preview=n_preview,
                group_size=group_size,
                callback=callback,
            )
        if not out.previews:  # the preferred campaign had nobody to send to
            _preview_first_sent(store, config, out, n_preview=n_preview)
        out.smtp_received = smtp.n_received
        out.smtp_recipients = len(smtp.by_recipient)
        out.webhook_received = len(hook.requests)
        out.control_received = _control_received(
            store, open_vault(store, config), out.plans, smtp.by_campaign
        )
    return out


def _ensure_playbook(root: Path) -> bool:
    """Append the default playbook to ``segmint.yaml`` when the project has no campaigns;
    True when it did."""
    import segmint

    with segmint.open_project(root) as p:
        if p.config.playbook.campaigns:
            return False
        text = default_playbook(p.config, store=p.store)
        path = root / "segmint.yaml"
        path.write_text(path.read_text(encoding="utf-8").rstrip() + "\n\n" + text, encoding="utf-8")
    return True


def _local_channels(config: Any, *, smtp_port: int, hook_url: str) -> dict[str, Channel]:
    """The playbook's channels pointed at the local sinks (127.0.0.1, no rate limits)."""
    channels: dict[str, Channel] = {}
    for name, spec in config.playbook.channels.items():
        if isinstance(spec, EmailChannelSpec):
            # the local sink needs no rate limit (the playbook's is for a real server)
            local = spec.model_copy(
                update={"host": "127.0.0.1", "port": smtp_port, "rate_per_second": None}
            )
            channels[name] = EmailChannel(local, name)
        elif isinstance(spec, WebhookChannelSpec):
            # the demo's endpoint checks nothing: unsigned unless the env var is set
            import os

            env = spec.secret_env if spec.secret_env and os.environ.get(spec.secret_env) else None
            hook_spec = spec.model_copy(
                update={"url": hook_url, "secret_env": env, "rate_per_second": None}
            )
            channels[name] = WebhookChannel(hook_spec, name)
    return channels


def _plan_and_send(
    store: Store,
    config: Any,
    name: str,
    out: DemoCampaigns,
    *,
    channels: dict[str, Channel],
    chosen: Callable[[], str | None],
    n_preview: int,
    group_size: int,
    callback: Callable[[str], None] | None,
) -> None:
    """Plan one campaign (or record why not), preview it when it is the ``chosen()`` one
    and nothing was previewed yet, then send it; results go into ``out``."""
    if callback:
        callback(f"plan {name}")
    try:
        plan = plan_campaign(store, config, name)
    except SegmintError as exc:
        out.skipped[name] = str(exc)
        return
    out.plans[name] = plan
    if not out.previews and plan.n_treatment and name == chosen():
        out.previews = preview(store, config, name, n=n_preview, run_id=plan.run_id)
        out.preview_campaign = name
    if callback:
        callback(f"send {name} ({plan.n_treatment:,} messages)")
    out.reports[name] = send_campaign(
        store, config, name, plan=plan, channels=channels, group_size=group_size
    )


def _preview_first_sent(store: Store, config: Any, out: DemoCampaigns, *, n_preview: int) -> None:
    """Preview the first planned campaign with a treatment group (if any)."""
    first = next((p for p in out.plans.values() if p.n_treatment), None)
    if first is not None:
        out.previews = preview(store, config, first.campaign, n=n_preview, run_id=first.run_id)
        out.preview_campaign = first.campaign


def _control_received(
    store: Store,
    vault: Vault,
    plans: dict[str, CampaignPlan],
    by_campaign: dict[tuple[str, str], int],
) -> int:
    """Messages the SMTP sink received for users of a control arm (should be 0)."""
    held_out = " OR ".join("(x.campaign = ? AND x.arm = ?)" for _ in plans)
    params = [value for c, plan in plans.items() for value in (c, plan.control)]
    control = store.query(
        "SELECT x.campaign AS campaign, u.email_index AS email_index, u.email AS email FROM "
        "campaign_assignments x JOIN users u ON u.user_id = x.user_id "
        f"WHERE {held_out or 'FALSE'}",
        params or None,
    )
    # the sink counts by recipient address: compare blind indexes, nothing is decrypted
    received: Counter[tuple[str, str | None]] = Counter()
    for (c, address), n in by_campaign.items():
        received[(c, vault.index(address, "email"))] += n
    n = 0
    for c, index, email in zip(
        control["campaign"], control["email_index"], control["email"], strict=True
    ):
        if not isinstance(index, str) and isinstance(email, str) and not is_sealed(email):
            index = vault.index(email, "email")  # stored in clear, before issue 21
        n += received.get((c, index), 0) if isinstance(index, str) else 0
    return n


def _preview_choice(config: Any, names: Sequence[str]) -> str | None:
    """The first campaign whose strategies include recommendations (else the first)."""
    for name in names:
        spec = config.playbook.campaigns[name]
        strategies = config.playbook.strategies.get(spec.segmentation, {})
        wanted = strategies if spec.segments == "all" else spec.segments
        if any(
            (st := config.playbook.strategy_for(spec.segmentation, seg)) is not None
            and st.include_recommendations
            and st.offer.type != "none"
            for seg in wanted
        ):
            return str(name)
    return names[0] if names else None
