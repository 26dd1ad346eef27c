"""segmint.yaml stays the source of truth: edits are minimal validated diffs, saved only
over the version they were made from, with the replaced version kept; a change made in the
file shows up in the pages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.web.conftest import (
    no_horizontal_scroll,
    open_page,
    screenshot_dir,
    served_ws,
    sign_in,
)

from segmint.errors import ConfigError
from segmint.web._config_edit import DELETE, ConfigChangedError, propose, save

HEAD = """# my shop
project: shop   # the name people see
store: shop.duckdb
segmentations:
  # rules written by hand
  vip:
    type: rules
    rules:
      - {segment: VIP, when: "monetary > 3000"}
    default: Others

  rfm: {type: rfm}
"""


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "segmint.yaml"
    path.write_text(HEAD, encoding="utf-8")
    return path


def test_an_edit_changes_only_its_own_lines_and_keeps_comments(tmp_path: Path) -> None:
    path = _file(tmp_path)
    rules = {"type": "rules", "rules": [{"segment": "Big", "when": "monetary > 100"}]}
    p = propose(path, [(("segmentations", "big"), rules)])
    added = [line for kind, line in p.diff_lines() if kind == "add"]
    removed = [line for kind, line in p.diff_lines() if kind == "del"]
    assert removed == [] and len(added) == 5
    assert "# rules written by hand" in p.text and "# the name people see" in p.text
    # replacing a block replaces only it; deleting removes only it
    p = propose(path, [(("segmentations", "vip"), DELETE)])
    assert [k for k, _ in p.diff_lines() if k == "add"] == []
    assert "rfm: {type: rfm}" in p.text and "vip:" not in p.text


def test_an_invalid_edit_is_refused_with_the_loaders_message(tmp_path: Path) -> None:
    path = _file(tmp_path)
    with pytest.raises(ConfigError, match="segmentations.bad"):
        propose(path, [(("segmentations", "bad"), {"type": "rules"})])  # no rules
    assert path.read_text(encoding="utf-8") == HEAD


def test_save_refuses_when_the_file_changed_since_and_keeps_the_replaced_version(
    tmp_path: Path,
) -> None:
    path = _file(tmp_path)
    p = propose(path, [(("currency",), "EUR")])
    path.write_text(HEAD + "timezone: Europe/Paris\n", encoding="utf-8")  # someone else
    with pytest.raises(ConfigChangedError):
        save(path, p.text, p.base_sha)
    p = propose(path, [(("currency",), "EUR")])
    kept = save(path, p.text, p.base_sha)
    assert kept is not None and kept.read_text(encoding="utf-8").endswith("Europe/Paris\n")
    assert "currency: EUR" in path.read_text(encoding="utf-8")


def test_a_change_in_the_file_shows_up_in_the_pages(ws_project: Path) -> None:
    config = ws_project / "segmint.yaml"
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        assert "demo-shop" in c.get("/settings").text
        config.write_text(
            config.read_text(encoding="utf-8").replace("project: demo-shop", "project: my-shop"),
            encoding="utf-8",
        )
        time.sleep(1.2)
        assert ">my-shop<" in c.get("/settings").text
        # a broken file: the pages say so and keep the last valid configuration
        config.write_text(config.read_text(encoding="utf-8") + "\nnot_a_key: 1\n", encoding="utf-8")
        time.sleep(1.2)
        page = c.get("/settings").text
        assert "is not valid" in page and "not_a_key" in page and ">my-shop<" in page


def test_a_playbook_saved_from_the_pages_reaches_the_decisions_without_a_restart(
    ws_project: Path,
) -> None:
    from tests.serve.conftest import Served

    import segmint
    from segmint.serve import create_app

    config = ws_project / "segmint.yaml"
    fast = propose(config, [(("serve", "decide_refresh_seconds"), 0.2)])
    config.write_text(fast.text, encoding="utf-8")
    with segmint.open_project(ws_project) as p:
        app = create_app(p)
        with Served(app) as s, sign_in(s.url, "vic") as c:
            worker = app.state.decisions.snapshots
            before = worker.current.playbook
            edit = propose(config, [(("playbook", "holdout"), 0.25)])
            save(config, edit.text, edit.base_sha)
            time.sleep(1.1)
            c.get("/settings")  # the workspace sees the file and reloads it
            deadline = time.monotonic() + 10
            while worker.current.playbook is before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert worker.current.playbook.holdout == 0.25


def test_sign_in_and_settings_read_on_a_desktop_and_a_phone_in_both_languages(
    ws_demo: Path, browser: Any, tmp_path: Path
) -> None:
    shots = screenshot_dir(tmp_path)
    with served_ws(ws_demo) as s:
        for lang, locale in (("en", "en-US"), ("zh", "zh-CN")):
            for kind, width in (("desktop", 1280), ("phone", 390)):
                context = browser.new_context(
                    viewport={"width": width, "height": 800}, locale=locale
                )
                login = context.new_page()
                login.goto(s.url + "/login")
                assert no_horizontal_scroll(login)
                login.screenshot(path=str(shots / f"login-{kind}-{lang}.png"), full_page=True)
                context.close()
                page = open_page(browser, s.url, "vic", width=width, locale=locale)
                page.goto(s.url + "/settings")
                assert ("设置" if lang == "zh" else "Settings") in page.inner_text("h1")
                assert page.problems == [] and no_horizontal_scroll(page)
                page.screenshot(path=str(shots / f"settings-{kind}-{lang}.png"), full_page=True)
                page.context.close()


def test_the_audit_log_shows_why_and_whether_its_chain_holds(ws_project: Path) -> None:
    import segmint
    from segmint.store import append_audit

    with segmint.open_project(ws_project) as p:
        append_audit(p.store, "dpo", "privacy.forget", "c0ffee", why="erasure request 42")
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        page = c.get("/settings").text
        assert "erasure request 42" in page and "privacy.forget" in page
        assert 'id="audit-chain"' in page and "Hash chain verified" in page
    with segmint.open_project(ws_project) as p:
        p.store.execute(
            "UPDATE audit_log SET why = 'nothing to see' WHERE action = 'privacy.forget'"
        )
        seq = p.store.scalar("SELECT seq FROM audit_log WHERE action = 'privacy.forget'")
    with served_ws(ws_project) as s, sign_in(s.url, "vic") as c:
        page = c.get("/settings").text
        assert f"Hash chain broken at entry {seq}" in page
