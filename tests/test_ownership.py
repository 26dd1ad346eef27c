"""Who may open a DuckDB project while ``segmint serve`` runs (issue 19, point 4).

- every command is classified read or write (cli._access.ACCESS), checked by walking the app;
- with a live service claim, every write command stops at once with one clear line, and
  the read commands work, the file opened read-only (a write by a "read" command would fail
  on the read-only connection: this is how a misclassified command is caught);
- a file held by another process never shows a DuckDB lock traceback;
- a real ``segmint serve`` claims the file, lets readers in, and removes its claim on stop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.serve.conftest import wait_ready
from typer.main import get_command
from typer.testing import CliRunner

import segmint
from segmint.cli import app
from segmint.cli._access import ACCESS, access_of
from segmint.store import CLAIM_FILE, read_claim

runner = CliRunner()


def _leaves() -> set[str]:
    out: set[str] = set()

    def walk(cmd: object, path: str) -> None:
        sub = getattr(cmd, "commands", None)
        if sub:
            if getattr(cmd, "invoke_without_command", False) and path:
                out.add(path)
            for name, child in sub.items():
                walk(child, f"{path} {name}".strip())
        else:
            out.add(path)

    walk(get_command(app), "")
    return out


def test_every_command_is_classified_read_or_write() -> None:
    commands = _leaves()
    assert not commands - set(ACCESS), f"classify in cli/_access.py: {commands - set(ACCESS)}"
    assert not set(ACCESS) - commands, f"no such commands: {set(ACCESS) - commands}"
    for path in commands:
        assert access_of(path) in ("read", "write")
    assert access_of("recommend", {"user": "u1"}) == "read"
    assert access_of("recommend", {"user": None}) == "write"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-user demo shop: loaded, segmented, with recommendations and a key."""
    from segmint.demo import generate_demo
    from segmint.serve import create_key

    root = tmp_path_factory.mktemp("owned") / "shop"
    generate_demo(root, n_users=300, seed=3)
    with segmint.open_project(root) as p:
        p.ingest()
        p.segment(["rfm"])
        p.segment(["rfm"])
        p.recommend_all("popularity", n=5)
        create_key(p.store, "web", "write")
    return root


