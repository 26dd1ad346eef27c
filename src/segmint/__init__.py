"""segmint: from raw customer data to measured, personalized marketing.

The public names are loaded on first use (PEP 562), so that ``import segmint`` (and the
``segmint`` command, which imports this package) does not import pandas or any layer.
"""

from __future__ import annotations

import importlib
import typing
from typing import Any

if typing.TYPE_CHECKING:
    from segmint.config import Config, load_config
    from segmint.errors import SegmintError
    from segmint.project import Project, open_project

__version__ = "0.1.0"
version = __version__

__all__ = ["Config", "Project", "SegmintError", "load_config", "open_project", "version"]

_LAZY = {
    "Config": "segmint.config",
    "load_config": "segmint.config",
    "SegmintError": "segmint.errors",
    "Project": "segmint.project",
    "open_project": "segmint.project",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # once loaded, an ordinary attribute
        return value
    raise AttributeError(f"module 'segmint' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
