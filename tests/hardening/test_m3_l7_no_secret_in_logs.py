"""M3 and L7: no URL query string (a callback token), password or header in any log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from worker.observability.logs import THIRD_PARTY, configure_logging
from worker.observability.redact import redact_text, redact_url
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.models import WebhookSubscribe
from worker.providers.passcreator.sandbox.server import SandboxHandle, running_sandbox
from worker.providers.passcreator.settings import PasscreatorSettings, SandboxSettings

TOKEN = "cb-token-do-not-log-0123456789"
KEY = "sandbox-key-for-hardening"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Logging as the processes configure it, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    # configure_logging sets every chatty library's level: put them all back, or later
    # tests would see (and capture) their DEBUG lines.
    levels = {name: logging.getLogger(name).level for name in THIRD_PARTY}
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_library_logging_a_url_with_its_query_shows_no_query(captured: io.StringIO) -> None:
    # Given logging as configured by the processes, even with libraries at DEBUG
    configure_logging("DEBUG", third_party_level="DEBUG", stream=captured)
    # When httpx calls a URL whose query holds a token, and a line carries a broker password
    transport = httpx.MockTransport(lambda request: httpx.Response(202))
    with httpx.Client(transport=transport) as client:
        client.post(f"http://passsync.test/providers/passcreator/callbacks?token={TOKEN}")
    logging.getLogger("passsync.test").warning("broker at redis://:%s@localhost:6379/0", TOKEN)
    # Then the lines are there, but neither the token nor the password
    text = captured.getvalue()
    assert "HTTP Request: POST http://passsync.test/providers/passcreator/callbacks?" in text
    assert "redis://:[redacted]@localhost" in text
    assert TOKEN not in text


def test_third_party_info_lines_are_quiet_by_default(captured: io.StringIO) -> None:
    configure_logging("INFO", stream=captured)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("http://passsync.test/anything?x=1")
    assert "HTTP Request" not in captured.getvalue()


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("GET /cb?token=abc HTTP/1.1", "GET /cb?[redacted] HTTP/1.1"),
        ("https://h/p?a=1&b=2#frag", "https://h/p?[redacted]#frag"),
        ("amqp://user:pw@broker//", "amqp://user:[redacted]@broker//"),
        ("is it? yes", "is it? yes"),
    ],
)
def test_redact_text(line: str, shown: str) -> None:
    assert redact_text(line) == shown


def test_redact_url() -> None:
    assert redact_url(f"https://u:pw@h.test/cb?token={TOKEN}#x") == (
        "https://u:[redacted]@h.test/cb?[redacted]"
    )


@pytest.fixture
def sandbox() -> Iterator[SandboxHandle]:
    with running_sandbox(SandboxSettings(port=0, api_key=SecretStr(KEY))) as handle:
        yield handle


def test_the_sandbox_neither_shows_nor_logs_a_callback_token(
    sandbox: SandboxHandle, captured: io.StringIO
) -> None:
    # Given a hook whose target URL carries the callback token (as passsync subscribes)
    configure_logging("DEBUG", third_party_level="DEBUG", stream=captured)
    target = f"{sandbox.base_url}/_sandbox/nowhere?token={TOKEN}&event=pass_created"
    settings = PasscreatorSettings(base_url=sandbox.base_url, api_key=SecretStr(KEY))
    with PasscreatorClient(settings) as client:
        client.subscribe_webhook(WebhookSubscribe(event="pass_created", target_url=target))
        # When a pass is created, the sandbox calls the hook back
        client.create_pass(
            template_id=client.list_templates()[0].template_id,
            user_provided_id="passsync-loyalty-cus_1",
            fields={},
        )
    # Then /_sandbox/hooks shows the hook without its token, and no line holds it
    [hook] = sandbox.hooks()
    assert hook["target_url"] == f"{sandbox.base_url}/_sandbox/nowhere?[redacted]"
    text = captured.getvalue()
    assert "/_sandbox/nowhere?[redacted]" in text
    assert TOKEN not in text
