"""L6: an identifier that is not one URL path segment never reaches a provider's API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from worker.providers.errors import RejectedError
from worker.providers.passcreator.client import PasscreatorClient
from worker.providers.passcreator.settings import PasscreatorSettings
from worker.providers.passkit.client import PassKitClient
from worker.providers.passkit.settings import PassKitSettings
from worker.providers.paths import path_segment

BAD_IDS = [".", "..", " ", "", "a\x00b", "line\nbreak", "x" * 1025]


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(404, json={"message": "not found"})


def passcreator(recorder: Recorder) -> PasscreatorClient:
    settings = PasscreatorSettings(api_key=SecretStr("k"), max_attempts=1)
    return PasscreatorClient(settings, transport=httpx.MockTransport(recorder))


def passkit(recorder: Recorder) -> PassKitClient:
    settings = PassKitSettings(api_key=SecretStr("k"), secret=SecretStr("s" * 32), max_attempts=1)
    return PassKitClient(settings, transport=httpx.MockTransport(recorder))


CALLS: list[tuple[str, Callable[[Recorder], Any], Callable[[Any, str], object]]] = [
    ("passcreator get", passcreator, lambda c, i: c.get_pass(i)),
    ("passcreator delete", passcreator, lambda c, i: c.delete_pass(i)),
    ("passcreator void", passcreator, lambda c, i: c.set_voided(i, True)),
    ("passkit member", passkit, lambda c, i: c.get_member(i)),
    ("passkit by external id", passkit, lambda c, i: c.get_member_by_external_id("p", i)),
]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(("name", "make", "call"), CALLS, ids=[c[0] for c in CALLS])
def test_a_dot_segment_or_broken_id_is_refused_before_any_request(
    name: str,
    make: Callable[[Recorder], Any],
    call: Callable[[Any, str], object],
    bad: str,
) -> None:
    recorder = Recorder()
    client = make(recorder)
    with pytest.raises(RejectedError):
        call(client, bad)
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("a/b c?d#e", "a%2Fb%20c%3Fd%23e"), ("...", "..."), ("%2e%2e", "%252e%252e"), ("ü", "%C3%BC")],
)
def test_an_identifier_becomes_exactly_one_quoted_segment(value: str, quoted: str) -> None:
    assert path_segment(value, action="test") == quoted


def test_a_quoted_id_stays_in_its_segment_on_the_wire() -> None:
    recorder = Recorder()
    client = passcreator(recorder)
    with pytest.raises(RejectedError):
        client.get_pass("../api")
    assert [r.url.raw_path for r in recorder.requests] == [b"/api/pass/..%2Fapi"]
