"""Malformed playbooks give clear errors: where, what, and a did-you-mean."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from segmint.campaigns import Playbook, default_playbook, plan_campaign, validate_playbook
from segmint.config import Config, load_config
from segmint.errors import ConfigError, NotFoundError
from segmint.store import Store

from .conftest import TINY_PLAYBOOK, tiny_config


def _write(tmp_path: Path, playbook: dict) -> Path:
    (tmp_path / "segmint.yaml").write_text(
        yaml.safe_dump({"project": "t", "playbook": playbook}, sort_keys=False), encoding="utf-8"
    )
    return tmp_path


def _with(**changes) -> dict:
    pb = yaml.safe_load(yaml.safe_dump(TINY_PLAYBOOK))
    for dotted, value in changes.items():
        node = pb
        *path, last = dotted.split("__")
        for k in path:
            node = node[k]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return pb


def test_unknown_channel_is_named_with_a_suggestion(tmp_path: Path) -> None:
    pb = _with(strategies__life__gold__channels=["emial"])
    with pytest.raises(ConfigError, match=r"unknown channel 'emial' \(did you mean 'email'\?\)"):
        load_config(_write(tmp_path, pb))


def test_unknown_template_is_named(tmp_path: Path) -> None:
    pb = _with(strategies__life__gold__template="helo")
    with pytest.raises(ConfigError, match=r"unknown template 'helo' \(did you mean 'hello'\?\)"):
        load_config(_write(tmp_path, pb))


def test_missing_template_field_names_key_and_line(tmp_path: Path) -> None:
    pb = _with(templates__hello__subject=None)
    with pytest.raises(ConfigError, match=r"segmint.yaml:\d+: playbook.templates.hello.subject"):
        load_config(_write(tmp_path, pb))


def test_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    pb = _with(campaigns__gold_once__holdot=0.2)
    with pytest.raises(ConfigError, match=r"unknown key .*holdot.*did you mean 'holdout'"):
        load_config(_write(tmp_path, pb))


def test_discount_needs_a_percentage(tmp_path: Path) -> None:
    pb = _with(strategies__life__gold__offer={"type": "discount"})
    with pytest.raises(ConfigError, match="a discount offer needs `value`"):
        load_config(_write(tmp_path, pb))


def test_campaign_on_a_segmentation_without_strategies(tmp_path: Path) -> None:
    pb = _with(campaigns__gold_once__segmentation="lif")
    with pytest.raises(ConfigError, match=r"no strategies for 'lif' \(did you mean 'life'\?\)"):
        load_config(_write(tmp_path, pb))


def test_unsubscribe_url_needs_a_token_slot(tmp_path: Path) -> None:
    pb = _with(unsubscribe_url="https://shop.example/unsubscribe")
    with pytest.raises(ConfigError, match=r"must contain \{token\}"):
        load_config(_write(tmp_path, pb))


def test_unknown_segment_is_caught_against_the_latest_run(tiny: Store) -> None:
    pb = _with(strategies__life__golf={"template": "hello"})
    pb["campaigns"]["gold_once"]["segments"] = ["gold", "golf"]
    with pytest.raises(ConfigError, match=r"unknown segment 'golf' \(did you mean 'gold'\?\)"):
        validate_playbook(tiny, tiny_config(pb))
    with pytest.raises(ConfigError, match="unknown segment 'golf'"):
        plan_campaign(tiny, tiny_config(pb), "gold_once")


def test_unknown_campaign(tiny: Store) -> None:
    with pytest.raises(
        NotFoundError, match=r"no campaign named 'gold_onse'.*did you mean 'gold_once'"
    ):
        plan_campaign(tiny, tiny_config(), "gold_onse")


def test_transition_needs_two_runs(tiny: Store) -> None:
    tiny.execute("DELETE FROM segment_runs WHERE run_id = 's-1-life'")
    with pytest.raises(NotFoundError, match="needs two runs"):
        plan_campaign(tiny, tiny_config(), "gold_new")


def test_default_playbook_loads_and_covers_the_classic_cases() -> None:
    config = Config.model_validate(
        {
            "segmentations": {
                "rfm": {"type": "rfm"},
                "lifecycle": {"type": "lifecycle"},
                "value": {"type": "value_tiers"},
                "clusters": {"type": "kmeans", "features": ["monetary"]},
            }
        }
    )
    text = default_playbook(config)
    pb = Playbook.model_validate(yaml.safe_load(text)["playbook"])
    s = pb.strategies
    assert s["value"]["high-value"].offer.type == "exclusive_access"
    assert (
        s["value"]["potential"].include_recommendations
        and s["value"]["potential"].offer.type == "discount"
    )
    assert s["value"]["general"].offer.type == "free_shipping"
    assert s["lifecycle"]["new"].template == "onboarding"
    assert s["lifecycle"]["active"].include_recommendations
    assert s["lifecycle"]["silent"].channels == ["email", "push"]
    for seg in ("At Risk", "Can't Lose Them"):
        assert s["rfm"][seg].template == "winback" and s["rfm"][seg].offer.type == "discount"
    assert "*" in s["clusters"]
    kinds = {c.trigger.type for c in pb.campaigns.values()}
    assert kinds == {"one_off", "birthday", "promotion", "lifecycle_transition"}


def test_default_playbook_wins_back_a_win_back_rules_segment() -> None:
    config = Config.model_validate(
        {
            "segmentations": {
                "rfm": {"type": "rfm"},
                "winback": {
                    "type": "rules",
                    "rules": [
                        {"segment": "win-back", "when": "clv >= 500 AND churn_risk >= 0.6"},
                        {"segment": "nurture", "when": "clv >= 500"},
                    ],
                    "default": "low value",
                },
                "vip": {"type": "rules", "rules": [{"segment": "VIP", "when": "monetary > 1"}]},
            }
        }
    )
    pb = Playbook.model_validate(yaml.safe_load(default_playbook(config))["playbook"])
    assert set(pb.strategies["winback"]) == {"win-back"}  # the others: no strategy
    assert "vip" not in pb.strategies  # a rules segmentation without a win-back segment
    won = pb.strategies["winback"]["win-back"]
    assert (won.template, won.offer.code, won.ui) == ("winback", "COMEBACK20", "winback")
    assert won.include_recommendations and won.channels == ["email", "push"]
    campaign = pb.campaigns["predicted_winback"]
    assert (campaign.segmentation, campaign.segments) == ("winback", ["win-back"])
