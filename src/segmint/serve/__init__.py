"""``segmint serve``: the HTTP service a product talks to (issue 19).

:func:`create_app` builds the FastAPI application for an open project; ``segmint serve``
runs it on uvicorn. Every error is an RFC 9457 problem detail.
"""

from segmint.errors import RequestError
from segmint.serve._app import PROJECT_ENV, create_app
from segmint.serve._auth import SCOPES, create_key, list_keys, revoke_key
from segmint.serve._problems import problem
from segmint.serve._scheduler import JobRun, JobScheduler

__all__ = [
    "PROJECT_ENV",
    "SCOPES",
    "JobRun",
    "JobScheduler",
    "RequestError",
    "create_app",
    "create_key",
    "list_keys",
    "problem",
    "revoke_key",
]
