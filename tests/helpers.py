"""Small builders for test projects (a folder with segmint.yaml and data files)."""

from __future__ import annotations

import os
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

USERS_CSV = dedent(
    """\
    id,signup,mail,yrs
    u1,2024-01-01 10:00:00,a@example.com,34
    u2,2024-02-01 08:30:00,b@example.com,
    u3,2024-03-01 12:00:00,c@example.com,51
    """
)

ORDERS_CSV = dedent(
    """\
    oid,uid,t,amt,st
    o1,u1,2024-05-01 10:00:00,10.50,paid
    o2,u2,2024-05-02 11:00:00,99.00,paid
    o3,u1,2024-05-03 12:00:00,5.25,refunded
    """
)


def default_sources() -> dict[str, dict]:
    """A fresh copy of the two sources make_project writes (people -> users, sales ->
    orders), without the status mapping."""
    return {
        "people": {
            "type": "csv",
            "path": "users.csv",
            "table": "users",
            "columns": {"user_id": "id", "created_at": "signup", "email": "mail", "age": "yrs"},
        },
        "sales": {
            "type": "csv",
            "path": "orders.csv",
            "table": "orders",
            "columns": {"order_id": "oid", "user_id": "uid", "ts": "t", "amount": "amt"},
        },
    }


def make_project(
    root: Path,
    *,
    store: str = "store.duckdb",
    files: dict[str, str] | None = None,
    sources: dict[str, dict] | None = None,
    extra: dict | None = None,
) -> Path:
    """Write data files and a segmint.yaml into ``root``; return ``root``."""
    files = {"users.csv": USERS_CSV, "orders.csv": ORDERS_CSV} if files is None else files
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    if sources is None:
        sources = default_sources()
        sources["sales"]["columns"]["status"] = "st"
        sources["sales"]["values"] = {"status": {"paid": "completed"}}
    config = {"store": store, "timezone": "UTC", "currency": "EUR", "sources": sources}
    config.update(extra or {})
    (root / "segmint.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return root


def clear_users(p, frame):  # type: ignore[no-untyped-def]
    """``frame`` (rows of ``users`` read from ``p``'s store) with the sealed values opened:
    what a reader with the key sees (issue 21)."""
    from segmint.store import open_vault

    vault = open_vault(p.store, p.config)
    frame = frame.copy()
    for col in ("email", "phone", "birthday"):
        if col in frame.columns:
            frame[col] = [vault.open(v, f"users.{col}") if isinstance(v, str) else v
                          for v in frame[col]]  # fmt: skip
    if "traits" in frame.columns:
        frame["traits"] = [vault.open_json_text(v, "users.traits") if isinstance(v, str) else v
                           for v in frame["traits"]]  # fmt: skip
    return frame


def clear_spool_line(p, line: str) -> str:  # type: ignore[no-untyped-def]
    """A spool line (sealed at rest) opened."""
    from segmint.store import open_vault

    text = line.rstrip("\n")
    if text.startswith("enc1:"):
        text = str(open_vault(p.store, p.config).open(text, "spool.line"))
    return text + ("\n" if line.endswith("\n") else "")


def require_shared(path: Path) -> Path:
    """``path`` (in the shared data folder) if it exists; else the test skips on a
    contributor's machine and fails where SEGMINT_REQUIRE_SHARED_DATA=1 (CI)."""
    if not path.exists():
        if os.environ.get("SEGMINT_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"the shared data {path} is absent (SEGMINT_SHARED_DATA)")
        pytest.skip(f"the shared data {path} is absent on this machine")
    return path


ONLINE_RETAIL_EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "online-retail"


def online_retail_project(root: Path, shared_data: Path):  # type: ignore[no-untyped-def]
    """The examples/online-retail project ingested under ``root`` (a copy of its
    segmint.yaml beside a link to the shared data, so the store lands in ``root``, not in
    the repo): an open segmint Project; the caller closes it."""
    import shutil

    import segmint

    shared = require_shared(shared_data / "online_retail_II_2009_2010.parquet")
    proj = root / "examples" / "online-retail"
    proj.mkdir(parents=True)
    shutil.copy(ONLINE_RETAIL_EXAMPLE / "segmint.yaml", proj / "segmint.yaml")
    (root.parent / "shared").mkdir(exist_ok=True)
    link = root.parent / "shared" / "data"
    if not link.exists():
        link.symlink_to(shared.parent)
    p = segmint.open_project(proj)
    p.ingest()
    return p
