"""Marking message ids for translation."""

from __future__ import annotations

__all__ = ["N_"]


def N_(text: str) -> str:  # noqa: N802 (gettext's name for it)
    """Mark ``text`` as a message id translated later (in a template, by ``t``); a test
    checks that the zh-CN catalog has every marked id and every ``t("...")`` of the
    templates."""
    return text
