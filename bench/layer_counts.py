"""The structural counts of issue 18, for this tree or another checkout (before/after).

Usage: python bench/layer_counts.py [ROOT ...]      (ROOT: a checkout; default this repo)

For each checkout, counted in ``src/segmint`` outside ``segmint/store`` (the store layer is
where SQL is allowed to be raw):

* SQL calls: ``.execute(`` / ``.query(`` / ``.scalar(`` calls, per package (they go through
  the store's API either way; the issue's complaint was their number and spread);
* ``store.engine`` uses and ``dialect`` branches in callers;
* hand quoting: ``.replace("'", "''")`` or a private ``_q``/``_lit``-style helper that quotes;
* hand-written concepts: ``status = 'completed'`` and "latest run" ``ORDER BY created_at DESC,
  run_id DESC`` outside the named relations;
* temporary tables and registered frames made by hand in a layer (``TEMP TABLE`` and
  ``.register(``; the staging area names its own);
* DDL outside the store (``CREATE TABLE`` / ``ALTER TABLE`` of a permanent table);
* functions over 80 lines without a reason (bench/function_sizes.py's rule);
* private cross-package imports (import-linter's ``private`` contract of this repo's
  pyproject.toml, run on that checkout's ``src``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from function_sizes import long_functions  # noqa: E402

PATTERNS = {
    "store.engine uses": re.compile(r"\.engine\b(?!_)"),
    "dialect branches": re.compile(r"dialect\s*==|\.dialect\b"),
    "hand quoting": re.compile(r"""replace\("'", "''"\)|replace\('"', '""'\)"""),
    "status = 'completed' by hand": re.compile(r"status = 'completed'"),
    "latest run by hand": re.compile(r"ORDER BY created_at DESC, run_id DESC"),
    "temp tables / registers by hand": re.compile(r"TEMP TABLE|\.register\("),
    "DDL outside the store": re.compile(r"(CREATE|ALTER) TABLE (?!.*TEMP)", re.I),
}
CALLS = re.compile(r"\.(execute|query|scalar)\(")


def count(root: Path) -> dict[str, object]:
    src = root / "src" / "segmint"
    per_pkg: Counter[str] = Counter()
    found: Counter[str] = Counter()
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src)
        if rel.parts[0] == "store":
            continue
        text = path.read_text(encoding="utf-8")
        pkg = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        per_pkg[pkg] += len(CALLS.findall(text))
        for name, rx in PATTERNS.items():
            found[name] += len(rx.findall(text))
    long = [f for f in long_functions(src, 80) if not f[3]]
    config = HERE.parent / "pyproject.toml"  # this repo's contract, on any checkout
    lint = subprocess.run(
        [
            str(HERE.parent / ".venv" / "bin" / "lint-imports"),
            str(config),
            "--contract",
            "private",
            "--no-cache",
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        capture_output=True,
        text=True,
    )
    private = sum(1 for line in lint.stdout.splitlines() if line.startswith("- segmint."))
    out: dict[str, object] = {
        "SQL calls outside the store": sum(per_pkg.values()),
        "  by package": ", ".join(f"{k} {v}" for k, v in per_pkg.most_common() if v),
    }
    out.update(found)
    out["functions over 80 lines without a reason"] = len(long)
    out["private cross-package imports"] = private
    return out


def main(argv: list[str]) -> int:
    roots = [Path(a).resolve() for a in argv] or [HERE.parent]
    results = [count(r) for r in roots]
    width = max(len(k) for k in results[0])
    print(" " * width + " | " + " | ".join(r.name for r in roots))
    for key in results[0]:
        print(f"{key:<{width}} | " + " | ".join(str(r.get(key, "")) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
