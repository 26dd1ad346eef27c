"""Profiles and personas: who is this user, and who are the people in this segment.

``user_profile`` gathers one user's attributes, features, favourite categories, channel
mix, segment memberships and consent state. ``personas`` describes every segment of a
segmentation run against the population: size, revenue share, feature medians and means
with ratios, the most distinguishing features, top categories and items, demographic and
lifecycle mix, and a templated plain-language summary. Exports (profiles, personas, member lists) are
written by :class:`segmint.Project` and recorded as :class:`ExportRecord` rows.
"""

from segmint.profiles._lists import ExportRecord
from segmint.profiles._persona import Persona, personas
from segmint.profiles._profile import UserProfile, user_profile

__all__ = ["ExportRecord", "Persona", "UserProfile", "personas", "user_profile"]
