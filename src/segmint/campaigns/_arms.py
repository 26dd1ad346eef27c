"""The arms of an experiment: their names, which one is the control, the designed split.

A campaign run records its design in ``campaign_runs.params`` (JSON):

``control``
    The control arm's label (default ``"control"``).
``split``
    ``{arm: share}`` over every arm, shares summing to 1 (the design the sample-ratio
    check compares against). Runs written before several arms existed have only
    ``holdout`` (the control share); their design is ``{"treatment": 1 - holdout,
    control: holdout}``.

Every layer that needs to know which users were treated reads it from here (the
campaign layer writes the design; experiments, segments and the report read it through
:mod:`segmint.campaigns`), so a campaign with arms named ``message A``, ``message B`` and
``holdout`` is measured, targeted and explained the same way as the classic
treatment/control pair. The labels (``DEFAULT_CONTROL``, ``normalize_arm``) are the
playbook's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from segmint._playbook import DEFAULT_CONTROL, DEFAULT_TREATMENT, normalize_arm
from segmint.errors import ConfigError

__all__ = [
    "DEFAULT_CONTROL",
    "DEFAULT_TREATMENT",
    "POOLED",
    "Design",
    "campaign_control",
    "campaign_design",
    "design_from_params",
    "make_design",
    "normalize_arm",
    "run_designs",
]

POOLED = "any treatment"
"""The label of the pooled comparison (every treatment arm together against the control)."""


@dataclass(frozen=True)
class Design:
    """One run's arms: the control label and the designed share of every arm."""

    control: str
    split: dict[str, float] = field(default_factory=dict)

    @property
    def arms(self) -> list[str]:
        """Treatment arms in design order, then the control."""
        return [*self.treatments, self.control]

    @property
    def treatments(self) -> list[str]:
        return [a for a in self.split if a != self.control]

    def to_params(self) -> dict[str, Any]:
        return {"control": self.control, "split": dict(self.split)}


def make_design(split: Mapping[str, float], control: str = DEFAULT_CONTROL) -> Design:
    """Check a split (shares > 0 summing to 1, the control among the arms)."""
    clean = {normalize_arm(k): float(v) for k, v in split.items()}
    control = normalize_arm(control)
    if len(clean) < 2:
        raise ConfigError(f"an experiment needs at least two arms (got {list(clean) or 'none'})")
    if control not in clean:
        raise ConfigError(
            f"the control arm {control!r} is not one of the arms: {', '.join(clean)} "
            "(name it with --control ARM)"
        )
    bad = [k for k, v in clean.items() if not (v > 0 and math.isfinite(v))]
    if bad:
        raise ConfigError(f"arm shares must be > 0; check {', '.join(bad)}")
    total = sum(clean.values())
    if abs(total - 1) > 1e-6:
        raise ConfigError(f"arm shares must sum to 1 (they sum to {total:.4g})")
    return Design(control, clean)


def design_from_params(params: Mapping[str, Any] | str | None) -> Design:
    """The design a run recorded (see the module docstring for the legacy form)."""
    if isinstance(params, str) or params is None:
        params = json.loads(params or "{}")
    assert isinstance(params, Mapping)
    control = normalize_arm(params.get("control") or DEFAULT_CONTROL)
    split = params.get("split")
    if split:
        return Design(control, {normalize_arm(k): float(v) for k, v in split.items()})
    holdout = float(params.get("holdout", math.nan))
    if not math.isfinite(holdout):
        return Design(control, {})
    return Design(control, {DEFAULT_TREATMENT: 1.0 - holdout, control: holdout})


def run_designs(store: Any, campaign: str) -> dict[str, Design]:
    """Every run of a campaign with its design, by run id."""
    runs = store.query(
        "SELECT run_id, params FROM campaign_runs WHERE campaign = ? ORDER BY created_at, run_id",
        [campaign],
    )
    return {
        str(r): design_from_params(p) for r, p in zip(runs["run_id"], runs["params"], strict=True)
    }


def campaign_design(store: Any, campaign: str) -> Design:
    """The campaign's arms across its runs (the latest run's control label; arms in order
    of first appearance). Raises when runs disagree on the control label."""
    designs = list(run_designs(store, campaign).values())
    if not designs:
        return Design(DEFAULT_CONTROL, {})
    controls = {d.control for d in designs}
    if len(controls) > 1:
        raise ConfigError(
            f"campaign {campaign!r}: runs name different control arms ({', '.join(controls)})"
        )
    split: dict[str, float] = {}
    for d in designs:
        for arm, share in d.split.items():
            split.setdefault(arm, share)
    return Design(designs[-1].control, split)


def campaign_control(store: Any, campaign: str) -> str:
    """The control arm's label of a campaign (``"control"`` unless the design says so)."""
    return campaign_design(store, campaign).control
