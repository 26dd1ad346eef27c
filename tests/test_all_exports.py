"""Each package's ``__all__`` is exactly its public names.

The rule for "public names" of a package ``__init__``:

- every module-level name that does not start with ``_`` ...
- ... except modules (its own submodules, which Python sets as attributes on import, and
  any imported module), the ``from __future__`` features, and names imported from
  ``typing`` / ``collections.abc`` for annotations;
- plus the names the package imports lazily on first use (a ``_LAZY`` dict of
  name -> module, served by the package's ``__getattr__``; see segmint.segments).

So a name is public exactly when it is listed in ``__all__``: anything a package imports
for its own use must be imported under a ``_`` name or not at package level at all.
Every name in ``__all__`` must also resolve, lazily or not.
"""

from __future__ import annotations
import __future__

import importlib
import pkgutil
import types

import pytest

import segmint

PACKAGES = ["segmint", "segmint.errors"] + sorted(
    info.name for info in pkgutil.iter_modules(segmint.__path__, "segmint.") if info.ispkg
)
ANNOTATION_MODULES = {"typing", "collections.abc", "typing_extensions"}


def public_names(module: types.ModuleType) -> set[str]:
    names = set(getattr(module, "_LAZY", {}))
    for name, value in vars(module).items():
        if name.startswith("_") or isinstance(value, (types.ModuleType, __future__._Feature)):
            continue
        if getattr(value, "__module__", None) in ANNOTATION_MODULES:
            continue
        names.add(name)
    return names


def test_every_subpackage_is_covered() -> None:
    for expected in (
        "segmint.campaigns",
        "segmint.clean",
        "segmint.demo",
        "segmint.experiments",
        "segmint.features",
        "segmint.profiles",
        "segmint.recommend",
        "segmint.report",
        "segmint.segments",
        "segmint.sources",
        "segmint.store",
    ):
        assert expected in PACKAGES


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_the_public_names(name: str) -> None:
    module = importlib.import_module(name)
    declared = module.__all__
    assert len(declared) == len(set(declared)), f"{name}.__all__ lists a name twice"
    public = public_names(module)
    assert sorted(set(declared) - public) == [], f"in {name}.__all__ but not defined"
    assert sorted(public - set(declared)) == [], f"public in {name} but not in __all__"
    for attr in declared:
        assert getattr(module, attr) is not None or attr.isupper(), f"{name}.{attr}"


def test_the_rule_can_fail() -> None:
    fake = types.ModuleType("fake")
    exec("import os\nfrom typing import Any\nX = 1\n_y = 2\ndef f(): pass\n", fake.__dict__)
    fake.__all__ = ["X"]  # type: ignore[attr-defined]
    assert public_names(fake) == {"X", "f"}


def test_lazy_names_resolve_to_their_module() -> None:
    import segmint.segments

    for attr, module in segmint.segments._LAZY.items():
        assert getattr(segmint.segments, attr) is getattr(importlib.import_module(module), attr)
