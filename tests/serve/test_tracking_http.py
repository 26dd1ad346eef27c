"""The Segment-compatible tracking API on a real uvicorn: every endpoint lands its messages
in the spool with Segment's fields, clock skew is corrected, limits and bad messages are
refused whole, and Segment's own Python library talks to it unchanged."""

from __future__ import annotations

import gzip
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import Served

import segmint
from segmint.serve import create_app
from segmint.serve._auth import create_key
from segmint.store import open_vault

ISO_MS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


class Tracking:
    def __init__(self, served: Served, root: Path, keys: dict[str, str], vault: Any) -> None:
        self.url = served.url
        self.root = root
        self.keys = keys
        self.vault = vault  # the spool's lines are sealed at rest: opened to be read

    def client(self, scope: str = "write") -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(self.keys[scope], ""), timeout=10)

    def spool_lines(self) -> list[str]:
        lines: list[str] = []
        for path in sorted((self.root / ".segmint" / "spool").glob("spool-*.jsonl")):
            lines.extend(path.read_text(encoding="utf-8").splitlines(keepends=True))
        return [self._open(line) for line in lines]

    def _open(self, line: str) -> str:
        text = line.rstrip("\n")
        if text.startswith("enc1:"):
            text = self.vault.open(text, "spool.line")
        return text + ("\n" if line.endswith("\n") else "")

    def spooled(self) -> dict[str, dict[str, Any]]:
        """Spool messages by messageId (complete lines only)."""
        return {
            m["messageId"]: m
            for m in (json.loads(line) for line in self.spool_lines() if line.endswith("\n"))
        }


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tracking]:
    root = tmp_path_factory.mktemp("tracking")
    (root / "segmint.yaml").write_text("project: tracking\nstore: t.duckdb\n")
    with segmint.open_project(root) as p:
        keys = {scope: create_key(p.store, "web", scope) for scope in ("write", "decide", "admin")}
        with Served(create_app(p)) as s:
            yield Tracking(s, root, keys, open_vault(p.store, p.config))


def _mid() -> str:
    return f"m-{uuid.uuid4()}"


CALLS: dict[str, dict[str, Any]] = {
    "track": {"userId": "u1", "event": "Product Viewed", "properties": {"sku": "A1"}},
    "identify": {"userId": "u1", "traits": {"plan": "pro"}},
    "page": {"anonymousId": "a1", "name": "Home"},
    "screen": {"userId": "u1", "name": "Cart"},
    "group": {"userId": "u1", "groupId": "g1", "traits": {"name": "Initech"}},
    "alias": {"previousId": "a1", "userId": "u1"},
}


@pytest.mark.parametrize("kind", list(CALLS))
def test_each_endpoint_lands_in_the_spool_with_segment_fields(
    tracking: Tracking, kind: str
) -> None:
    mid = _mid()
    with tracking.client() as c:
        r = c.post(f"/v1/{kind}", json={**CALLS[kind], "messageId": mid})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    msg = tracking.spooled()[mid]
    assert msg["type"] == kind and msg["_source"] == "web"
    assert ISO_MS_Z.match(msg["receivedAt"]) and ISO_MS_Z.match(msg["timestamp"])
    # no client time given: it happened when it was received
    assert msg["timestamp"] == msg["receivedAt"]
    for field, value in CALLS[kind].items():
        assert msg[field] == value


def test_a_message_without_messageId_gets_one_and_the_write_key_is_never_kept(
    tracking: Tracking,
) -> None:
    before = set(tracking.spooled())
    with tracking.client() as c:
        r = c.post(
            "/v1/track",
            json={"userId": "u-no-id", "event": "X", "writeKey": tracking.keys["write"]},
        )
    assert r.status_code == 200
    new = [m for k, m in tracking.spooled().items() if k not in before]
    assert [m["userId"] for m in new] == ["u-no-id"]
    uuid.UUID(new[0]["messageId"])  # a generated uuid
    assert tracking.keys["write"] not in "".join(tracking.spool_lines())


