"""The tracking API: Segment's HTTP tracking spec (``/v1/track``, ``/v1/batch`` ...).

A request is checked whole (every message, the 32 KB per message and 500 KB per request
limits, after gunzip), each message gets the fields Segment adds (``type``, ``messageId``,
``receivedAt``, a clock-skew corrected ``timestamp``, the batch's ``context``) and the name
of the write key's source (``_source``), and the lines go to the spool
(:mod:`segmint.serve._spool`). The answer, ``{"success": true}``, is sent only once they are
fsync'ed; the loader thread (:mod:`segmint.serve._loader`) moves them into the store.

A batch with one bad message is refused whole, so a 2xx always means every message was
accepted.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from segmint.errors import RequestError
from segmint.serve._auth import ApiKey, require
from segmint.serve._problems import problem_response
from segmint.serve._spool import _SpoolClosed

__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_MESSAGE_BYTES",
    "AliasMessage",
    "BatchRequest",
    "GroupMessage",
    "IdentifyMessage",
    "PageMessage",
    "ScreenMessage",
    "TrackMessage",
    "prepare_messages",
    "router",
]

MAX_MESSAGE_BYTES = 32 * 1024
"""Segment's limit for one message (and for the body of a single-message request)."""
MAX_BATCH_BYTES = 500 * 1024
"""Segment's limit for the body of a ``/v1/batch`` request (after gunzip)."""

_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}(:?\d{2})?)?$"
)


_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
_LEAP_SECOND = re.compile(r"^(.{10}[T ]\d{2}:\d{2}:)60")


