"""Profiles and personas: who is this user, and who are the people in this segment.

``user_profile`` gathers one user's attributes, features, favourite categories, channel
mix, segment memberships and consent state. ``personas`` describes every segment of a
segmentation run against the population: size, revenue share, feature medians and means
with ratios, the most distinguishing features, top categories and items, demographic and
lifecycle mix, and a templated plain-language summary. With a prediction run, both carry
the predicted value and churn risk (``UserProfile.value``, ``Persona.value``) and the
persona's summary says it. Exports (profiles, personas, member lists) are
written by :class:`segmint.Project` and recorded as :class:`ExportRecord` rows.
"""

from segmint.profiles._export import persona_tables, profiles_table, resolve_format, write_tables
from segmint.profiles._lists import (
    ExportRecord,
    export_list,
    export_log,
    new_record,
    record_export,
)
from segmint.profiles._persona import Persona, personas
from segmint.profiles._profile import UserProfile, user_profile

__all__ = [
    "ExportRecord",
    "Persona",
    "UserProfile",
    "export_list",
    "export_log",
    "new_record",
    "persona_tables",
    "personas",
    "profiles_table",
    "record_export",
    "resolve_format",
    "user_profile",
    "write_tables",
]