def test_batch_corrects_a_client_clock_an_hour_fast_and_merges_its_context(
    tracking: Tracking,
) -> None:
    now = datetime.now(UTC)
    fast = now + timedelta(hours=1)  # the device's clock
    happened = fast - timedelta(seconds=30)  # by that clock, 30 s before sending
    mids = [_mid(), _mid(), _mid()]
    body = {
        "sentAt": fast.isoformat(),
        "context": {"ip": "10.0.0.1", "locale": "en-GB"},
        "batch": [
            {
                "type": "track",
                "userId": "u2",
                "event": "Order Completed",
                "timestamp": happened.isoformat(),
                "context": {"locale": "de-DE"},
                "messageId": mids[0],
            },
            # a message's own sentAt wins over the batch's (here: a correct clock)
            {
                "type": "identify",
                "userId": "u2",
                "originalTimestamp": (now - timedelta(seconds=10)).isoformat(),
                "sentAt": now.isoformat(),
                "messageId": mids[1],
            },
            {"type": "page", "anonymousId": "a2", "messageId": mids[2]},
        ],
    }
    with tracking.client() as c:
        r = c.post("/v1/batch", json=body)
    assert r.status_code == 200, r.text
    spooled = tracking.spooled()
    first, second, third = (spooled[m] for m in mids)

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    received = at(first["receivedAt"])
    # timestamp = receivedAt - (sentAt - originalTimestamp): 30 s before it was received
    assert (
        at(first["timestamp"]) == received - (fast - happened)
        or abs((at(first["timestamp"]) - (received - timedelta(seconds=30))).total_seconds())
        < 0.002
    )
    assert abs((at(first["timestamp"]) - now).total_seconds()) < 60  # not an hour ahead
    assert first["originalTimestamp"] == happened.isoformat()
    assert first["context"] == {"ip": "10.0.0.1", "locale": "de-DE"}
    assert abs((at(second["timestamp"]) - (received - timedelta(seconds=10))).total_seconds()) < 1
    assert third["context"] == {"ip": "10.0.0.1", "locale": "en-GB"}
    assert third["timestamp"] == third["receivedAt"]


