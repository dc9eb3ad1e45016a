"""A real PassKit sandbox server (uvicorn in a thread) shared by these tests, reset per test."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from worker.providers.passkit.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passkit.settings import PassKitSandboxSettings


@pytest.fixture(scope="session")
def _passkit_sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(PassKitSandboxSettings(host="127.0.0.1", port=0)) as handle:
        yield handle


@pytest.fixture
def passkit_sandbox(_passkit_sandbox: SandboxHandle) -> SandboxHandle:
    """The session's PassKit sandbox, emptied and at its start-up config."""
    _passkit_sandbox.reset()
    return _passkit_sandbox


class Receiver:
    """A local HTTP endpoint that records what the sandbox calls back with."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.calls.append((self.command, self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = _record

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()
