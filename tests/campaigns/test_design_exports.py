"""The arm design and the power formulas belong to the campaign layer (which plans the
experiment); the experiments layer imports them from there (its public power formulas and
POOLED are the same objects), and planning loads no statistics library until a formula
runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import segmint.campaigns as campaigns
import segmint.experiments as experiments
from segmint.experiments import _power


def test_the_pooled_label_is_the_campaign_layers() -> None:
    assert experiments.POOLED is campaigns.POOLED == "any treatment"


@pytest.mark.parametrize(
    "name", ["mde_mean", "mde_proportion", "users_needed_mean", "users_needed_proportion"]
)
def test_power_formulas_are_the_campaign_layers(name: str) -> None:
    assert getattr(experiments, name) is getattr(campaigns, name) is getattr(_power, name)


def test_a_design_round_trips_through_run_params() -> None:
    design = campaigns.make_design(
        {" message  A ": 0.4, "message B": 0.4, "holdout": 0.2}, "holdout"
    )
    assert design.arms == ["message A", "message B", "holdout"]
    assert campaigns.design_from_params(json.dumps(design.to_params())) == design


def test_importing_campaigns_loads_no_scipy() -> None:
    code = "import sys, segmint.campaigns; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert campaigns.mde_proportion(0.1, 1000, 1000) > 0
