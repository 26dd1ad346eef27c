"""A six-user shop whose export answers can be computed by hand: Chinese and accented
names, one name that starts like a formula, and every consent case for 'marketing'."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

import segmint

NAMES = {
    "u1": "张伟",
    "u2": "李娜",
    "u3": "王芳",
    "u4": "Zoë Ærø",
    "u5": "Ольга",
    "u6": '=HYPERLINK("http://x","y")',
}
CITIES = {"u1": "北京", "u2": "上海", "u3": "深圳", "u4": "Malmö", "u5": "Москва", "u6": "Berlin"}
# u1 granted by e-mail; u2 granted then revoked; u3 nothing; u4 granted by sms only;
# u5 granted for 'newsletter' only; u6 denied by e-mail, granted by sms (one channel is enough)
CONSENTS = [
    ("u1", "email", "marketing", "2025-01-01 00:00:00", True),
    ("u2", "email", "marketing", "2025-01-01 00:00:00", True),
    ("u2", "email", "marketing", "2025-06-01 00:00:00", False),
    ("u4", "sms", "marketing", "2025-01-01 00:00:00", True),
    ("u5", "email", "newsletter", "2025-01-01 00:00:00", True),
    ("u6", "email", "marketing", "2025-01-01 00:00:00", False),
    ("u6", "sms", "marketing", "2025-02-01 00:00:00", True),
]
CONSENTED = ["u1", "u4", "u6"]  # for marketing
# big spenders (monetary >= 100): u1 (120.555), u2 (300), u6 (100.004); the rest below
ORDERS = [
    ("o1", "u1", "2025-09-01 10:00:00", 100.5),
    ("o2", "u1", "2025-10-01 10:00:00", 20.055),
    ("o3", "u2", "2025-10-02 10:00:00", 300.0),
    ("o4", "u3", "2025-10-03 10:00:00", 9.99),
    ("o5", "u4", "2025-10-04 10:00:00", 1.0 / 3.0),
    ("o6", "u5", "2025-10-05 10:00:00", 50.0),
    ("o7", "u6", "2025-10-06 10:00:00", 100.004),
]
BIG = ["u1", "u2", "u6"]


def write_shop(root: Path, store: str = "store.duckdb") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    users = pd.DataFrame(
        {
            "id": list(NAMES),
            "signup": "2025-01-01 00:00:00",
            "mail": [f"{u}@example.com" for u in NAMES],
            "tel": [f"+4930000{i}" for i in range(1, 7)],
            "city": [CITIES[u] for u in NAMES],
            "extra": [json.dumps({"name": n}, ensure_ascii=False) for n in NAMES.values()],
        }
    )
    users.to_csv(root / "users.csv", index=False, encoding="utf-8")
    pd.DataFrame(ORDERS, columns=["oid", "uid", "t", "amt"]).to_csv(
        root / "orders.csv", index=False
    )
    pd.DataFrame(CONSENTS, columns=["uid", "channel", "purpose", "ts", "granted"]).to_csv(
        root / "consents.csv", index=False
    )
    config = {
        "store": store,
        "timezone": "Europe/Berlin",
        "currency": "EUR",
        "sources": {
            "people": {
                "type": "csv",
                "path": "users.csv",
                "table": "users",
                "columns": {
                    "user_id": "id",
                    "created_at": "signup",
                    "email": "mail",
                    "phone": "tel",
                    "city": "city",
                    "traits": "extra",
                },
            },
            "sales": {
                "type": "csv",
                "path": "orders.csv",
                "table": "orders",
                "columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt"},
            },
            "consent": {
                "type": "csv",
                "path": "consents.csv",
                "table": "consents",
                "columns": {
                    "user_id": "uid",
                    "channel": "channel",
                    "purpose": "purpose",
                    "ts": "ts",
                    "granted": "granted",
                },
            },
        },
        "features": {"as_of": "2025-11-01"},
        "segmentations": {
            "spend": {
                "type": "rules",
                "rules": [{"segment": "大客户", "when": "monetary >= 100"}],
                "default": "others",
            }
        },
    }
    (root / "segmint.yaml").write_text(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    with segmint.open_project(root) as p:
        loads = p.ingest()
        assert all(ld.rows_rejected == 0 for ld in loads), [ld.to_dict() for ld in loads]
        p.segment("spend")
    return root