def test_a_timestamp_without_sentAt_is_kept(tracking: Tracking) -> None:
    mid = _mid()
    with tracking.client() as c:
        r = c.post(
            "/v1/track",
            json={
                "userId": "u3",
                "event": "E",
                "timestamp": "2020-02-03T04:05:06.789+01:00",
                "messageId": mid,
            },
        )
    assert r.status_code == 200
    msg = tracking.spooled()[mid]
    assert msg["timestamp"] == "2020-02-03T03:05:06.789Z"
    assert msg["originalTimestamp"] == "2020-02-03T04:05:06.789+01:00"


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def test_size_limits_are_413_with_the_reason(tracking: Tracking) -> None:
    big = "x" * (33 * 1024)
    with tracking.client() as c:
        body = _problem(c.post("/v1/track", json={"userId": "u", "event": "E", "p": big}), 413)
        assert "32 KB" in body["detail"]
        small = {"type": "track", "userId": "u", "event": "E", "p": "y" * 1000}
        batch = {"batch": [small] * (501 * 1024 // 1000 + 1)}
        assert len(json.dumps(batch)) > 501 * 1024
        body = _problem(c.post("/v1/batch", json=batch), 413)
        assert "500 KB" in body["detail"]
        one_big = {"batch": [small, {**small, "p": big}]}
        body = _problem(c.post("/v1/batch", json=one_big), 413)
        assert body["indexes"] == [1] and "32 KB" in body["detail"]
        # a gzip bomb: 40 KB on the wire, 20 MB inflated, stopped at the limit
        bomb = gzip.compress(b'{"batch": ["' + b"0" * 20_000_000 + b'"]}')
        assert len(bomb) < 100_000
        r = c.post(
            "/v1/batch",
            content=bomb,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
        assert "500 KB" in _problem(r, 413)["detail"]


def test_a_batch_with_bad_messages_is_refused_whole_naming_each(tracking: Tracking) -> None:
    ok = _mid()
    batch = [
        {"type": "track", "userId": "u", "event": "Fine", "messageId": ok},
        {"type": "track", "userId": "u"},  # no event
        {"type": "identify", "traits": {"a": 1}},  # no userId / anonymousId
        {"type": "alias", "userId": "u"},  # no previousId
        {"type": "purchase", "userId": "u"},  # no such type
        {"type": "page", "userId": "u", "timestamp": "yesterday"},
        "not an object",
    ]
    with tracking.client() as c:
        body = _problem(c.post("/v1/batch", json={"batch": batch}), 400)
    by_index = {e["index"]: e for e in body["errors"]}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6]
    assert by_index[1]["field"] == "event"
    assert "userId or anonymousId" in by_index[2]["message"]
    assert by_index[3]["field"] == "previousId"
    assert by_index[4]["field"] == "type"
    assert by_index[5]["field"] == "timestamp"
    assert body["detail"].startswith("message 1: event")
    assert ok not in tracking.spooled()  # nothing of a refused batch is kept


@pytest.mark.parametrize(
    ("kind", "message", "field"),
    [
        ("track", {"userId": "u"}, "event"),
        ("track", {"event": "E"}, "userId or anonymousId"),
        ("identify", {"userId": "", "anonymousId": None}, "userId or anonymousId"),
        ("alias", {"previousId": "a"}, "userId"),
        ("group", {"userId": "u"}, "groupId"),
        ("track", {"userId": "u", "event": "E", "type": "identify"}, "type"),
    ],
)
def test_a_single_bad_message_is_400_naming_the_field(
    tracking: Tracking, kind: str, message: dict[str, Any], field: str
) -> None:
    with tracking.client() as c:
        body = _problem(c.post(f"/v1/{kind}", json=message), 400)
    assert field in body["detail"]


def test_bodies_that_are_not_json_or_not_gzip(tracking: Tracking) -> None:
    with tracking.client() as c:
        _problem(
            c.post("/v1/track", content=b"{nope", headers={"Content-Type": "application/json"}), 400
        )
        _problem(c.post("/v1/batch", json=[1, 2]), 400)
        _problem(c.post("/v1/batch", json={"batch": "x"}), 400)
        _problem(c.post("/v1/track", content=b"plain", headers={"Content-Encoding": "gzip"}), 400)
        _problem(c.post("/v1/track", content=b"{}", headers={"Content-Encoding": "br"}), 415)
        nan = b'{"userId": "u", "event": "E", "properties": {"x": NaN}}'
        _problem(c.post("/v1/track", content=nan), 400)


def test_gzip_bodies_are_accepted(tracking: Tracking) -> None:
    mid = _mid()
    body = json.dumps(
        {"batch": [{"type": "track", "userId": "u", "event": "Zipped", "messageId": mid}]}
    ).encode()
    with tracking.client() as c:
        r = c.post(
            "/v1/batch",
            content=gzip.compress(body),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert r.status_code == 200, r.text
    assert tracking.spooled()[mid]["event"] == "Zipped"


def test_keys_401_without_or_unknown_and_403_for_a_decide_key(tracking: Tracking) -> None:
    msg = {"userId": "u", "event": "E"}
    with httpx.Client(base_url=tracking.url) as c:
        r = c.post("/v1/track", json=msg)
        assert _problem(r, 401) and r.headers["www-authenticate"].startswith("Basic")
        _problem(c.post("/v1/track", json=msg, auth=("wk_not-a-key", "")), 401)
    with tracking.client("decide") as c:
        _problem(c.post("/v1/batch", json={"batch": []}), 403)
        _problem(c.get("/v1/tracking/status"), 403)
    with tracking.client("write") as c:
        _problem(c.get("/v1/tracking/status"), 403)


def test_segments_own_python_library_sends_every_call_unchanged(tracking: Tracking) -> None:
    from segment.analytics import Client

    errors: list[Any] = []
    for zipped in (False, True):
        client = Client(
            write_key=tracking.keys["write"],
            host=tracking.url,
            sync_mode=True,
            gzip=zipped,
            on_error=lambda e, batch: errors.append(e),
            max_retries=1,
        )
        sent = [
            client.track("lib-user", "Signed Up", {"plan": "pro"})[1],
            client.identify("lib-user", {"email_domain": "example.com"})[1],
            client.page("lib-user", "Docs", "Install")[1],
            client.screen(anonymous_id="lib-anon", name="Home")[1],
            client.alias("lib-anon", "lib-user")[1],
            client.group("lib-user", "acme", {"name": "Acme"})[1],
        ]
        assert not errors
        spooled = tracking.spooled()
        for msg in sent:
            got = spooled[msg["messageId"]]
            assert got["type"] == msg["type"]
            assert got["timestamp"] and got["sentAt"] and got["_source"] == "web"
            assert got["context"]["library"]["name"] == "analytics-python"
        assert spooled[sent[0]["messageId"]]["event"] == "Signed Up"
        assert spooled[sent[4]["messageId"]]["previousId"] == "lib-anon"
    assert tracking.keys["write"] not in "".join(tracking.spool_lines())


def test_status_shows_each_spool_file_to_an_admin(tracking: Tracking) -> None:
    with tracking.client() as c:
        assert c.post("/v1/track", json={"userId": "u", "event": "E"}).status_code == 200
    with tracking.client("admin") as c:
        r = c.get("/v1/tracking/status")
    assert r.status_code == 200, r.text
    status = r.json()
    mine = [f for f in status["files"] if f["writer"] == "this process"]
    assert len(mine) == 1
    assert mine[0]["bytes_written"] > 0 and mine[0]["file"] == status["this_process"]
    assert mine[0]["bytes_written"] - mine[0]["bytes_loaded"] >= 0
    assert status["lag_messages"] == sum(f["lag_messages"] for f in status["files"])


def test_the_openapi_document_describes_every_message(tracking: Tracking) -> None:
    doc = httpx.get(tracking.url + "/openapi.json").json()
    for kind in [*CALLS, "batch"]:
        op = doc["paths"][f"/v1/{kind}"]["post"]
        assert {"200", "400", "401", "403", "413", "429"} <= set(op["responses"])
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert "$ref" not in json.dumps(schema)
    track = doc["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]
    assert "event" in track["schema"]["required"]
    batch = doc["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert len(batch["schema"]["properties"]["batch"]["items"]["oneOf"]) == 6


def test_odd_but_valid_input_found_by_schemathesis(tracking: Tracking) -> None:
    """A type that is an object is a 400 (it was a 500); a client time so far off that the
    correction leaves years 1..9999 is kept as sent (it was a 400 for a schema-valid body)."""
    mid = _mid()
    with tracking.client() as c:
        body = _problem(c.post("/v1/batch", json={"batch": [{"type": {"a": 1}}]}), 400)
        assert body["errors"][0]["field"] == "type"
        r = c.post(
            "/v1/track",
            json={
                "userId": "u",
                "event": "E",
                "messageId": mid,
                "timestamp": "1420-07-30T01:20:18.578-06:03",
                "sentAt": "7171-05-25T03:45:28Z",
            },
        )
        # JSON may escape half a surrogate pair; it is not Unicode and the store refuses it
        lone = b'{"userId": "u", "event": "E", "properties": {"x": "\\udc00"}}'
        body = _problem(c.post("/v1/track", content=lone), 400)
        assert "surrogate" in body["detail"]
    assert r.status_code == 200, r.text
    assert tracking.spooled()[mid]["timestamp"] == "1420-07-30T01:20:18.578-06:03"
