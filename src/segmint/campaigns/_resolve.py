"""Which strategy each segment of a run gets, when clusters are renamed or renumbered.

A strategy under ``playbook.strategies.<segmentation>`` is found for a segment of the
latest run, in this order:

1. ``cluster: c3`` on the strategy (a pin, written by ``segmint playbook init``): the
   cluster with that key, whatever it is called now;
2. the strategy's key is a segment name of the run;
3. the strategy's key is a cluster key (``c3``);
4. the strategy's key was a cluster's name in an earlier run: the cluster matched to it
   by centroid (:mod:`segmint.segments._identity`) now.

Segments no strategy claims get the ``'*'`` strategy if there is one. Rule-based
segmentations (RFM, lifecycle, value tiers, rules) have fixed names: only step 2 applies.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from segmint._playbook import ANY_SEGMENT, Playbook
from segmint.store import Store, lit

__all__ = ["Resolution", "SegmentMatch", "resolve_segments"]

How = Literal["pinned", "name", "key", "centroid", "gone", "unknown"]
_PRIORITY = {"pinned": 0, "name": 1, "key": 2, "centroid": 3}


@dataclass(frozen=True)
class SegmentMatch:
    """Where one strategy (or campaign segment) landed in the latest run."""

    strategy: str
    segment: str | None
    how: How
    key: str | None = None
    previous_name: str | None = None
    distance: float | None = None


@dataclass(frozen=True)
class Resolution:
    """The strategies of one segmentation resolved against one of its runs."""

    segmentation: str
    run_id: str
    clustering: bool
    matches: list[SegmentMatch]
    unclaimed: list[dict[str, Any]] = field(default_factory=list)
    has_default: bool = False
    _names: Mapping[str, SegmentMatch] = field(default_factory=dict, repr=False)
    _locate: Callable[[str, str | None], SegmentMatch] | None = field(default=None, repr=False)

    def strategy_keys(self) -> dict[str, str]:
        """Current segment -> the key of the strategy it gets (``'*'`` not included)."""
        return {m.segment: m.strategy for m in self.matches if m.segment is not None}

    def segment_for(self, name: str) -> SegmentMatch:
        """Where a name from the playbook (a campaign's ``segments``) is in this run."""
        found = self._names.get(name)
        if found is not None:
            return found
        if self._locate is not None:
            return self._locate(name, None)
        return SegmentMatch(name, None, "unknown")

    def notes(self) -> list[str]:
        """What moved, in sentences (for ``segmint playbook check``)."""
        out = []
        for m in self.matches:
            if m.how == "centroid":
                out.append(
                    f"{self.segmentation}: cluster {m.previous_name!r} is now {m.segment!r} "
                    f"(matched by centroid, distance {m.distance:.2f}); strategy kept"
                )
            elif m.how == "pinned" and m.previous_name is not None:
                how = "" if m.distance is None else f", distance {m.distance:.2f}"
                out.append(
                    f"{self.segmentation}: cluster {m.previous_name!r} ({m.key}) is now "
                    f"{m.segment!r} (pinned; matched by centroid{how}); strategy kept"
                )
            elif m.how == "gone":
                out.append(
                    f"{self.segmentation}: strategy {m.strategy!r}"
                    + (f" (cluster {m.key})" if m.key else "")
                    + f": its cluster is not in run {self.run_id} any more; strategy unused"
                )
        fallback = (
            "clusters without a strategy get the default ('*')"
            if self.has_default
            else "clusters without a strategy get no message (add a '*' strategy for a default)"
        )
        for c in self.unclaimed:
            state = "is new" if c.get("matched_from") is None else "has"
            out.append(
                f"{self.segmentation}: cluster {c['name']!r} ({c['key']}) {state}: no strategy; "
                f"{fallback}"
            )
        return out


def _details(store: Store, run_id: str) -> dict[str, Any]:
    raw = store.scalar(f"SELECT details FROM segment_runs WHERE run_id = {lit(run_id)}")
    if raw is None:
        return {}
    return json.loads(raw) if isinstance(raw, str) else dict(raw)


def _history(store: Store, segmentation: str, run_id: str) -> dict[str, str]:
    """Cluster name -> key in earlier runs of the segmentation (the latest run wins)."""
    runs = store.query(
        "SELECT run_id, details FROM segment_runs WHERE segmentation = "
        f"{lit(segmentation)} AND run_id <> {lit(run_id)} ORDER BY created_at DESC, run_id DESC"
    )
    out: dict[str, str] = {}
    for raw in runs["details"]:
        details = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        for c in details.get("clusters") or []:
            if "key" in c:
                out.setdefault(str(c["name"]), str(c["key"]))
    return out


def resolve_segments(
    store: Store, playbook: Playbook, segmentation: str, run_id: str, known: list[str]
) -> Resolution:
    """Resolve the strategies of ``segmentation`` against run ``run_id`` (whose segment
    names are ``known``); see the module docstring for the order."""
    strategies = playbook.strategies.get(segmentation, {})
    clusters = [c for c in (_details(store, run_id).get("clusters") or []) if "key" in c]
    by_key = {str(c["key"]): c for c in clusters}
    by_name = {str(c["name"]): c for c in clusters}
    history: dict[str, str] | None = None

    def locate(name: str, pin: str | None) -> SegmentMatch:
        nonlocal history
        if pin is not None:
            c = by_key.get(pin)
            if c is None:
                return SegmentMatch(name, None, "gone", key=pin)
            if history is None:
                history = _history(store, segmentation, run_id)
            # the strategy was written for a name this cluster had before: say it moved
            moved = name != c["name"] and history.get(name) == pin
            return SegmentMatch(
                name,
                str(c["name"]),
                "pinned",
                key=pin,
                previous_name=name if moved else None,
                distance=c.get("distance") if moved else None,
            )
        if name in known:
            c = by_name.get(name)
            return SegmentMatch(name, name, "name", key=None if c is None else str(c["key"]))
        if name in by_key:
            return SegmentMatch(name, str(by_key[name]["name"]), "key", key=name)
        if clusters:
            if history is None:
                history = _history(store, segmentation, run_id)
            key = history.get(name)
            if key is not None:
                c = by_key.get(key)
                if c is None:
                    return SegmentMatch(name, None, "gone", key=key)
                return SegmentMatch(
                    name,
                    str(c["name"]),
                    "centroid",
                    key=key,
                    previous_name=name,
                    distance=c.get("distance"),
                )
        return SegmentMatch(name, None, "unknown")

    found = [locate(s, st.cluster) for s, st in strategies.items() if s != ANY_SEGMENT]
    # one strategy per segment: a pin beats a name, a name a key, a key a centroid match
    claimed: dict[str, SegmentMatch] = {}
    for m in sorted(found, key=lambda m: _PRIORITY.get(m.how, 9)):
        if m.segment is not None and m.segment not in claimed:
            claimed[m.segment] = m
    matches = [m for m in found if m.segment is None or claimed.get(m.segment) is m]
    names = {m.strategy: m for m in matches}
    claimed_keys = {m.key for m in claimed.values()}
    unclaimed = [
        c for c in clusters if str(c["name"]) not in claimed and c["key"] not in claimed_keys
    ]
    for c in clusters:  # campaign segment lists may name clusters by key or old name too
        names.setdefault(str(c["key"]), SegmentMatch(str(c["key"]), str(c["name"]), "key"))
    return Resolution(
        segmentation=segmentation,
        run_id=run_id,
        clustering=bool(clusters),
        matches=matches,
        unclaimed=unclaimed,
        has_default=ANY_SEGMENT in strategies,
        _names=names,
        _locate=locate,
    )
