"""Sent messages link to the service's public address (issue 19, point 6): the body's
link and the ``List-Unsubscribe`` header are ``{serve.public_url}/u/{token}``, with RFC
8058's ``List-Unsubscribe-Post``, unless ``playbook.unsubscribe_url`` says otherwise."""

from __future__ import annotations

from pathlib import Path

import yaml

from segmint.campaigns import SmtpSink, plan_campaign, send_campaign, verify_token

from .conftest import demo_playbook, open_demo

CAMPAIGN = "winback_at_risk"
PUBLIC = "https://news.shop.example/segmint"


def _set_public_url(root: Path, url: str) -> None:
    path = root / "segmint.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["serve"] = {"public_url": url + "/"}  # a trailing slash is dropped
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def test_links_and_headers_use_the_public_url(demo: Path, smtp_sink: SmtpSink) -> None:
    from segmint.campaigns import key_ring

    playbook = demo_playbook(demo, smtp_port=smtp_sink.port)
    assert "unsubscribe_url" not in playbook  # the default playbook leaves it to serve:
    _set_public_url(demo, PUBLIC)
    store, config = open_demo(demo, playbook)
    assert config.playbook.unsubscribe_url == f"{PUBLIC}/u/{{token}}"
    plan_campaign(store, config, CAMPAIGN)
    send_campaign(store, config, CAMPAIGN)
    msg = smtp_sink.messages[0]
    link = str(msg["List-Unsubscribe"]).replace("\n", "").replace(" ", "").strip("<>")
    assert link.startswith(f"{PUBLIC}/u/")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link in msg.get_payload(decode=True).decode()
    user, channel, _ = verify_token(key_ring(demo, store), link)  # the pasted link works
    assert user and channel == "email"
    store.close()


def test_an_explicit_unsubscribe_url_wins(demo: Path) -> None:
    playbook = demo_playbook(demo)
    playbook["unsubscribe_url"] = "https://elsewhere.example/out?t={token}"
    _set_public_url(demo, PUBLIC)
    store, config = open_demo(demo, playbook)
    assert config.playbook.unsubscribe_url == "https://elsewhere.example/out?t={token}"
    store.close()
