"""``segmint serve``: run the HTTP service of a project on uvicorn."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from segmint.cli._app import app
from segmint.cli._common import ProjectOpt, console
from segmint.cli._common import run as _run

if TYPE_CHECKING:
    from segmint.project import Project


@app.command()
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (more than 1 needs a PostgreSQL store).")
    ] = 1,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    proxy_headers: Annotated[
        bool,
        typer.Option(
            help="Behind a reverse proxy: take the client address and scheme from its "
            "X-Forwarded-For / X-Forwarded-Proto (only from --forwarded-allow-ips)."
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(help="Comma-separated proxy addresses trusted with --proxy-headers."),
    ] = "127.0.0.1",
) -> None:
    """Serve the project over HTTP: health, version, the API and its docs at /docs."""
    import uvicorn

    from segmint.errors import ConfigError
    from segmint.project import open_project
    from segmint.serve import PROJECT_ENV, create_app

    def prepare() -> Project:
        p = open_project(project)
        if workers < 1:
            raise ConfigError(f"--workers must be 1 or more (got {workers})")
        if workers > 1 and not p.store.capabilities.shared:
            raise ConfigError(
                f"--workers {workers}: the DuckDB store {p.config.store_url} has one writer, "
                "so it is served by one worker; use a PostgreSQL store (`store: "
                "postgresql://...`) for several"
            )
        return p

    p = _run(prepare)
    if log_level in ("debug", "trace", "info"):  # the access log (tokens masked) at info
        logging.getLogger("segmint.serve.access").setLevel(logging.INFO)
    url = f"http://{host}:{port}"
    owned = not p.store.capabilities.shared
    p.close()  # the service opens the store on demand (a DuckDB file only while it uses it)
    if owned:
        from segmint.store import write_claim

        _run(lambda: write_claim(p.root, url=url, store=p.config.store_url))
    console.print(f"segmint serving {p.root} on {url} (docs: /docs)")
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # segmint's own access log masks tokens (serve._app.AccessLog)
        "proxy_headers": proxy_headers,
        "forwarded_allow_ips": forwarded_allow_ips if proxy_headers else None,
    }
    try:
        if workers == 1:
            uvicorn.run(create_app(p), **options)
        else:
            os.environ[PROJECT_ENV] = str(p.root)
            uvicorn.run(
                "segmint.serve._app:app_from_environment", factory=True, workers=workers, **options
            )
    finally:
        if owned:
            from segmint.store import remove_claim

            remove_claim(p.root)
