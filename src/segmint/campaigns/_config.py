"""The ``playbook:`` section of ``segmint.yaml``, as the campaigns layer names it.

The models live in :mod:`segmint._playbook`, below every layer, so that
:mod:`segmint.config` loads the playbook without importing the campaigns layer; this
module re-exports them for the campaigns modules.
"""

from segmint._playbook import (
    ANY_SEGMENT,
    CAMPAIGN_MODELS,
    CAMPAIGN_TAGS,
    DEFAULT_CONTROL,
    DEFAULT_TREATMENT,
    BirthdayTrigger,
    CampaignSpec,
    ChannelSpec,
    ConsentWord,
    EmailChannelSpec,
    FileChannelSpec,
    FrequencyCap,
    LifecycleTransitionTrigger,
    Offer,
    OneOffTrigger,
    Playbook,
    PromotionTrigger,
    Strategy,
    TemplateSpec,
    Timing,
    Trigger,
    VariantSpec,
    WebhookChannelSpec,
    normalize_arm,
)

__all__ = [
    "ANY_SEGMENT",
    "CAMPAIGN_MODELS",
    "CAMPAIGN_TAGS",
    "DEFAULT_CONTROL",
    "DEFAULT_TREATMENT",
    "BirthdayTrigger",
    "CampaignSpec",
    "ChannelSpec",
    "ConsentWord",
    "EmailChannelSpec",
    "FileChannelSpec",
    "FrequencyCap",
    "LifecycleTransitionTrigger",
    "Offer",
    "OneOffTrigger",
    "Playbook",
    "PromotionTrigger",
    "Strategy",
    "TemplateSpec",
    "Timing",
    "Trigger",
    "VariantSpec",
    "WebhookChannelSpec",
    "normalize_arm",
]
