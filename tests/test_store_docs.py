"""Every code block of docs/store.md runs, in order, and prints what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "store.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def test_every_block_runs_and_prints_what_the_page_says() -> None:
    text = DOC.read_text(encoding="utf-8")
    namespace: dict[str, object] = {"__name__": "docs_store"}
    out = io.StringIO()
    for i, code in enumerate(BLOCK.findall(text)):
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"docs/store.md block {i}", "exec"), namespace)
    printed = out.getvalue().splitlines()
    assert printed[0] == "['o2', 'o4']"
    assert printed[1] == "O'Brien"
    assert printed[2] == "[{'user_id': 'u1', 'spend': 75.0}]"
    assert printed[3].startswith("SELECT run_id FROM segment_runs WHERE \"segmentation\" = 'rfm'")
    assert printed[4:] == ["1", "1", "True"]
