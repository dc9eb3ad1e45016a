"""A CRM's endpoint on a real local port: verifies each signature and answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from worker.inbound.signatures import SignatureError, WebhookVerifier


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def type(self) -> str:
        return str(self.json["type"])


class Receiver:
    """Records every POST; answers the queued statuses in order, then `default_status`."""

    def __init__(self, secret: str, *, port: int = 0) -> None:
        self.verifier = WebhookVerifier([secret], tolerance_seconds=300)
        self.received: list[Received] = []
        self.answers: deque[tuple[int, dict[str, str]]] = deque()
        self.default_status = 204
        self.delay_seconds = 0.0
        # Decides the status per request when set (before the queued answers).
        self.respond: Callable[[Received], int | None] | None = None
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hooks/passsync"

    def answer(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        for _ in range(times):
            self.answers.append((status, headers or {}))

    def start(self) -> Receiver:
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self._port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: the destination is down (connections are refused)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.type == kind]

    def _record(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        try:
            self.verifier.verify(headers, body)
            verified = True
        except SignatureError:
            verified = False
        got = Received(headers, body, verified)
        with self._lock:
            self.received.append(got)
            decided = self.respond(got) if self.respond is not None else None
            if decided is not None:
                return decided, {}
            return self.answers.popleft() if self.answers else (self.default_status, {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, extra = receiver._record(headers, body)
                if receiver.delay_seconds:
                    time.sleep(receiver.delay_seconds)
                self.send_response(status)
                for key, value in extra.items():
                    self.send_header(key, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler
