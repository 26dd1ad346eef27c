"""The OpenAPI document is the contract: schemathesis (its own CLI, as a user would run
it) generates requests for every operation of ``/openapi.json`` — valid and invalid — and
checks each answer: no 5xx, and status codes, content types, headers and bodies as the
document says. Runs against a real uvicorn on loopback with an admin key, so
key-protected operations are reached, not only refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.serve.conftest import Served

import segmint

pytest.importorskip("schemathesis")

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def test_every_operation_answers_as_documented(shop: Path, tmp_path: Path) -> None:
    import shutil

    from segmint.serve import create_app
    from segmint.serve._auth import create_key

    root = tmp_path / "shop"  # a private copy: the run sends events, keys and consents
    shutil.copytree(shop, root)
    report = tmp_path / "schemathesis.json"
    with segmint.open_project(root) as p:
        key = create_key(p.store, "fuzz", "admin")
        with Served(create_app(p)) as served:
            run = subprocess.run(
                [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "run",
                    f"{served.url}/openapi.json",
                    "--checks",
                    ",".join(CHECKS),
                    "--header",
                    f"Authorization: Bearer {key}",
                    "--max-examples",
                    "30",
                    "--seed",
                    "19",
                    "--workers",
                    "1",
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--generation-database",
                    "none",
                    "--no-color",
                    "--report",
                    "json",
                    "--report-json-path",
                    str(report),
                ],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=tmp_path,
            )
    summary = run.stdout[-3000:]
    print(summary)  # the run's summary (shown with pytest -s)
    assert run.returncode == 0, summary
    assert report.exists(), summary
    got = json.loads(report.read_text(encoding="utf-8"))
    assert got, summary
