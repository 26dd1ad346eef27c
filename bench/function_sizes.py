"""Functions and methods in src/segmint longer than a limit (issue 18, point 5).

Usage: python bench/function_sizes.py [--limit 80] [--all]

A function's length is ``end_lineno - lineno + 1`` (its decorators excluded, its
docstring included). Nested functions count inside their parent and also on their own.
A long function with a ``# long on purpose: <why>`` comment in the comment block just
above its ``def`` (or its first decorator) counts as explained and is listed only with ``--all``.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "segmint"
REASON = "# long on purpose:"


def _doc_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and first.end_lineno is not None
    ):
        return first.end_lineno - first.lineno + 1
    return 0


def _has_reason(lines: list[str], top: int) -> bool:
    """Whether the comment block just above line ``top`` (1-based) gives a reason."""
    i = top - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        if REASON in lines[i]:
            return True
        i -= 1
    return False


def long_functions(
    root: Path, limit: int, *, code_only: bool = False
) -> list[tuple[int, str, str, bool]]:
    """(lines, path:line, qualified name, explained) of every function over ``limit``
    (``code_only``: its docstring not counted)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text, filename=str(path))
        stack: list[tuple[ast.AST, str]] = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    stack.append((child, name + "."))
                    if isinstance(child, ast.ClassDef):
                        continue
                    assert child.end_lineno is not None
                    n = child.end_lineno - child.lineno + 1
                    if code_only:
                        n -= _doc_lines(child)
                    if n > limit:
                        top = min([d.lineno for d in child.decorator_list] + [child.lineno])
                        explained = _has_reason(lines, top)
                        rel = path.relative_to(root.parent)
                        found.append((n, f"{rel}:{child.lineno}", name, explained))
                else:
                    stack.append((child, prefix))
    return sorted(found, reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("--all", action="store_true", help="list explained ones too")
    parser.add_argument("--code", action="store_true", help="do not count docstrings")
    args = parser.parse_args(argv)
    found = long_functions(ROOT, args.limit, code_only=args.code)
    unexplained = [f for f in found if not f[3]]
    what = "lines of code (docstrings not counted)" if args.code else "lines"
    print(f"functions over {args.limit} {what}: {len(found)} ({len(unexplained)} without a reason)")
    for n, where, name, explained in found:
        if explained and not args.all:
            continue
        mark = "  (explained)" if explained else ""
        print(f"{n:5d}  {name:45s} {where}{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
