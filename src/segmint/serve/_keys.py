"""``/v1/keys``: manage API keys through the service (admin keys only).

The same as ``segmint keys create/list/revoke``, for when the service owns a DuckDB store
(the CLI's commands that write stop while it runs) or runs on another machine.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from segmint.serve._auth import ApiKey, create_key, list_keys, require, revoke_key

__all__ = ["router"]

router = APIRouter(prefix="/v1/keys", tags=["keys"])

_ADMIN = Depends(require("admin"))

_NOT_FOUND = {
    404: {
        "description": "No such key",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }
}


class NewKey(BaseModel):
    """A key to create."""

    name: str = Field(min_length=1, max_length=200, description="what the key is for")
    scope: Literal["write", "decide", "admin"] = "write"
    rate_per_second: float | None = Field(
        default=None, gt=0, le=1_000_000, description="default: serve.rate_per_second"
    )


class KeyInfo(BaseModel):
    """A key as listed: never its secret nor its hash."""

    key_id: str
    name: str
    scope: str
    created: str | None
    revoked: str | None
    rate_per_second: float | None


class CreatedKey(BaseModel):
    """A new key with its secret, shown this once."""

    key_id: str
    name: str
    scope: str
    rate_per_second: float | None
    secret: str


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


@router.get("", summary="List the API keys", response_model=list[KeyInfo])
def list_(request: Request, key: ApiKey = _ADMIN) -> list[KeyInfo]:
    """Every key, newest first."""
    from segmint.serve._app import store_access

    with store_access(request) as store:
        rows = list_keys(store)
    return [
        KeyInfo(**{**r, "created": _iso(r["created"]), "revoked": _iso(r["revoked"])}) for r in rows
    ]


@router.post("", summary="Create an API key", status_code=201, response_model=CreatedKey)
def create(request: Request, new: NewKey, key: ApiKey = _ADMIN) -> CreatedKey:
    """Create a key; its secret is in this answer and nowhere else."""
    from segmint.serve._app import store_access

    with store_access(request) as store:
        secret = create_key(store, new.name, new.scope, rate_per_second=new.rate_per_second)
    return CreatedKey(
        key_id=secret[:11],
        name=new.name,
        scope=new.scope,
        rate_per_second=new.rate_per_second,
        secret=secret,
    )


@router.delete("/{key_id}", summary="Revoke an API key", responses=_NOT_FOUND)  # type: ignore[arg-type]
def revoke(request: Request, key_id: str, key: ApiKey = _ADMIN) -> dict[str, Any]:
    """Revoke a key; services refuse it within 5 seconds."""
    from segmint.serve._app import store_access

    with store_access(request) as store:
        changed = revoke_key(store, key_id)
    return {"key_id": key_id, "revoked": True, "already_revoked": not changed}
