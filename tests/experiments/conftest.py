"""A small demo shop (built once per session) for the experiment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

import segmint


@pytest.fixture(scope="session")
def demo_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8,000-user demo shop, ingested; its planted campaign is in campaigns/."""
    from segmint.demo import generate_demo

    root = tmp_path_factory.mktemp("experiments-demo")
    generate_demo(root, n_users=8000, seed=11)
    with segmint.open_project(root) as p:
        p.ingest()
    return root
