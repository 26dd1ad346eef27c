"""Campaigns: a playbook from segments to actions, audiences with consent, frequency caps
and holdouts, real channels, exactly-once delivery.

Typical use::

    from segmint.campaigns import plan_campaign, preview, send_campaign

    plan = plan_campaign(store, config, "winback")     # funnel, arms, template check
    print(plan.funnel)
    for m in preview(store, config, "winback", n=2):
        print(m.subject, m.body)
    report = send_campaign(store, config, "winback")   # resumable, exactly once per key

The playbook lives in ``segmint.yaml`` under ``playbook:`` (see docs/campaigns.md);
:func:`default_playbook` writes one for the standard segmentations.
"""

from segmint._playbook import (
    DEFAULT_CONTROL,
    DEFAULT_TREATMENT,
    CampaignSpec,
    EmailChannelSpec,
    FileChannelSpec,
    Offer,
    Playbook,
    Strategy,
    TemplateSpec,
    VariantSpec,
    WebhookChannelSpec,
    normalize_arm,
)
from segmint.campaigns._arms import (
    POOLED,
    Design,
    campaign_control,
    campaign_design,
    design_from_params,
    make_design,
    run_designs,
)
from segmint.campaigns._audience import REASONS, audience_sql, holdout_bucket
from segmint.campaigns._channels import (
    Channel,
    ChannelUnavailable,
    DeliveryResult,
    EmailChannel,
    FileChannel,
    Message,
    WebhookChannel,
    message_id_for,
)
from segmint.campaigns._delivery import SendReport, delivery_log, make_channel, send_campaign
from segmint.campaigns._keys import KeyRing, key_ring, pseudonym_key, retire_key, rotate_key
from segmint.campaigns._plan import (
    CampaignPlan,
    PreviewMessage,
    latest_plan,
    load_audience,
    load_plan,
    plan_campaign,
    preview,
    validate_playbook,
)
from segmint.campaigns._playbook import default_playbook
from segmint.campaigns._power import (
    mde_mean,
    mde_proportion,
    users_needed_mean,
    users_needed_proportion,
)
from segmint.campaigns._resolve import Resolution, resolve_segments
from segmint.campaigns._sink import SmtpSink, WebhookSink
from segmint.campaigns._templates import FIELDS, MessageRenderer
from segmint.campaigns._unsubscribe import (
    InvalidTokenError,
    UnsubscribeResult,
    make_token,
    unsubscribe,
    verify_token,
)

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_TREATMENT",
    "FIELDS",
    "POOLED",
    "REASONS",
    "CampaignPlan",
    "CampaignSpec",
    "Channel",
    "ChannelUnavailable",
    "DeliveryResult",
    "Design",
    "EmailChannel",
    "EmailChannelSpec",
    "FileChannel",
    "FileChannelSpec",
    "InvalidTokenError",
    "KeyRing",
    "Message",
    "MessageRenderer",
    "Offer",
    "Playbook",
    "PreviewMessage",
    "Resolution",
    "SendReport",
    "SmtpSink",
    "Strategy",
    "TemplateSpec",
    "UnsubscribeResult",
    "VariantSpec",
    "WebhookChannel",
    "WebhookChannelSpec",
    "WebhookSink",
    "audience_sql",
    "campaign_control",
    "campaign_design",
    "default_playbook",
    "delivery_log",
    "design_from_params",
    "holdout_bucket",
    "key_ring",
    "latest_plan",
    "load_audience",
    "load_plan",
    "make_channel",
    "make_design",
    "make_token",
    "mde_mean",
    "mde_proportion",
    "message_id_for",
    "normalize_arm",
    "plan_campaign",
    "preview",
    "pseudonym_key",
    "resolve_segments",
    "retire_key",
    "rotate_key",
    "run_designs",
    "send_campaign",
    "unsubscribe",
    "users_needed_mean",
    "users_needed_proportion",
    "validate_playbook",
    "verify_token",
]