@functools.lru_cache(maxsize=4096)  # a batch's messages share their sentAt and often times
def parse_time(value: str) -> datetime:
    """An ISO-8601 date-time as an aware datetime (no zone is taken as UTC)."""
    if not _ISO.match(value):
        raise ValueError("not an ISO-8601 date-time such as 2026-01-31T12:00:00.000Z")
    text = value.upper().replace("Z", "+00:00")
    text = _LONG_FRACTION.sub(r"\1", text)  # Python < 3.12 takes at most 6 digits
    leap = _LEAP_SECOND.match(text)
    if leap:  # a leap second (RFC 3339 allows :60): the next second
        text = f"{leap.group(1)}59{text[leap.end() :]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"not a valid date-time ({exc})") from None
    if leap:
        moment += timedelta(seconds=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


@functools.lru_cache(maxsize=1024)  # every message of a request has the same receivedAt
def format_time(moment: datetime) -> str:
    """``2026-01-31T12:00:00.000Z``: UTC with milliseconds, as Segment writes times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _check_time(value: str) -> str:
    parse_time(value)
    return value


Timestamp = Annotated[
    str,
    AfterValidator(_check_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Id = Annotated[
    str | StrictInt, WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}]})
]
_NON_EMPTY_ID = {"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]}


def _present(value: Any) -> bool:
    return value is not None and value != ""


def _needs_an_id(schema: dict[str, Any]) -> None:
    schema["anyOf"] = [
        {"required": ["userId"], "properties": {"userId": _NON_EMPTY_ID}},
        {"required": ["anonymousId"], "properties": {"anonymousId": _NON_EMPTY_ID}},
    ]


class _Message(BaseModel):
    """Fields every Segment message may carry; any other field is kept as sent."""

    model_config = ConfigDict(extra="allow")

    messageId: str | None = Field(
        default=None, description="the message's unique id (generated when absent)"
    )
    timestamp: Timestamp | None = Field(
        default=None, description="when it happened, by the client's clock"
    )
    originalTimestamp: Timestamp | None = None
    sentAt: Timestamp | None = Field(
        default=None, description="when the client sent it (corrects the client's clock skew)"
    )
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(
        default=None, description="ignored: the key is the HTTP Basic user name (never stored)"
    )


class _Identified(_Message):
    userId: Id | None = None
    anonymousId: Id | None = None

    @model_validator(mode="after")
    def _one_id(self) -> _Identified:
        if not _present(self.userId) and not _present(self.anonymousId):
            raise ValueError("needs userId or anonymousId")
        return self


class TrackMessage(_Identified):
    """A ``track`` call: something a person did."""

    model_config = ConfigDict(json_schema_extra=_needs_an_id)
    type: Literal["track"] = "track"
    event: str = Field(min_length=1, description="the action's name, e.g. 'Order Completed'")
    properties: dict[str, Any] | None = None


class IdentifyMessage(_Identified):
    """An ``identify`` call: who a person is and their traits."""

    model_config = ConfigDict(json_schema_extra=_needs_an_id)
    type: Literal["identify"] = "identify"
    traits: dict[str, Any] | None = None


class PageMessage(_Identified):
    """A ``page`` call: a web page was viewed."""

    model_config = ConfigDict(json_schema_extra=_needs_an_id)
    type: Literal["page"] = "page"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class ScreenMessage(_Identified):
    """A ``screen`` call: an app screen was viewed."""

    model_config = ConfigDict(json_schema_extra=_needs_an_id)
    type: Literal["screen"] = "screen"
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class GroupMessage(_Identified):
    """A ``group`` call: a person belongs to a group (company, account)."""

    model_config = ConfigDict(json_schema_extra=_needs_an_id)
    type: Literal["group"] = "group"
    groupId: Id = Field(description="the group's id")
    traits: dict[str, Any] | None = None


class AliasMessage(_Message):
    """An ``alias`` call: ``previousId`` and ``userId`` are the same person."""

    type: Literal["alias"] = "alias"
    previousId: Id = Field(description="the id the person had before")
    userId: Id = Field(description="the id they have now")


AnyMessage = Annotated[
    TrackMessage | IdentifyMessage | PageMessage | ScreenMessage | GroupMessage | AliasMessage,
    Field(discriminator="type"),
]


class BatchRequest(BaseModel):
    """A ``/v1/batch`` body: up to 500 KB of messages, each naming its ``type``."""

    model_config = ConfigDict(extra="allow")
    batch: list[AnyMessage] = Field(description="the messages, each with its type")
    sentAt: Timestamp | None = Field(
        default=None, description="when the client sent the batch (applies to every message)"
    )
    context: dict[str, Any] | None = Field(
        default=None, description="merged into every message's context (the message's wins)"
    )
    integrations: dict[str, Any] | None = None
    writeKey: str | None = Field(default=None, description="ignored (the key is the user name)")


class Accepted(BaseModel):
    """Every message of the request is on disk and will be loaded."""

    success: Literal[True] = True


MODELS: dict[str, type[_Message]] = {
    "track": TrackMessage,
    "identify": IdentifyMessage,
    "page": PageMessage,
    "screen": ScreenMessage,
    "group": GroupMessage,
    "alias": AliasMessage,
}


# -- turning accepted messages into spool lines ------------------------------------------------
def _validation_errors(exc: ValidationError, index: int | None) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "message"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"index": index, "field": field, "message": message})
    return out


def _check(item: Any, kind: str | None, index: int | None) -> list[dict[str, Any]]:
    if not isinstance(item, dict):
        return [{"index": index, "field": "message", "message": "must be a JSON object"}]
    if kind is None:
        kind = item.get("type")
        if not isinstance(kind, str) or kind not in MODELS:
            return [
                {
                    "index": index,
                    "field": "type",
                    "message": f"must be one of {', '.join(MODELS)} (got {kind!r})"[:200],
                }
            ]
    try:
        MODELS[kind].model_validate(item)
    except ValidationError as exc:
        return _validation_errors(exc, index)
    return []


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _stamped(
    item: dict[str, Any],
    kind: str,
    *,
    received: datetime,
    source: str,
    batch: dict[str, Any],
) -> dict[str, Any]:
    """The message as the spool keeps it (see the spool contract in docs/serve.md)."""
    msg = dict(item)
    msg.pop("writeKey", None)
    msg["type"] = kind
    if not msg.get("messageId"):
        msg["messageId"] = str(uuid.uuid4())
    for name in ("context", "integrations"):
        outer = batch.get(name)
        if outer:
            msg[name] = {**outer, **(msg.get(name) or {})}
    sent_at = msg.get("sentAt") or batch.get("sentAt")
    original = msg.get("originalTimestamp") or msg.get("timestamp")
    msg["receivedAt"] = format_time(received)
    if sent_at:
        msg["sentAt"] = sent_at
    if original:
        msg["originalTimestamp"] = original
        msg["timestamp"] = _corrected(original, sent_at, received)
    else:
        msg["timestamp"] = msg["receivedAt"]
    msg["_source"] = source
    return msg


def _corrected(original: str, sent_at: str | None, received: datetime) -> str:
    """``receivedAt - (sentAt - originalTimestamp)``; without ``sentAt`` the client's time.
    A time that cannot be written as a UTC year 1..9999 is kept as the client sent it."""
    try:
        happened = parse_time(original)
        if sent_at:
            happened = received - (parse_time(sent_at) - happened)
        return format_time(happened)
    except (OverflowError, ValueError):
        return original


_SURROGATE = "a string holds an unpaired UTF-16 surrogate such as \\udc00 (not valid Unicode)"


def prepare_messages(
    items: list[Any],
    *,
    kind: str | None,
    source: str,
    batch: dict[str, Any] | None = None,
    received: datetime | None = None,
) -> list[bytes]:
    """Check every message and return their spool lines; raise a 400/413 :class:`RequestError`
    naming each bad message's index (``kind`` None: each message names its own type)."""
    received = received or datetime.now(UTC)
    batch = batch or {}
    errors: list[dict[str, Any]] = []
    too_big: list[int] = []
    lines: list[bytes] = []
    single = kind is not None
    for i, item in enumerate(items):
        index = None if single else i
        problems = _check(item, kind, index)
        if problems:
            errors.extend(problems)
            continue
        if not single and len(_dumps(item).encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
            too_big.append(i)
            continue
        if errors or too_big:
            continue  # the request is refused anyway
        msg = _stamped(item, kind or item["type"], received=received, source=source, batch=batch)
        try:
            lines.append((_dumps(msg) + "\n").encode("utf-8"))
        except UnicodeEncodeError:  # JSON allows "\udc00" alone; Unicode (and the store) not
            errors.append({"index": index, "field": "message", "message": _SURROGATE})
    if errors:
        raise RequestError(400, _summary(errors), errors=errors)
    if too_big:
        raise RequestError(
            413,
            f"a message is at most {MAX_MESSAGE_BYTES // 1024} KB; messages "
            f"{', '.join(map(str, too_big[:20]))} of the batch are larger",
            indexes=too_big,
        )
    return lines


def _summary(errors: list[dict[str, Any]]) -> str:
    first = errors[0]
    where = "" if first["index"] is None else f"message {first['index']}: "
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}{first['field']}: {first['message']}{more}"[:500]


# -- reading the body --------------------------------------------------------------------------
async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, gunzipped, refused with 413 past ``limit`` bytes (before or after
    decompression: a small gzip that would inflate past the limit is stopped there)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise RequestError(
            415, f"Content-Encoding {encoding[:40]!r} is not supported; send gzip or none"
        )
    too_large = RequestError(413, f"{what} is at most {limit // 1024} KB (after gunzip)")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 1024:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit + 1024:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding == "gzip":
        body = _gunzip(body, limit, too_large)
    if len(body) > limit:
        raise too_large
    return body


def _gunzip(data: bytes, limit: int, too_large: RequestError) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise too_large
        out += inflater.flush()
    except zlib.error:
        raise RequestError(400, "the body is not valid gzip (Content-Encoding: gzip)") from None
    if len(out) > limit:
        raise too_large
    if not inflater.eof:
        raise RequestError(400, "the gzip body is truncated")
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(value, dict):
        raise RequestError(400, "the body must be a JSON object")
    return value


# -- the endpoints -----------------------------------------------------------------------------
_problem = problem_response


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Accepted, "description": "every message is on disk and will be loaded"},
    400: _problem("a message is invalid (each bad one is listed in `errors` with its index)"),
    401: _problem("no key, or an unknown or revoked one"),
    403: _problem("the key is not a write key"),
    413: _problem("a message is over 32 KB or the request over its limit (after gunzip)"),
    415: _problem("a Content-Encoding other than gzip"),
    429: _problem("too many requests for this key (see Retry-After)"),
    503: _problem("the service is stopping or cannot write its spool; send again"),
}


