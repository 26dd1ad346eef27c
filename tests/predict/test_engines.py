"""The customer summary and the CLV fit give the same answers on DuckDB and PostgreSQL
(the summary is one SQL query, transpiled for PostgreSQL by the store)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.helpers import make_project

import segmint
from segmint.config import PredictSettings
from segmint.predict import customer_summary, predict_clv

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)


def _shop(root: Path, store: str) -> Path:
    rng = np.random.default_rng(7)
    users = [f"u{i:03d}" for i in range(300)]
    rows = []
    for u in users:
        start = pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(rng.integers(0, 300)))
        n = 1 + rng.poisson(3)
        for j in range(n):
            # several orders on one day happen: they are one purchase day
            ts = start + pd.Timedelta(days=int(rng.integers(0, 400)) if j else 0, hours=j)
            rows.append((f"{u}-{j}", u, ts.strftime("%Y-%m-%d %H:%M:%S"),
                         round(float(rng.gamma(4, 10)), 2), "paid"))  # fmt: skip
    orders = "oid,uid,t,amt,st\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n"
    people = "id,signup,mail,yrs\n" + "\n".join(f"{u},2023-01-01 00:00:00,,30" for u in users)
    root.mkdir(parents=True, exist_ok=True)
    make_project(root, store=store, files={"users.csv": people + "\n", "orders.csv": orders})
    return root


def test_summary_and_clv_agree_on_duckdb_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    out = {}
    for name, store in (("duckdb", "store.duckdb"), ("postgres", pg_url)):
        with segmint.open_project(_shop(tmp_path / name, store)) as p:
            p.ingest()
            summary = customer_summary(p.store, AS_OF)
            run = predict_clv(p.store, PredictSettings(), as_of=AS_OF, save=True)
            out[name] = (summary, run)
    (s_duck, r_duck), (s_pg, r_pg) = out["duckdb"], out["postgres"]
    assert len(s_duck) == 300 and (s_duck["x"] > 0).sum() > 100
    cols = ["user_id", "x", "t_x", "T", "m"]
    pd.testing.assert_frame_equal(
        s_duck[cols].reset_index(drop=True), s_pg[cols].reset_index(drop=True), rtol=1e-9
    )
    for k, v in r_duck.metrics["purchase_fit"]["params"].items():
        assert r_pg.metrics["purchase_fit"]["params"][k] == pytest.approx(v, rel=1e-6)
    a = r_duck.scores.set_index("user_id")["clv"]
    b = r_pg.scores.set_index("user_id")["clv"]
    np.testing.assert_allclose(a.sort_index(), b.sort_index(), rtol=1e-6)
