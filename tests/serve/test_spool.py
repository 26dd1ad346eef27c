"""The spool and its loader: group-committed lines survive ``kill -9`` once acknowledged;
the loader passes each committed line to the load function once, resumes from its stored
offset, retries a failed load, quarantines a malformed line, and closes a dead writer's file.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.serve.conftest import free_port, wait_ready

import segmint
from segmint.serve._auth import create_key
from segmint.serve._loader import TrackingLoader
from segmint.serve._spool import SpoolWriter, read_lines
from segmint.store import lit, open_vault


def _project(root: Path, store: str = "t.duckdb") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "segmint.yaml").write_text(f"project: spool\nstore: {json.dumps(store)}\n")
    return root


def _line(i: int, **extra: Any) -> bytes:
    msg = {"type": "track", "event": "E", "userId": f"u{i}", "messageId": f"m{i}", **extra}
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


class RecordingLoad:
    """A real load function: inserts each message id into tracked_messages in one
    transaction, calls ``inside`` just before commit; ``fail_next`` makes it raise after
    its inserts (so the rollback is what keeps them out)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.fail_next = 0

    def __call__(
        self,
        store: Any,
        config: Any,
        messages: list[dict[str, Any]],
        *,
        inside: Any = None,
        now: Any = None,
    ) -> int:
        self.calls.append(messages)
        with store.transaction():
            for i, m in enumerate(messages):
                mid = m.get("messageId") or f"raw-{len(self.calls)}-{i}"
                store.execute(
                    "INSERT INTO tracked_messages (source, message_id, received_at, load_id) "
                    f"VALUES ('t', {lit(mid)}, now(), NULL)"
                )
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("the store said no")
            if inside is not None:
                inside()
        return len(messages)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A project on DuckDB, and on PostgreSQL (the offset upsert is transpiled there)."""
    store = "t.duckdb" if request.param == "duckdb" else request.getfixturevalue("pg_url")
    with segmint.open_project(_project(tmp_path / "p", store)) as p:
        p.store  # opened here, before any loader thread  # noqa: B018
        yield p


def _loader(project: Any, load: RecordingLoad, **kw: Any) -> TrackingLoader:
    folder = project.root / ".segmint" / "spool"
    return TrackingLoader(project, threading.RLock(), SpoolWriter(folder), load=load, **kw)


def _dead_file(project: Any, name: str, lines: list[bytes]) -> Path:
    folder = project.root / ".segmint" / "spool"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with open(path, "ab") as f:
        f.write(b"".join(lines))
    return path


def _ids(project: Any, lock: Any = None) -> list[str]:
    with lock or threading.RLock():
        frame = project.store.query("SELECT message_id FROM tracked_messages ORDER BY message_id")
    return list(frame["message_id"])


def _row(project: Any, name: str) -> tuple[int, int, bool] | None:
    frame = project.store.query(
        "SELECT loaded_bytes, loaded_messages, closed FROM tracking_spool "
        f"WHERE spool_file = {lit(name)}"
    )
    if frame.empty:
        return None
    r = frame.iloc[0]
    return int(r["loaded_bytes"]), int(r["loaded_messages"]), bool(r["closed"])


def test_the_writer_acknowledges_only_fsynced_complete_lines(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    writer.start()

    async def send() -> None:
        await asyncio.gather(*(writer.append([_line(i), _line(i + 1000)]) for i in range(200)))

    asyncio.run(send())
    assert writer.n_lines == 400 and writer.n_syncs < 200  # group commit: fewer syncs
    writer.stop()
    lines = writer.path.read_bytes().splitlines(keepends=True)
    assert len(lines) == 400 and all(line.endswith(b"\n") for line in lines)
    with pytest.raises(RuntimeError, match="stopping"):
        asyncio.run(writer.append([_line(1)]))


def test_a_reader_ignores_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "spool-h-1-20260101T000000.jsonl"
    path.write_bytes(_line(1) + _line(2) + b'{"type":"tr')
    read = read_lines(path, 0, max_messages=100)
    assert [m["messageId"] for m in read.messages] == ["m1", "m2"]
    assert read.end == len(_line(1) + _line(2))


def test_lines_are_loaded_once_with_the_offset_in_the_same_transaction(project: Any) -> None:
    name = "spool-otherhost-1-20260101T000000.jsonl"
    path = _dead_file(project, name, [_line(i) for i in range(7)] + [b"not json\n"])
    load = RecordingLoad()
    loader = _loader(project, load, max_messages=3)
    assert loader.run_once() == 8
    assert [len(c) for c in load.calls] == [3, 3, 2]  # micro-batches of at most 3
    assert [m.get("messageId") for c in load.calls for m in c][:7] == [f"m{i}" for i in range(7)]
    bad = load.calls[-1][-1]
    assert bad["_raw"] == "not json" and "not JSON" in bad["_error"]  # quarantined, not lost
    # a dead writer's file, fully loaded: closed, deleted, and its row gone
    assert not path.exists() and _row(project, name) is None
    assert len(_ids(project)) == 8


def test_a_restart_resumes_from_the_stored_offset(project: Any) -> None:
    name = "spool-otherhost-2-20260101T000000.jsonl"
    folder = project.root / ".segmint" / "spool"
    folder.mkdir(parents=True)
    path = folder / name
    # a live writer elsewhere holds the lock: only its own loader may load the file ...
    holder = open(path, "ab")  # noqa: SIM115
    fcntl.flock(holder.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.write(b"".join(_line(i) for i in range(4)))
    holder.flush()
    first = RecordingLoad()
    assert _loader(project, first).run_once() == 0 and first.calls == []
    # ... which we play here: load the first 4 lines through the file's own name
    loader = _loader(project, first)
    loader.writer.path = path  # this loader is the file's writer's
    loader.writer._thread = threading.Thread()  # "running": the file is its own, live
    assert loader.run_once() == 4
    assert _row(project, name) == (path.stat().st_size, 4, False)
    holder.write(_line(4) + _line(5) + b'{"partial')
    holder.close()  # the writer dies, leaving a torn line
    again = RecordingLoad()
    assert _loader(project, again).run_once() == 2  # a new process, after a restart
    assert [m["messageId"] for m in again.calls[0]] == ["m4", "m5"]
    assert _ids(project) == [f"m{i}" for i in range(6)]
    assert not path.exists()  # loaded to its last complete line: closed


def test_a_failing_load_leaves_the_offset_and_is_retried(project: Any) -> None:
    name = "spool-otherhost-3-20260101T000000.jsonl"
    path = _dead_file(project, name, [_line(i) for i in range(3)])
    load = RecordingLoad()
    load.fail_next = 1
    loader = _loader(project, load)
    assert loader.run_once() == 0 and loader.n_failures == 1
    assert _row(project, name) is None and _ids(project) == []  # rolled back, offset unmoved
    assert path.exists()
    assert loader.run_once() == 3
    assert [m["messageId"] for m in load.calls[1]] == ["m0", "m1", "m2"]
    assert _ids(project) == ["m0", "m1", "m2"]


def test_the_loader_thread_loads_while_serving_and_drains_on_stop(project: Any) -> None:
    load = RecordingLoad()
    loader = _loader(project, load, batch_seconds=0.05)
    loader.start()
    try:
        asyncio.run(loader.writer.append([_line(1), _line(2)]))
        deadline = time.monotonic() + 10
        while len(_ids(project, loader.lock)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _ids(project, loader.lock) == ["m1", "m2"]
        assert loader.writer.path.exists()  # a live writer's file stays
        asyncio.run(loader.writer.append([_line(3)]))
    finally:
        loader.stop()
    assert _ids(project) == ["m1", "m2", "m3"]  # the last load ran at stop
    assert not loader.writer.path.exists()
    assert sum(len(c) for c in load.calls) == 3  # each line passed once


@pytest.mark.slow
def test_every_acknowledged_message_survives_kill_9(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    with segmint.open_project(root) as p:
        key = create_key(p.store, "web", "write")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    lock = threading.Lock()
    try:
        wait_ready(url, proc, path="/healthz")

        def client() -> None:
            with httpx.Client(base_url=url, auth=(key, ""), timeout=10) as c:
                for _ in range(15):
                    ids = [str(uuid.uuid4()) for _ in range(50)]
                    batch = [
                        {"type": "track", "userId": "u", "event": "E", "messageId": m} for m in ids
                    ]
                    if c.post("/v1/batch", json={"batch": batch}).status_code == 200:
                        with lock:
                            acked.extend(ids)

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # right after the last 2xx: no shutdown at all
        proc.wait(timeout=10)
    assert len(acked) == 4 * 15 * 50
    on_disk: set[str] = set()
    with segmint.open_project(root) as p:  # the lines are sealed at rest (issue 21)
        vault = open_vault(p.store, p.config)
    for path in (root / ".segmint" / "spool").glob("spool-*.jsonl"):
        for line in path.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                assert line.startswith(b"enc1:")
                text = vault.open(line.decode().rstrip("\n"), "spool.line")
                on_disk.add(json.loads(text or "")["messageId"])
    assert set(acked) <= on_disk


def test_a_full_file_is_rotated_and_the_old_one_loaded_and_deleted(project: Any) -> None:
    load = RecordingLoad()
    loader = _loader(project, load, batch_seconds=3600)  # ticks by hand below
    loader.writer.rotate_bytes = 300  # about three lines
    loader.start()
    try:
        first = loader.writer.path
        asyncio.run(loader.writer.append([_line(i) for i in range(4)]))
        time.sleep(1.1)  # a file name has a one-second clock
        asyncio.run(loader.writer.append([_line(4)]))  # rotates after this commit
        assert loader.writer.path != first
        asyncio.run(loader.writer.append([_line(5)]))
        with loader.lock:
            loader.run_once()
        assert not first.exists()  # the full file: loaded, closed, deleted
        assert loader.writer.path.exists()  # the live one stays
        assert _ids(project, loader.lock) == [f"m{i}" for i in range(6)]
    finally:
        loader.stop()
    assert sum(len(c) for c in load.calls) == 6
