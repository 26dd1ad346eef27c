"""The demo's count of messages that reached control-group users (it must stay 0)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.privacy.sealing import seal_users

from segmint.config import Config
from segmint.demo._campaigns import _control_received
from segmint.store import Store, open_store, open_vault


@dataclass
class _Plan:
    control: str


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        str(tmp_path / "s.duckdb")
        if request.param == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    s = open_store(url)
    s.insert(
        "users",
        pd.DataFrame({"user_id": ["u1", "u2", "u3"], "email": ["A@x.org", "b@x.org", "c@x.org"]}),
    )
    t = datetime(2025, 3, 1, tzinfo=UTC)
    s.insert(
        "campaign_assignments",
        pd.DataFrame(
            {
                "campaign": ["win'back", "win'back", "birthday", "birthday"],
                "user_id": ["u1", "u2", "u1", "u3"],
                "arm": ["holdout", "treatment", "treatment", "control"],
                "bucket": [0.1, 0.5, 0.6, 0.2],
                "assigned_at": [t] * 4,
                "run_id": ["r1", "r1", "r2", "r2"],
            }
        ),
    )
    yield s
    s.close()


def test_counts_messages_to_each_campaigns_own_control_arm(store: Store, tmp_path: Path) -> None:
    received = Counter(
        {
            ("win'back", "a@x.org"): 2,  # u1 is in win'back's control arm ("holdout")
            ("win'back", "b@x.org"): 5,  # treatment
            ("birthday", "a@x.org"): 7,  # u1 is treated in birthday
            ("birthday", "c@x.org"): 1,  # control
        }
    )
    plans: dict[str, Any] = {"win'back": _Plan("holdout"), "birthday": _Plan("control")}
    vault = open_vault(store, Config().model_copy(update={"root": tmp_path}))
    seal_users(store, vault)  # compared by blind index: nothing is decrypted
    assert _control_received(store, vault, plans, received) == 3
    assert _control_received(store, vault, {"birthday": _Plan("control")}, received) == 1
    assert _control_received(store, vault, {}, received) == 0
