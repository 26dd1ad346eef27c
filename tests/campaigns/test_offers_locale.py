"""Offers with amounts and thresholds, codes in the default templates, no YAML aliases, and
the default playbook's messages in Chinese (rendered through the real preview path)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from segmint._i18n import language
from segmint.campaigns import Offer, Playbook, default_playbook, preview
from segmint.config import Config

from .conftest import demo_playbook, open_demo

SEGMENTATIONS = {
    "rfm": {"type": "rfm"},
    "lifecycle": {"type": "lifecycle"},
    "value": {"type": "value_tiers"},
    "clusters": {"type": "kmeans", "features": ["monetary"]},
}


def test_offers_in_words_with_the_project_currency() -> None:
    en, zh = language("en"), language("zh-CN")
    threshold = Offer(type="threshold", value=20, min_order=200, code="SAVE20")
    assert threshold.label == "20 off orders of 200 or more"
    assert threshold.text(en, "EUR") == "€20 off orders of €200 or more"
    assert threshold.text(zh, "CNY") == "满¥200减¥20"
    assert Offer(type="amount", value=5).text(zh, "CNY") == "立减¥5"
    assert Offer(type="amount", value=5).text(en, "USD") == "$5 off"
    assert Offer(type="percent", value=15).text(en) == "15% off"
    assert Offer(type="discount", value=12.5, min_order=100).text(en, "EUR") == (
        "12.5% off orders of €100 or more"
    )
    assert Offer(type="free_shipping", min_order=49.9).text(en, "EUR") == (
        "free shipping on orders of €49.90 or more"
    )


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ({"type": "threshold", "value": 20, "min_order": 10}, r"min_order \(10\) must be above"),
        ({"type": "threshold", "value": 20}, "a threshold offer needs `min_order`"),
        ({"type": "amount", "value": 0}, "an amount offer needs `value`"),
        ({"type": "percent", "value": 150}, "at most 100"),
        ({"type": "none", "min_order": 10}, "takes no `min_order`"),
    ],
)
def test_bad_offers_are_refused_clearly(offer: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Offer.model_validate(offer)


def test_default_playbook_has_no_yaml_aliases_and_prints_codes() -> None:
    text = default_playbook(Config.model_validate({"segmentations": SEGMENTATIONS}))
    assert "&id" not in text and "*id" not in text
    pb = Playbook.model_validate(yaml.safe_load(text)["playbook"])
    offers = {s.offer.type for by in pb.strategies.values() for s in by.values()}
    assert {"discount", "amount", "threshold"} <= offers
    for name, strategy in ((n, s) for by in pb.strategies.values() for n, s in by.items()):
        template = pb.templates[str(strategy.template)]
        if strategy.offer.code:
            assert "offer.code" in template.body, (name, strategy.template)


def test_chinese_default_playbook_message_via_preview(demo: Path) -> None:
    config_path = demo / "segmint.yaml"
    text = config_path.read_text(encoding="utf-8")
    config_path.write_text(
        text.replace("currency: EUR", "currency: CNY") + "\nlocale: zh-CN\n", encoding="utf-8"
    )
    pb = demo_playbook(demo)
    assert "您好" in pb["templates"]["standard_offer"]["body"]
    pb["campaigns"]["attention"] = {"segmentation": "rfm", "segments": ["Need Attention"]}
    store, config = open_demo(demo, pb)
    assert config.locale == "zh-CN" and config.currency == "CNY"
    (m,) = preview(store, config, "attention", n=1)
    assert m.subject.endswith("本周优惠：满¥200减¥20")
    assert "本周您可享满¥200减¥20，优惠码 SAVE20，欢迎来逛逛。" in m.body
    assert "一键退订：" in m.body
    picks = m.body.split("为您推荐：\n")[1].split("\n\n")[0].splitlines()
    assert picks and all(line.endswith("）") and "（¥" in line for line in picks), picks


def test_english_default_message_prints_the_offer_code(demo: Path) -> None:
    pb = demo_playbook(demo)
    pb["campaigns"]["attention"] = {"segmentation": "rfm", "segments": ["Need Attention"]}
    store, config = open_demo(demo, pb)
    (m,) = preview(store, config, "attention", n=1)
    assert m.subject == "€20 off orders of €200 or more this week at " + config.project
    assert "This week you get €20 off orders of €200 or more with the code SAVE20." in m.body


def test_a_threshold_offer_below_its_value_in_segmint_yaml_is_refused(demo: Path) -> None:
    from typer.testing import CliRunner

    import segmint
    from segmint.cli import app
    from segmint.errors import ConfigError

    pb = demo_playbook(demo)
    pb["strategies"]["rfm"]["Need Attention"]["offer"] = {
        "type": "threshold",
        "value": 200,
        "min_order": 20,
    }
    from .conftest import write_playbook

    write_playbook(demo, pb)
    with pytest.raises(ConfigError, match=r"min_order \(20\) must be above its value \(200\)"):
        segmint.open_project(demo)
    result = CliRunner().invoke(app, ["playbook", "check", "-p", str(demo)])
    assert result.exit_code == ConfigError.exit_code == 2
    assert "Need Attention" in result.output and "did you swap them?" in result.output
