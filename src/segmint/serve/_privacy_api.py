"""``/v1/admin/privacy``: data protection requests through the service (admin keys only).

``POST /v1/admin/privacy/forget`` is ``segmint privacy forget`` for when the service owns
a DuckDB store (the CLI's commands that write stop while it runs) or runs on another
machine. It runs inside the service, holding the store like every endpoint: the tracking
loader (which also holds it) cannot load in between, and spool lines of the person are
overwritten in place beside the live spool writer (see :mod:`segmint.privacy`). Messages
accepted after the erasure are kept out by the loader's check of the erasure records.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from segmint.serve._auth import ApiKey, require

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin/privacy", tags=["privacy"])

_ADMIN = Depends(require("admin"))

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


class ForgetRequest(BaseModel):
    """A person to erase, and why."""

    user_id: str = Field(min_length=1, max_length=500, description="the person's user id")
    why: str = Field(min_length=1, max_length=2000, description="the reason, recorded")
    request_id: str | None = Field(
        default=None, max_length=200, description="your reference for the request"
    )


class ForgetAnswer(BaseModel):
    """What was erased (the user id itself is not repeated)."""

    subject: str = Field(description="the blind index of the user id: the erasure record's key")
    request_id: str
    already: bool = Field(description="forgotten before and nothing left: nothing written")
    erased_at: str | None
    n_rows: int
    tables: dict[str, int]
    files: list[dict[str, Any]]
    notes: list[str]


@router.post(
    "/forget",
    summary="Erase a person from every table and file",
    response_model=ForgetAnswer,
    responses={404: {"description": "No such user anywhere", "content": _PROBLEM}},
)
def forget_person(request: Request, body: ForgetRequest, key: ApiKey = _ADMIN) -> ForgetAnswer:
    """Erase the person (``segmint privacy forget``): deleted or pseudonymised in every table,
    rewritten out of every export and spool line, an erasure record and suppressions kept,
    audited as ``privacy.forget`` by ``api:<key id>``. Idempotent: a second call answers
    ``already: true``."""
    from segmint.privacy import forget
    from segmint.serve._app import store_access

    config = request.app.state.project.config
    with store_access(request) as store:
        report = forget(
            store,
            body.user_id,
            actor=f"api:{key.key_id}",
            why=body.why,
            request_id=body.request_id,
            config=config,
        )
    return ForgetAnswer(**report.to_dict())
