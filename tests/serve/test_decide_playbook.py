"""The playbook's ``ui:`` variants: validated with clear errors; the default playbook gives
every strategy one; offers and UI texts as a decision serves them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from segmint.campaigns import Playbook

TEMPLATE = {"subject": "s", "body": "b"}


def _playbook(ui: dict[str, Any], strategy_ui: str | None = "vip", **extra: Any) -> Playbook:
    strategy: dict[str, Any] = {"template": "t", "channels": []}
    if strategy_ui is not None:
        strategy["ui"] = strategy_ui
    return Playbook.model_validate(
        {
            "templates": {"t": TEMPLATE},
            "strategies": {"rfm": {"Champions": strategy}},
            "ui": ui,
            **extra,
        }
    )


def test_a_ui_variant_is_named_by_its_key_and_normalised() -> None:
    pb = _playbook(
        {
            "vip": {
                "theme": {"primary": "#C9A227", "background": "#000"},
                "layout": "hero",
                "hero": {"title": "Early access", "cta_label": "Go", "cta_url": "/new"},
                "copy": {"recs_title": "For you"},
            }
        }
    )
    vip = pb.ui["vip"]
    assert (vip.name, vip.theme.primary, vip.layout) == ("vip", "#c9a227", "hero")
    assert vip.copy_texts == {"recs_title": "For you"}
    assert pb.default_ui().name == "default"  # built in when the playbook has none


@pytest.mark.parametrize(
    ("ui", "message"),
    [
        ({"vip": {"theme": {"primary": "gold"}}}, r"a colour is written #rgb or #rrggbb"),
        ({"vip": {"layout": "carousel"}}, r"layout\n.*'grid', 'list' or 'hero'"),
        (
            {"vip": {"hero": {"title": "x", "image_url": "javascript:alert(1)"}}},
            r"a link starts with https://, http:// or /",
        ),
        ({"vip": {"hero": {"title": "x", "cta_label": "Go"}}}, r"needs both `cta_label`"),
        ({"vip": {"copy": {"Recs Title": "x"}}}, r"copy key 'Recs Title': use lower-case"),
        ({"vip": {"colour": "#fff"}}, r"Extra inputs are not permitted"),
    ],
)
def test_bad_ui_variants_say_what_is_wrong(ui: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _playbook(ui)


def test_an_unknown_ui_name_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match=r"unknown UI variant 'vpi' \(did you mean 'vip'\?\)"):
        _playbook({"vip": {}}, strategy_ui="vpi")
    campaign = {
        "segmentation": "rfm",
        "holdout": 0.2,
        "variants": [{"name": "b", "share": 0.8, "ui": "banner-b"}],
    }
    # a variant's free label is fine while playbook.ui is empty (labels for the site) ...
    _playbook({}, strategy_ui=None, campaigns={"c": campaign})
    # ... and must name a variant once the playbook declares UI variants
    with pytest.raises(ValidationError, match=r"campaigns.c.variants\[0\].ui: unknown UI variant"):
        _playbook({"vip": {}}, campaigns={"c": campaign})


def test_the_default_playbook_gives_every_strategy_a_ui() -> None:
    from segmint.campaigns import default_playbook
    from segmint.config import Config

    cfg = Config.model_validate(
        {
            "project": "shop",
            "segmentations": {
                "rfm": {"type": "rfm"},
                "lifecycle": {"type": "lifecycle"},
            },
        }
    )
    import yaml

    pb = Playbook.model_validate(yaml.safe_load(default_playbook(cfg))["playbook"])
    assert {"default", "vip", "winback", "welcome", "picks", "offer"} <= set(pb.ui)
    for by_segment in pb.strategies.values():
        assert all(s.ui in pb.ui for s in by_segment.values())
    # distinct looks: segments are told apart by their background
    assert len({v.theme.background for v in pb.ui.values()}) == len(pb.ui)
    zh = cfg.model_copy(update={"locale": "zh-CN"})
    pb_zh = Playbook.model_validate(yaml.safe_load(default_playbook(zh))["playbook"])
    assert pb_zh.ui["vip"].hero is not None and pb_zh.ui["vip"].hero.title == "新品抢先看"


def test_ui_texts_fill_in_the_offer_or_fall_back() -> None:
    from segmint.serve._decide import _ui_out

    pb = _playbook(
        {
            "default": {"hero": {"title": "Welcome"}},
            "vip": {
                "hero": {"title": "{offer} for you", "subtitle": "Code {code}"},
                "copy": {"a": "Use {code}", "b": "plain"},
            },
        }
    )
    out = _ui_out(pb, "vip", "20% off", "SAVE20")
    assert out["hero"]["title"] == "20% off for you" and out["hero"]["subtitle"] == "Code SAVE20"
    assert out["copy"] == {"a": "Use SAVE20", "b": "plain"}
    bare = _ui_out(pb, "vip", None, None)  # no offer: texts about it are left out
    assert bare["hero"]["title"] == "Welcome" and bare["hero"]["subtitle"] is None
    assert bare["copy"] == {"b": "plain"}
