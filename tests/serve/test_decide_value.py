"""``GET /v1/decide`` carries the person's predicted value and churn risk (``value``) from
the latest CLV and churn runs, on a real uvicorn: the figures are the store's, a person
without a prediction and an unknown one get none, a personalization revoke takes it away,
and a new prediction run is served at the next poll."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from tests.serve.conftest import Served

import segmint
from segmint.config import PredictSettings
from segmint.predict import PredictionRun, predict_clv


def _save_churn(p: Any, as_of: datetime, risks: pd.Series) -> str:
    """A churn run with the given risks, saved as ``predict_churn`` saves one."""
    from segmint.predict._runs import new_run_id, save_run

    run = PredictionRun(
        run_id=new_run_id("churn"),
        kind="churn",
        created_at=datetime.now(UTC),
        as_of=as_of,
        scores=pd.DataFrame({"user_id": risks.index.astype(str), "churn_risk": risks.to_numpy()}),
        params=PredictSettings().model_dump(mode="json"),
    )
    save_run(p.store, run)
    return run.run_id


@pytest.fixture(scope="module")
def valued_shop(shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The serve shop with a CLV run and two churn runs (a month apart)."""
    root = tmp_path_factory.mktemp("valued") / "shop"
    shutil.copytree(shop, root)
    cfg = root / "segmint.yaml"
    cfg.write_text(cfg.read_text().rstrip() + "\n\nserve:\n  decide_refresh_seconds: 0.2\n")
    with segmint.open_project(root) as p:
        run = predict_clv(p.store, p.config.predict, holdout=False)
        buyers = run.scores["user_id"].astype(str)
        rng = np.random.default_rng(2)
        earlier = pd.Series(rng.random(len(buyers)), index=buyers)
        _save_churn(p, run.as_of - timedelta(days=30), earlier)
        _save_churn(p, run.as_of, (earlier + 0.1).clip(0, 1))
    return root


class Site:
    def __init__(self, p: Any, app: Any, served: Served) -> None:
        from segmint.serve._auth import create_key

        self.p, self.app = p, app
        with app.state.store_lock:
            key = create_key(p.store, "shop", "decide")
        self.client = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"})

    def decide(self, user: str) -> dict[str, Any]:
        r = self.client.get(f"/v1/decide/{user}", params={"n": 1})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        with self.app.state.store_lock:
            return self.p.store.query(sql, params)


@pytest.fixture()
def site(valued_shop: Path, tmp_path: Path) -> Iterator[Site]:
    from segmint.serve import create_app

    root = tmp_path / "shop"
    shutil.copytree(valued_shop, root)
    with segmint.open_project(root) as p:
        app = create_app(p)
        with Served(app) as served:
            s = Site(p, app, served)
            try:
                yield s
            finally:
                s.client.close()


def _latest(site: Site, kind: str) -> tuple[str, datetime]:
    row = site.query(
        "SELECT run_id, as_of FROM predict_runs WHERE kind = ? "
        "ORDER BY created_at DESC, run_id DESC LIMIT 1",
        [kind],
    ).iloc[0]
    return str(row["run_id"]), pd.Timestamp(row["as_of"]).to_pydatetime()


def test_a_known_person_gets_the_latest_runs_value_and_churn_risk(site: Site) -> None:
    from segmint.predict import latest_predictions_sql

    clv_run, clv_as_of = _latest(site, "clv")
    churn_run, churn_as_of = _latest(site, "churn")
    scores = site.query(latest_predictions_sql()).sort_values("clv", ascending=False)
    assert len(scores) > 100
    for _, row in scores.iloc[[0, len(scores) // 2, len(scores) - 1]].iterrows():
        v = site.decide(str(row["user_id"]))["value"]
        assert (v["run_id"], v["churn_run_id"]) == (clv_run, churn_run)
        assert pd.Timestamp(v["as_of"]) == pd.Timestamp(clv_as_of)
        assert pd.Timestamp(v["churn_as_of"]) == pd.Timestamp(churn_as_of)
        for name in ("clv", "clv_low", "clv_high"):
            assert v[name] == pytest.approx(row[name], rel=1e-6, abs=0.006)
        assert v["clv_low"] <= v["clv"] <= v["clv_high"]
        for name in ("p_alive", "churn_risk", "churn_risk_change"):
            assert v[name] == pytest.approx(row[name], abs=1e-4)
        # the fixture raised every risk by 0.1 since the run a month earlier (clipped at 1)
        assert v["churn_risk_change"] == pytest.approx(0.1, abs=1e-4) or v["churn_risk"] == 1.0


def test_no_prediction_no_person_or_no_consent_means_no_value(site: Site) -> None:
    clv_run, _ = _latest(site, "clv")
    never = site.query(
        "SELECT user_id FROM users WHERE user_id NOT IN "
        "(SELECT user_id FROM predictions WHERE run_id = ?) ORDER BY user_id LIMIT 1",
        [clv_run],
    )["user_id"][0]
    d = site.decide(str(never))
    assert d["known"] is True and d["personalized"] is True and d["value"] is None
    assert site.decide("nobody-at-all")["value"] is None
    buyer = site.query(
        "SELECT user_id FROM predictions WHERE run_id = ? ORDER BY clv DESC LIMIT 1", [clv_run]
    )["user_id"][0]
    assert site.decide(str(buyer))["value"] is not None
    with site.app.state.store_lock:
        site.p.store.execute(
            "INSERT INTO consents (user_id, channel, purpose, ts, granted, source) "
            f"VALUES ('{buyer}', 'any', 'personalization', now(), FALSE, 'test')"
        )
    deadline = time.monotonic() + 15
    while (d := site.decide(str(buyer)))["personalized"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (d["personalized"], d["reason"], d["value"]) == (
        False,
        "no personalization consent",
        None,
    )


def test_a_new_clv_run_is_served_at_the_next_poll(site: Site) -> None:
    clv_run, _ = _latest(site, "clv")
    buyer = str(
        site.query(
            "SELECT user_id FROM predictions WHERE run_id = ? ORDER BY clv DESC LIMIT 1",
            [clv_run],
        )["user_id"][0]
    )
    assert site.decide(buyer)["value"]["run_id"] == clv_run
    with site.app.state.store_lock:
        new = predict_clv(
            site.p.store, PredictSettings(horizon_days=30), holdout=False
        )  # a month's value: smaller
    deadline = time.monotonic() + 15
    while (v := site.decide(buyer)["value"])["run_id"] != new.run_id:
        assert time.monotonic() < deadline, "the new run was not served"
        time.sleep(0.1)
    mine = new.scores.set_index("user_id").loc[buyer]
    assert v["clv"] == pytest.approx(mine["clv"], rel=1e-6, abs=0.006)
    assert v["churn_risk"] is not None  # the churn run is still the latest of its kind
