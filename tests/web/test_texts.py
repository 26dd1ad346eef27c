"""Every text the workspace shows has its Chinese translation."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.pofile import read_po

import segmint

WEB = Path(segmint.__file__).parent / "web"
CATALOG = Path(segmint.__file__).parent / "locale" / "zh_CN.po"


def used_ids() -> set[str]:
    ids: set[str] = set()
    for template in (WEB / "templates").glob("*.j2"):
        text = template.read_text(encoding="utf-8")
        ids |= set(re.findall(r'\bt\(\s*"([^"]+)"', text))
        ids |= set(re.findall(r"\bt\(\s*'([^']+)'", text))
        ids |= set(re.findall(r'\bn\(\s*"([^"]+)"', text))
    for module in WEB.glob("*.py"):
        ids |= set(re.findall(r'\bN_\(\s*"([^"]+)"\s*\)', module.read_text(encoding="utf-8")))
    return ids


def test_the_zh_catalog_has_every_workspace_text() -> None:
    with CATALOG.open("rb") as fh:
        catalog = read_po(fh, locale="zh_CN")
    translated = {
        m.id[0] if isinstance(m.id, tuple) else m.id for m in catalog if m.id and m.string
    }
    ids = used_ids()
    assert len(ids) > 20
    missing = sorted(ids - translated)
    assert not missing, missing