@pytest.fixture()
def claimed(shop: Path) -> Iterator[int]:
    """A live claim on the shop by another process (a sleeping one stands in for the
    service: nothing holds the file, so readers open it read-only at once)."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    claim = {
        "pid": sleeper.pid,
        "host": socket.gethostname(),
        "url": "http://127.0.0.1:8123",
        "started": "2026-12-04T10:00:00+00:00",
        "store": str(shop / "demo.duckdb"),
    }
    (shop / CLAIM_FILE).parent.mkdir(exist_ok=True)
    (shop / CLAIM_FILE).write_text(json.dumps(claim))
    try:
        yield sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()
        (shop / CLAIM_FILE).unlink(missing_ok=True)


# `init` and `demo` make a new project (no store to protect yet): not run here
NEW_PROJECT = {"init", "demo"}
WRITE_ARGS = {
    "campaign import": ["x", "x.csv"],
    "campaign plan": ["x"],
    "campaign preview": ["x"],
    "campaign send": ["x"],
    "campaign unsubscribe": ["x"],
    "evaluate": ["x"],
    "export profiles": ["-o", "x.csv"],
    "export segment": ["rfm", "x", "-o", "x.csv"],
    "export audience": ["x", "-o", "x.csv"],
    "predict export": ["clv", "-o", "x.csv"],
    "keys create": ["x"],
    "users add": ["x", "--password-stdin"],
    "users passwd": ["x", "--password-stdin"],
    "users remove": ["x"],
    "privacy export": ["x"],
    "privacy do-not-sell": ["x"],
    "privacy forget": ["x", "--why", "test", "--yes"],
    "jobs run": ["x"],
    "keys revoke": ["x"],
    "refresh": ["rfm"],
    "segment": ["rfm"],
}


@pytest.mark.parametrize(
    "path", sorted(p for p, k in ACCESS.items() if k == "write" and p not in NEW_PROJECT)
)
def test_write_commands_stop_at_once_while_a_service_owns_the_file(
    shop: Path, claimed: int, path: str
) -> None:
    args = WRITE_ARGS.get(path, [])
    started = time.monotonic()
    result = runner.invoke(app, [*path.split(), *args, "-p", str(shop)])
    assert time.monotonic() - started < 3
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert line.count("\n") == 0 and "Traceback" not in line
    assert f"segmint serve (pid {claimed}, http://127.0.0.1:8123) owns" in line
    assert "stop it first, or send events through its tracking API" in line


def test_recommend_writes_but_one_users_list_only_reads(shop: Path, claimed: int) -> None:
    assert runner.invoke(app, ["recommend", "-p", str(shop)]).exit_code == 1
    user = _a_user(shop)
    result = runner.invoke(app, ["recommend", "--user", user, "-p", str(shop), "--json"])
    assert result.exit_code == 0, result.output


def _a_user(shop: Path) -> str:
    with segmint.open_project(shop, read_only=True) as p:
        return str(p.store.scalar("SELECT min(user_id) FROM users"))


def _a_segment(shop: Path) -> str:
    with segmint.open_project(shop, read_only=True) as p:
        return str(p.store.scalar("SELECT min(segment) FROM segment_assignments"))


def _read_args(path: str, shop: Path, out: Path) -> list[str]:
    return {
        "profile": [_a_user(shop)],
        "persona": ["rfm", _a_segment(shop)],
        "quarantine": ["users"],
        "report": ["-o", str(out / "report.html")],
        "before-after": ["--date", "2024-06-01"],
        "segments show": ["rfm"],
        "segments diff": ["rfm~1", "rfm"],
        "playbook init": ["--stdout"],
        "export profiles": ["-o", str(out / "profiles.csv")],
        "export personas": ["rfm", "-o", str(out / "personas.csv")],
        "export segment": ["rfm", _a_segment(shop), "-o", str(out / "segment.csv")],
        "export audience": ["x", "-o", str(out / "audience.csv")],
    }.get(path, [])


@pytest.mark.parametrize("path", sorted(p for p, k in ACCESS.items() if k == "read"))
def test_read_commands_work_read_only_while_a_service_owns_the_file(
    shop: Path, claimed: int, path: str, tmp_path: Path
) -> None:
    args = _read_args(path, shop, tmp_path)
    result = runner.invoke(app, [*path.split(), *args, "-p", str(shop)])
    assert "read-only" not in result.output and "internal error" not in result.output, result.output
    # 0, or a user-level refusal of the made-up arguments (exit 2); never a failed write
    assert result.exit_code in (0, 2), result.output


# -- a file held by another process ---------------------------------------------------------

HOLDER = """
import duckdb, sys, time
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(60)
"""


def _segmint(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "segmint", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SEGMINT_DEBUG": ""},
    )


def test_a_file_held_by_another_process_is_one_clear_line(shop: Path, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(shop / "demo.duckdb")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for args in (["status"], ["segment", "rfm"]):
            done = _segmint(*args, "-p", str(shop), cwd=tmp_path)
            assert done.returncode == 1, done.stderr
            assert "Traceback" not in done.stderr and "Could not set lock" not in done.stderr
            assert done.stderr.strip().count("\n") == 0, done.stderr
            assert f"in use by another process (PID {holder.pid}" in done.stderr
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()  # type: ignore[union-attr]


# -- a real segmint serve ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_segmint_serve_owns_the_file_and_lets_readers_in(shop: Path, tmp_path: Path) -> None:
    root = tmp_path / "shop"
    shutil.copytree(shop, root)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "segmint", "serve", "-p", str(root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        claim = read_claim(root)
        assert claim is not None and claim.pid == proc.pid and claim.url == url
        refused = _segmint("segment", "rfm", "-p", str(root), cwd=tmp_path)
        assert refused.returncode == 1
        assert f"segmint serve (pid {proc.pid}, {url}) owns" in refused.stderr
        # a reader works while the service keeps answering requests that use the store
        with httpx.Client(base_url=url) as c:
            reader = subprocess.Popen(
                [sys.executable, "-m", "segmint", "segments", "list", "-p", str(root), "--json"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            codes = []
            while reader.poll() is None:
                codes.append(c.get("/readyz", timeout=30).status_code)
            out, err = reader.communicate()
            assert reader.returncode == 0, err
            assert json.loads(out) and set(codes) <= {200}
            assert c.get("/readyz").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        proc.stdout.close()  # type: ignore[union-attr]
    assert not (root / CLAIM_FILE).exists()  # removed at a clean stop
    assert _segmint("segment", "rfm", "-p", str(root), "--json", cwd=tmp_path).returncode == 0


def test_a_stale_claim_is_ignored(shop: Path, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (shop / CLAIM_FILE).parent.mkdir(exist_ok=True)
    (shop / CLAIM_FILE).write_text(
        json.dumps({"pid": dead.pid, "host": socket.gethostname(), "url": "http://x",
                    "started": "2026-12-04T10:00:00+00:00", "store": "demo.duckdb"})
    )  # fmt: skip
    try:
        assert read_claim(shop) is None
        result = runner.invoke(app, ["keys", "create", "after-crash", "-p", str(shop), "--json"])
        assert result.exit_code == 0, result.output
    finally:
        (shop / CLAIM_FILE).unlink(missing_ok=True)


def test_the_python_api_reads_beside_the_service(shop: Path, claimed: int) -> None:
    from segmint.errors import StoreBusyError

    with segmint.open_project(shop, read_only=True) as p:
        assert p.store.read_only and p.store.count("users") == 300
    with pytest.raises(StoreBusyError, match="owns"), segmint.open_project(shop) as p:
        _ = p.store
