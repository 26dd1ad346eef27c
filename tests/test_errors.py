"""The error tree drawn in segmint.errors' docstring is the real class hierarchy."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import segmint
from segmint import errors
from segmint.errors import SegmintError

DESCRIPTION_COLUMN = 38  # names sit left of it, descriptions (and their continuations) right


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """Class name -> (drawn parent, its line's text), parsed from the docstring's tree."""
    doc = errors.__doc__ or ""
    block = doc.split("The tree::\n\n", 1)[1].split("\n\n", 1)[0]
    tree: dict[str, tuple[str | None, str]] = {}
    stack: list[str] = []
    for line in block.splitlines():
        head = line[4:DESCRIPTION_COLUMN]
        match = re.search(r"[A-Za-z]\w*", head)
        if match is None:  # a continuation line of the description above
            continue
        depth = match.start() // 4
        name = match.group()
        del stack[depth:]
        assert len(stack) == depth, f"{name} is drawn too deep"
        tree[name] = (stack[-1] if stack else None, line)
        stack.append(name)
    return tree


def all_segmint_exceptions() -> set[type[BaseException]]:
    """Every exception class defined anywhere in the package (every module imported)."""
    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(segmint.__path__, "segmint."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("segmint")
            ):
                found.add(obj)
    return found


def test_drawn_tree_is_the_class_hierarchy() -> None:
    tree = drawn_tree()
    real = {cls.__name__: cls for cls in all_segmint_exceptions() if issubclass(cls, SegmintError)}
    assert sorted(tree) == sorted(real)
    for name, (parent, line) in tree.items():
        cls = real[name]
        segmint_bases = [b for b in cls.__bases__ if issubclass(b, SegmintError)]
        if parent is None:
            assert cls is SegmintError
            continue
        assert parent in [b.__name__ for b in segmint_bases], f"{name} is not a {parent}"
        # every other base is named on the line: "(also a SourceError)"
        for base in cls.__bases__:
            if base.__name__ != parent:
                assert re.search(rf"\(also an? {base.__name__}\)", line), (name, base)
        # an exit code differing from the drawn parent's is written on the line
        if cls.exit_code != real[parent].exit_code:
            assert f"(exit {cls.exit_code})" in line, name


def test_every_error_is_defined_in_errors_and_exported() -> None:
    for cls in all_segmint_exceptions():
        if cls.__name__.startswith("_"):
            continue
        assert cls.__module__ == "segmint.errors", cls
        assert cls.__name__ in errors.__all__, cls
    assert sorted(errors.__all__) == sorted(drawn_tree())


def test_private_signals_are_the_documented_ones() -> None:
    """Control-flow exceptions private to one module, named in the docstring, nothing else."""
    private = {
        f"{cls.__module__.removeprefix('segmint.')}.{cls.__name__}"
        for cls in all_segmint_exceptions()
        if not issubclass(cls, SegmintError)
    }
    assert private == {
        "campaigns._templates._LimitExceeded",
        "campaigns._channels._LostBeforeEnd",
        "campaigns._channels._LostAfterEnd",
        "serve._spool._SpoolClosed",
        "web._sending._Pause",
    }
    doc = errors.__doc__ or ""
    for name in private:
        assert name.rsplit(".", 1)[1] in doc


@pytest.mark.parametrize(
    ("old_home", "name"),
    [
        ("segmint.recommend", "NotFittedError"),
        ("segmint.recommend._base", "NotFittedError"),
        ("segmint.campaigns", "ChannelUnavailable"),
        ("segmint.campaigns._channels", "ChannelUnavailable"),
        ("segmint.campaigns", "InvalidTokenError"),
        ("segmint.campaigns._unsubscribe", "InvalidTokenError"),
        ("segmint.campaigns._journal", "JournalBusy"),
    ],
)
def test_old_imports_still_work(old_home: str, name: str) -> None:
    assert getattr(importlib.import_module(old_home), name) is getattr(errors, name)


def test_behaviour_kept() -> None:
    """Exit codes and the isinstance relations callers rely on."""
    assert issubclass(errors.NotFittedError, AttributeError)
    assert issubclass(errors.ChannelUnavailable, errors.DeliveryError)
    assert errors.InvalidTokenError.exit_code == 2
    assert errors.ChannelUnavailable.exit_code == 1
    assert errors.JournalBusy("p").args == ("p",)
    assert errors.DeliveryError("m", report=3).report == 3


def test_parser_catches_a_stale_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests above can fail: a renamed or misplaced class is noticed."""
    doc = errors.__doc__ or ""
    renamed = doc.replace("ChannelUnavailable", "ChannelGone", 1)
    monkeypatch.setattr(errors, "__doc__", renamed)
    assert "ChannelGone" in drawn_tree()
    with pytest.raises(AssertionError):
        test_drawn_tree_is_the_class_hierarchy()
    # JournalBusy drawn one level up (under SegmintError instead of DeliveryError)
    moved = doc.replace("│   └── JournalBusy", "├── JournalBusy  ")
    monkeypatch.setattr(errors, "__doc__", moved)
    assert drawn_tree()["JournalBusy"][0] == "SegmintError"
    with pytest.raises(AssertionError):
        test_drawn_tree_is_the_class_hierarchy()
