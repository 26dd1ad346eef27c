"""Profiles and personas: who is this user, and who are the people in this segment.

``user_profile`` gathers one user's attributes, features, favourite categories, channel
mix, segment memberships and consent state. ``personas`` describes every segment of a
segmentation run against the population: size, revenue share, feature medians and means
with ratios, the most distinguishing features, top categories and items, demographic and
lifecycle mix, and a templated plain-language summary.
"""

from segmint.profiles._persona import Persona, personas
from segmint.profiles._profile import UserProfile, user_profile

__all__ = ["Persona", "UserProfile", "personas", "user_profile"]
