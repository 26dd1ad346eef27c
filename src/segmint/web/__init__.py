"""The marketer's workspace: web pages served by ``segmint serve`` at ``/``.

Sign in (people and roles: ``segmint users``), then: the overview (KPIs, live events and
loads), segments (sizes, history, personas, members, exports, rule editing), people (one
person's profile, timeline, segments, recommendations and decision), campaigns (playbook,
plan, preview, send, results), data quality (loads and the quarantine), jobs and the
configuration. ``segmint.yaml`` stays the source of truth: edits made here are validated,
shown as a diff and written back to it; a change made in the file shows up here.

Server-rendered HTML (Jinja2) with a little script for live regions and previews; every
asset is served by the service (no CDN); English and Chinese. See docs/workspace.md.
"""

from segmint.web._accounts import ROLES, add_person, people, remove_person, set_password
from segmint.web._app import install
from segmint.web._core import Host

__all__ = ["ROLES", "Host", "add_person", "install", "people", "remove_person", "set_password"]
