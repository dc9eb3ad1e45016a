"""M1: half-sent requests are closed after the header timeout; past the limit, 503 at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import uvicorn
from fastapi import FastAPI

from worker.api.server import uvicorn_options
from worker.config import ApiSettings, Settings


@contextmanager
def serving(app: FastAPI, api: ApiSettings) -> Iterator[int]:
    """The app under uvicorn with the API's options, on a free port, in a thread."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    options = uvicorn_options(api) | {"host": "127.0.0.1", "port": port, "lifespan": "off"}
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within `seconds`."""
    conn.settimeout(seconds)
    try:
        return conn.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /webhooks/crm HTTP/1.1\r\nHost: x\r\nContent-Le"],
    ids=["nothing", "half the headers"],
)
def test_a_connection_without_complete_headers_is_closed(
    app: FastAPI, settings: Settings, sent: bytes
) -> None:
    api = settings.api.model_copy(update={"header_timeout_seconds": 0.5})
    with serving(app, api) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(sent)
        assert closed_within(conn, 10)


def test_a_second_request_sent_by_halves_is_closed_too(app: FastAPI, settings: Settings) -> None:
    api = settings.api.model_copy(update={"header_timeout_seconds": 0.5})
    with serving(app, api) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(5)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        assert closed_within(conn, 10)


def test_a_slow_but_complete_request_is_answered(app: FastAPI, settings: Settings) -> None:
    api = settings.api.model_copy(update={"header_timeout_seconds": 2.0})
    with serving(app, api) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(0.3)
        conn.sendall(b"Host: x\r\n\r\n")
        conn.settimeout(5)
        assert conn.recv(4096).startswith(b"HTTP/1.1 200")


def test_past_the_concurrency_limit_the_answer_is_503(app: FastAPI, settings: Settings) -> None:
    api = settings.api.model_copy(update={"limit_concurrency": 3, "header_timeout_seconds": 30})
    with serving(app, api) as port, ExitStack() as stack:
        # Given three connections held open (idle: they count against the limit)
        for _ in range(3):
            stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        time.sleep(0.2)
        # When a fourth sends a request
        conn = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.settimeout(5)
        # Then it is answered 503 at once
        assert conn.recv(4096).startswith(b"HTTP/1.1 503")


def test_the_options_come_from_the_settings() -> None:
    api = ApiSettings(limit_concurrency=7, keep_alive_seconds=9, max_header_bytes=4096, backlog=64)
    options = uvicorn_options(api)
    assert options["limit_concurrency"] == 7
    assert options["timeout_keep_alive"] == 9
    assert options["h11_max_incomplete_event_size"] == 4096
    assert options["backlog"] == 64
    assert options["http"] == "worker.api.server:HeaderTimeoutHttpTools"
    assert options["log_config"] is None
