"""The public surface is deliberate: a change to it must change this test."""

from __future__ import annotations

import segmint
import segmint.clean
import segmint.segments
import segmint.sources
import segmint.store


def test_top_level_exports() -> None:
    assert sorted(segmint.__all__) == [
        "Config",
        "Project",
        "SegmintError",
        "load_config",
        "open_project",
        "version",
    ]


def test_subpackages_export_what_they_list() -> None:
    for module in (segmint.clean, segmint.segments, segmint.sources, segmint.store):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_error_descends_from_segmint_error() -> None:
    from segmint import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), segmint.SegmintError)
