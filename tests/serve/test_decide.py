"""``GET /v1/decide`` on a real uvicorn: answers match the store's latest runs, control arms
get the default experience, every answer is an exposure row, snapshots swap when a new run
lands, keys and CORS are enforced; one decision on PostgreSQL."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from tests.serve.conftest import Served

import segmint
from segmint.campaigns import default_playbook, plan_campaign

ORIGIN = "http://127.0.0.1:5999"
CAMPAIGN = "winback_at_risk"  # At Risk and Can't Lose Them: a win-back offer, UI 'winback'


def make_decide_project(root: Path, *, store: str | None = None) -> None:
    """A 300-user shop with the default playbook (UI variants per segment), a popularity
    recommendation run, a planned win-back campaign and one stitched anonymous id."""
    from segmint.demo import generate_demo

    generate_demo(root, n_users=300, seed=5)
    cfg = root / "segmint.yaml"
    if store is not None:
        cfg.write_text(cfg.read_text().replace("store: demo.duckdb", f"store: {store}"))
    with segmint.open_project(root) as p:
        p.ingest()
        p.segment(["rfm"])
        playbook = default_playbook(p.config, store=p.store)
    serve = f"serve:\n  cors_origins: ['{ORIGIN}']\n  decide_refresh_seconds: 0.2\n"
    cfg.write_text(cfg.read_text().rstrip() + "\n\n" + serve + "\n" + playbook)
    with segmint.open_project(root) as p:
        p.recommend_all("popularity")
        plan_campaign(p.store, p.config, CAMPAIGN)
        user = _users(p, "rfm", "Champions")[0]
        p.store.execute(
            "INSERT INTO identities (anonymous_id, user_id, source, linked_at, message_id) "
            f"VALUES ('anon-1', '{user}', 'web', now(), NULL)"
        )


def _users(p: Any, segmentation: str, segment: str) -> list[str]:
    frame = p.store.query(
        "SELECT a.user_id FROM segment_assignments a WHERE a.run_id = (SELECT run_id FROM "
        "segment_runs WHERE segmentation = ? ORDER BY created_at DESC, run_id DESC LIMIT 1) "
        "AND a.segment = ? AND a.user_id NOT IN (SELECT user_id FROM campaign_assignments) "
        "ORDER BY a.user_id",
        [segmentation, segment],
    )
    return [str(u) for u in frame["user_id"]]


def _arm_users(p: Any, arm: str) -> list[str]:
    frame = p.store.query(
        "SELECT user_id FROM campaign_assignments WHERE campaign = ? AND arm = ? ORDER BY user_id",
        [CAMPAIGN, arm],
    )
    return [str(u) for u in frame["user_id"]]


@pytest.fixture(scope="module")
def decide_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("decide-shop")
    make_decide_project(root)
    return root


class Site:
    """A served private copy of the decide shop, with a decide and a write key."""

    def __init__(self, project: Any, served: Served, app: Any) -> None:
        from segmint.serve._auth import create_key

        self.p, self.served, self.app = project, served, app
        with app.state.store_lock:
            self.decide_key = create_key(project.store, "shop page", "decide")
            self.write_key = create_key(project.store, "web", "write")
        self.client = httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {self.decide_key}"}
        )

    def decide(self, user: str, **params: Any) -> dict[str, Any]:
        r = self.client.get(f"/v1/decide/{user}", params=params)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self.app.state.store_lock:
            return self.p.store.query(sql, params)


@pytest.fixture()
def site(decide_shop: Path, tmp_path: Path) -> Iterator[Site]:
    from segmint.serve import create_app

    root = tmp_path / "shop"
    shutil.copytree(decide_shop, root)
    with segmint.open_project(root) as p:
        app = create_app(p)
        with Served(app) as s:
            site = Site(p, s, app)
            try:
                yield site
            finally:
                site.client.close()


def test_a_known_user_gets_the_latest_runs_segment_strategy_and_recommendations(
    site: Site,
) -> None:
    p = site.p
    user = _users(p, "rfm", "Champions")[0]
    d = site.decide(user, n=3)
    run = site.query(
        "SELECT run_id, segment FROM segment_assignments WHERE user_id = ? AND run_id = "
        "(SELECT run_id FROM segment_runs WHERE segmentation = 'rfm' "
        "ORDER BY created_at DESC, run_id DESC LIMIT 1)",
        [user],
    ).iloc[0]
    assert d["user_id"] == user and d["known"] is True
    assert d["segments"]["rfm"] == {"segment": run["segment"], "run_id": run["run_id"]}
    assert d["strategies"]["rfm"]["strategy"] == "Champions"
    assert d["strategies"]["rfm"]["template"] == "vip_perks"
    assert d["ui"]["name"] == "vip" and d["ui"]["theme"]["background"] == "#14110b"
    assert d["offer"]["code"] == "EARLY" and d["offer"]["type"] == "exclusive_access"
    recs = site.query(
        'SELECT item_id, "rank", reason FROM recommendations WHERE user_id = ? AND run_id = '
        "(SELECT run_id FROM recommendation_runs WHERE kind = 'batch' "
        'ORDER BY created_at DESC, run_id DESC LIMIT 1) AND "rank" <= 3 ORDER BY "rank"',
        [user],
    )
    assert [(r["item_id"], r["rank"], r["reason"]) for r in d["recommendations"]] == list(
        zip(recs["item_id"], recs["rank"].astype(int), recs["reason"], strict=True)
    )
    assert d["experiments"] == {} and d["control"] is False
    assert d["snapshot_id"].startswith("snap-")


def test_an_anonymous_id_resolves_through_identities_and_an_unknown_one_is_cold(
    site: Site,
) -> None:
    user = _users(site.p, "rfm", "Champions")[0]
    r = site.client.get("/v1/decide", params={"anonymous_id": "anon-1"})
    assert r.status_code == 200
    d = r.json()
    assert (d["user_id"], d["anonymous_id"], d["known"]) == (user, "anon-1", True)
    assert d["ui"]["name"] == "vip"
    cold = site.client.get("/v1/decide", params={"anonymous_id": "never-seen"}).json()
    assert (cold["user_id"], cold["known"], cold["ui"]["name"]) == (None, False, "default")
    missing = site.client.get("/v1/decide")  # anonymous_id is required
    assert missing.status_code == 400 and "anonymous_id" in missing.text


def test_an_unknown_user_gets_the_cold_start(site: Site) -> None:
    d = site.decide("nobody-42", n=4)
    assert (d["user_id"], d["known"], d["segments"], d["offer"]) == ("nobody-42", False, {}, None)
    assert d["ui"]["name"] == "default" and d["ui"]["hero"]["title"] == "Welcome to the shop"
    popular = site.query(
        "WITH last AS (SELECT max(ts) AS t FROM orders WHERE status = 'completed') "
        "SELECT oi.item_id, count(DISTINCT o.user_id) AS n FROM order_items oi JOIN orders o "
        "ON o.order_id = oi.order_id, last WHERE o.status = 'completed' "
        "AND o.ts >= last.t - INTERVAL 30 DAY GROUP BY oi.item_id ORDER BY n DESC, item_id "
        "LIMIT 4"
    )
    assert [r["item_id"] for r in d["recommendations"]] == list(popular["item_id"])
    assert {r["reason"] for r in d["recommendations"]} == {"popular now"}
    champion = _users(site.p, "rfm", "Champions")[0]
    assert site.decide(champion + "%00")["known"] is False  # a NUL: not the champion


def _exposures(site: Site, user: str, timeout: float = 5.0) -> pd.DataFrame:
    deadline = time.monotonic() + timeout
    while True:
        rows = site.query(
            "SELECT campaign, arm, segmentation, segment, ui_variant, offer_code, snapshot_id "
            "FROM exposures WHERE user_id = ? ORDER BY served_at",
            [user],
        )
        if len(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def test_control_gets_the_default_and_every_decision_is_an_exposure(site: Site) -> None:
    control, treated = _arm_users(site.p, "control")[0], _arm_users(site.p, "treatment")[0]
    c = site.decide(control)
    assert c["control"] is True and c["experiments"] == {CAMPAIGN: "control"}
    assert c["ui"]["name"] == "default" and c["offer"] is None
    assert c["strategies"]["rfm"]["ui"] == "winback"  # what they would have seen
    t = site.decide(treated)
    assert t["control"] is False and t["experiments"] == {CAMPAIGN: "treatment"}
    assert t["ui"]["name"] == "winback" and t["offer"]["code"] == "COMEBACK20"
    assert t["ui"]["hero"]["title"] == "We miss you: 20% off"
    site.decide(treated)
    rows = _exposures(site, control)
    assert rows[["campaign", "arm", "ui_variant"]].values.tolist() == [
        [CAMPAIGN, "control", "default"]
    ]
    assert rows["offer_code"].isna().all() and rows["snapshot_id"].iloc[0] == c["snapshot_id"]
    treated_rows = _exposures(site, treated)
    while len(treated_rows) < 2:
        treated_rows = _exposures(site, treated)
    assert (
        treated_rows[
            ["campaign", "arm", "segmentation", "ui_variant", "offer_code"]
        ].values.tolist()
        == [[CAMPAIGN, "treatment", "rfm", "winback", "COMEBACK20"]] * 2
    )


def test_a_new_segment_run_swaps_the_snapshot(site: Site) -> None:
    user = _users(site.p, "rfm", "Champions")[0]
    before = site.decide(user)
    with site.app.state.store_lock:
        site.p.segment(["rfm"])
    deadline = time.monotonic() + 10
    after = site.decide(user)
    while after["segments"]["rfm"]["run_id"] == before["segments"]["rfm"]["run_id"]:
        assert time.monotonic() < deadline, "the snapshot was not swapped"
        time.sleep(0.1)
        after = site.decide(user)
    new_run = site.query(
        "SELECT run_id FROM segment_runs WHERE segmentation = 'rfm' "
        "ORDER BY created_at DESC, run_id DESC LIMIT 1"
    ).iat[0, 0]
    assert after["segments"]["rfm"]["run_id"] == new_run
    assert after["snapshot_id"] != before["snapshot_id"]


def test_keys_no_key_is_401_and_a_write_key_cannot_decide(site: Site) -> None:
    url = f"{site.served.url}/v1/decide/someone"
    assert httpx.get(url).status_code == 401
    r = httpx.get(url, headers={"Authorization": f"Bearer {site.write_key}"})
    assert r.status_code == 403 and "write key cannot" in r.json()["detail"]
    assert httpx.get(url, auth=(site.decide_key, "")).status_code == 200  # Basic works too


def test_cors_preflight_from_the_allowed_origin_only(site: Site) -> None:
    pre = {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    ok = httpx.options(f"{site.served.url}/v1/decide/u1", headers={"Origin": ORIGIN, **pre})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = httpx.options(
        f"{site.served.url}/v1/decide/u1", headers={"Origin": "http://evil.example", **pre}
    )
    assert not any(h.startswith("access-control-") for h in other.headers)
    got = site.client.get("/v1/decide/u1", headers={"Origin": ORIGIN})
    assert got.headers["access-control-allow-origin"] == ORIGIN
    denied = site.client.get("/v1/decide/u1", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in denied.headers
    # only the tracking and decision endpoints: the rest of the service is not shared
    health = httpx.get(f"{site.served.url}/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in health.headers


def test_the_openapi_document_describes_the_decision(site: Site) -> None:
    doc = site.client.get("/openapi.json").json()
    assert {"/v1/decide/{user_id}", "/v1/decide"} <= set(doc["paths"])
    schema = doc["components"]["schemas"]["Decision"]
    assert {"segments", "strategies", "offer", "ui", "recommendations", "experiments"} <= set(
        schema["properties"]
    )
    assert "copy" in doc["components"]["schemas"]["UiOut"]["properties"]


def test_evaluate_measures_a_ui_campaign(site: Site) -> None:
    """Plan (done) -> decisions for its users -> orders after -> evaluate shows the arms."""
    p = site.p
    treated, control = _arm_users(p, "treatment"), _arm_users(p, "control")
    for user in treated + control:
        site.decide(user)
    assert len(_exposures(site, control[-1])) == 1
    later = datetime.now(UTC) + timedelta(hours=1)
    buyers = treated[: len(treated) // 2]
    orders = pd.DataFrame(
        {
            "order_id": [f"UI-{i}" for i in range(len(buyers))],
            "user_id": buyers,
            "ts": [later] * len(buyers),
            "amount": [50.0] * len(buyers),
            "currency": ["USD"] * len(buyers),
            "channel": ["online"] * len(buyers),
            "discount": [0.0] * len(buyers),
            "status": ["completed"] * len(buyers),
        }
    )
    with site.app.state.store_lock:
        p.store.insert("orders", orders)
        ev = p.evaluate(CAMPAIGN, save=False)
    arms = ev.arms.set_index(ev.arms.columns[0])
    assert set(arms.index) == {"treatment", "control"}
    assert int(arms.loc["treatment"].iloc[0]) == len(treated)
    assert int(arms.loc["control"].iloc[0]) == len(control)


# -- PostgreSQL ---------------------------------------------------------------------------
def test_a_decision_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    from segmint.serve import create_app
    from segmint.serve._auth import create_key

    make_decide_project(tmp_path / "pg", store=pg_url)
    with segmint.open_project(tmp_path / "pg") as p:
        key = create_key(p.store, "page", "decide")
        user = _users(p, "rfm", "Champions")[0]
        control = _arm_users(p, "control")[0]
        expected = p.store.query(
            'SELECT item_id FROM recommendations WHERE user_id = ? AND "rank" <= 2 ORDER BY "rank"',
            [user],
        )
        app = create_app(p)
        with (
            Served(app) as s,
            httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}) as c,
        ):
            d = c.get(f"/v1/decide/{user}", params={"n": 2}).json()
            ctl = c.get(f"/v1/decide/{control}").json()
        assert d["segments"]["rfm"]["segment"] == "Champions" and d["ui"]["name"] == "vip"
        assert [r["item_id"] for r in d["recommendations"]] == list(expected["item_id"])
        assert ctl["control"] is True and ctl["ui"]["name"] == "default"
        # the exposure log was flushed when the service stopped
        n = p.store.scalar("SELECT count(*) FROM exposures WHERE user_id = ?", [control])
        assert int(n) == 1


def test_odd_requests_are_problems_never_500s(site: Site) -> None:
    c = site.client
    for path, params in [
        ("/v1/decide/u1", {"n": -1}),
        ("/v1/decide/u1", {"n": 1000}),
        ("/v1/decide/u1", {"n": "many"}),
        ("/v1/decide/" + "x" * 300, {}),
        ("/v1/decide", {"anonymous_id": ""}),
    ]:
        r = c.get(path, params=params)
        assert r.status_code == 400, (path, params, r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
    odd = c.get("/v1/decide/%C3%A9%20%F0%9F%98%80", params={"n": 0})
    assert odd.status_code == 200
    assert (odd.json()["user_id"], odd.json()["recommendations"]) == ("é 😀", [])


def test_a_visitor_who_identifies_is_recognised_at_the_next_poll(site: Site) -> None:
    """identify through the tracking API -> the loader stores the link -> the next
    snapshot poll (0.2 s here) re-reads identities alone: no wait for the throttled full
    rebuild (``people_seconds``, a minute)."""
    user = _users(site.p, "rfm", "Champions")[1]
    assert (
        site.client.get("/v1/decide", params={"anonymous_id": "anon-new"}).json()["known"] is False
    )
    builds = site.app.state.decisions.snapshots.builds
    r = httpx.post(
        f"{site.served.url}/v1/identify",
        json={"anonymousId": "anon-new", "userId": user, "traits": {"city": "Berlin"}},
        auth=(site.write_key, ""),
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 15
    while True:
        d = site.client.get("/v1/decide", params={"anonymous_id": "anon-new"}).json()
        if d["known"]:
            break
        assert time.monotonic() < deadline, "the identity did not reach the decisions"
        time.sleep(0.1)
    assert (d["user_id"], d["ui"]["name"]) == (user, "vip")
    assert site.app.state.decisions.snapshots.builds == builds  # no full rebuild


def test_a_personalization_revoke_through_tracking_serves_the_default_at_the_next_poll(
    site: Site,
) -> None:
    """``privacy.personalization: opt_out`` (the default): a person who revokes
    ``personalization`` (the tracking API's consent event) gets the unknown person's answer
    with the reason, at the next poll and without a full rebuild; others are untouched."""
    user, other = _users(site.p, "rfm", "Champions")[2:4]
    assert site.decide(user)["personalized"] is True
    builds = site.app.state.decisions.snapshots.builds
    r = httpx.post(
        f"{site.served.url}/v1/track",
        json={
            "userId": user,
            "event": "Consent Updated",
            "properties": {"channel": "web", "purpose": "personalization", "granted": False},
        },
        auth=(site.write_key, ""),
    )
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 15
    while (d := site.decide(user, n=4))["personalized"]:
        assert time.monotonic() < deadline, "the revoke did not reach the decisions"
        time.sleep(0.1)
    assert (d["known"], d["reason"]) == (True, "no personalization consent")
    assert (d["segments"], d["strategies"], d["offer"], d["experiments"]) == ({}, {}, None, {})
    assert d["ui"]["name"] == "default"
    cold = site.decide("nobody-7", n=4)
    assert (cold["personalized"], cold["reason"]) == (False, "unknown person")
    assert d["recommendations"] == cold["recommendations"]  # popular now, nothing personal
    assert site.decide(other)["ui"]["name"] == "vip"
    assert site.app.state.decisions.snapshots.builds == builds  # a swap, not a rebuild
    deadline = time.monotonic() + 5
    while True:  # the exposure log is flushed in the background
        rows = _exposures(site, user)
        plain = rows[rows["segment"].isna() & (rows["ui_variant"] == "default")]
        if len(plain) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(plain) >= 1 and plain["campaign"].isna().all()


def test_opt_in_personalizes_only_people_who_granted_it(decide_shop: Path) -> None:
    from segmint.serve._decide import DecisionService, decide
    from segmint.serve._snapshots import build_snapshot

    with segmint.open_project(decide_shop, read_only=True) as p:
        granted, other = _users(p, "rfm", "Champions")[:2]
        playbook = p.config.playbook
        snap = build_snapshot(p.store, playbook, personalization="opt_in")
    # a grant, seen by a snapshot built on a copy
    service = DecisionService(None, None)  # type: ignore[arg-type]
    assert decide(service, snap, granted)[0]["reason"] == "no personalization consent"
    root = decide_shop.parent / "opt-in-copy"
    shutil.copytree(decide_shop, root, dirs_exist_ok=True)
    with segmint.open_project(root) as p:
        p.store.execute(
            "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) "
            f"VALUES ('{granted}', 'any', 'personalization', now(), TRUE, 'test')"
        )
        snap = build_snapshot(p.store, playbook, personalization="opt_in")
    mine, theirs = decide(service, snap, granted)[0], decide(service, snap, other)[0]
    assert mine["personalized"] is True and mine["ui"]["name"] == "vip"
    assert theirs["personalized"] is False and theirs["segments"] == {}