def _inline(schema: Any, defs: dict[str, Any]) -> Any:
    """``schema`` with every ``#/$defs/`` reference replaced by its definition."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline(v, defs) for v in schema]
    return schema


def _body_schema(model: Any) -> dict[str, Any]:
    schema = TypeAdapter(model).json_schema()
    body = _inline(schema, schema.get("$defs", {}))
    items = body.get("properties", {}).get("batch", {}).get("items", {})
    if "discriminator" in items:
        # the mapping names $defs that are inlined now: in a batch each message must name
        # its type, which picks exactly one of the oneOf
        items.pop("discriminator")
        for one in items["oneOf"]:
            one["required"] = sorted({*one.get("required", []), "type"})
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    }


router = APIRouter(prefix="/v1", tags=["tracking"])

WriteKey = Annotated[ApiKey, Depends(require("write"))]


async def _accept(request: Request, lines: list[bytes]) -> dict[str, bool]:
    if not lines:  # an empty batch: nothing to keep
        return {"success": True}
    try:
        await request.app.state.tracking.writer.append(lines)
    except (_SpoolClosed, AttributeError):
        raise RequestError(
            503,
            "the service cannot take events right now; send again shortly",
            headers={"Retry-After": "1"},
        ) from None
    return {"success": True}


def _single(kind: str, model: type[_Message], summary: str) -> None:
    async def endpoint(request: Request, key: WriteKey) -> dict[str, bool]:
        body = await read_body(request, MAX_MESSAGE_BYTES, "a message")
        item = parse_json_object(body)
        lines = prepare_messages([item], kind=kind, source=key.name)
        return await _accept(request, lines)

    endpoint.__name__ = f"track_{kind}"
    router.add_api_route(
        f"/{kind}",
        endpoint,
        methods=["POST"],
        summary=summary,
        response_model=Accepted,
        responses=RESPONSES,
        openapi_extra=_body_schema(model),
    )


_single("track", TrackMessage, "Record an action (Segment track)")
_single("identify", IdentifyMessage, "Say who a person is (Segment identify)")
_single("page", PageMessage, "Record a page view (Segment page)")
_single("screen", ScreenMessage, "Record an app screen view (Segment screen)")
_single("group", GroupMessage, "Put a person in a group (Segment group)")
_single("alias", AliasMessage, "Join two ids of one person (Segment alias)")


@router.post(
    "/batch",
    summary="Send many messages in one request (Segment batch)",
    response_model=Accepted,
    responses=RESPONSES,
    openapi_extra=_body_schema(BatchRequest),
)
async def batch(request: Request, key: WriteKey) -> dict[str, bool]:
    """Every message is accepted, or none (400 lists each bad message with its index)."""
    body = await read_body(request, MAX_BATCH_BYTES, "a batch request")
    payload = parse_json_object(body)
    items = payload.get("batch")
    if not isinstance(items, list):
        raise RequestError(400, "batch: must be a list of messages")
    outer: dict[str, Any] = {}
    for name in ("context", "integrations"):
        value = payload.get(name)
        if value is not None and not isinstance(value, dict):
            raise RequestError(400, f"{name}: must be an object")
        outer[name] = value
    sent_at = payload.get("sentAt")
    if sent_at is not None:
        try:
            if not isinstance(sent_at, str):
                raise ValueError("must be a date-time string")
            parse_time(sent_at)
        except ValueError as exc:
            raise RequestError(400, f"sentAt: {exc}") from None
        outer["sentAt"] = sent_at
    if payload.get("writeKey") is not None and not isinstance(payload["writeKey"], str):
        raise RequestError(400, "writeKey: must be a string")
    lines = prepare_messages(items, kind=None, source=key.name, batch=outer)
    return await _accept(request, lines)


@router.get(
    "/tracking/status",
    summary="How far the loader is behind, per spool file (admin key)",
    responses={
        200: {"description": "per spool file: bytes written and loaded, lag"},
        401: RESPONSES[401],
        403: _problem("the key is not an admin key"),
        503: _problem("the tracking loader is not running"),
    },
)
def tracking_status(
    request: Request, key: Annotated[ApiKey, Depends(require("admin"))]
) -> dict[str, Any]:
    tracking = getattr(request.app.state, "tracking", None)
    if tracking is None:
        raise RequestError(503, "the tracking loader is not running")
    return dict(tracking.status())
