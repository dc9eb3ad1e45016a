"""The call machinery every platform client shares (worker/providers/common/http.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from worker.providers.common.http import (
    Call,
    CallRecord,
    HttpCaller,
    NotSentError,
    RetryPolicy,
    parse_retry_after,
)
from worker.providers.errors import NotFoundError, RateLimitedError, TransientError

POLICY = RetryPolicy(max_attempts=3, backoff_seconds=0.0, backoff_max_seconds=0.0)


def interpret(response: httpx.Response) -> Any:
    if response.status_code == 429:
        raise RateLimitedError("429", retry_after=1)
    if response.status_code == 404:
        raise NotFoundError("404", status=404)
    if response.status_code >= 500:
        raise TransientError("5xx", status=response.status_code)
    return response.json()


def sender(*outcomes: Any) -> Any:
    queue = list(outcomes)

    def send() -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return send


def test_an_idempotent_call_is_retried_and_each_attempt_recorded() -> None:
    records: list[CallRecord] = []
    caller = HttpCaller(POLICY, on_attempt=records.append, sleep=lambda _s: None)
    send = sender(httpx.Response(503), httpx.Response(200, json={"ok": 1}))
    assert caller.call(Call("get", "GET", "/x/{id}", "p1"), send, interpret, dict) == {"ok": 1}
    assert [(r.attempt, r.status, r.outcome, r.path, r.pass_ref) for r in records] == [
        (1, 503, "server_error", "/x/{id}", "p1"),
        (2, 200, "ok", "/x/{id}", "p1"),
    ]


def test_a_non_idempotent_call_is_repeated_only_when_it_was_never_sent() -> None:
    caller = HttpCaller(POLICY, sleep=lambda _s: None)
    call = Call("push", "POST", "/push", idempotent=False)
    not_sent = sender(httpx.ConnectError("refused"), httpx.Response(200, json={}))
    assert caller.call(call, not_sent, interpret, dict) == {}
    answered = sender(httpx.Response(500), httpx.Response(200, json={}))
    with pytest.raises(TransientError):
        caller.call(call, answered, interpret, dict)


def test_a_429_is_raised_at_once_and_a_lost_delete_is_a_success() -> None:
    caller = HttpCaller(POLICY, sleep=lambda _s: None)
    with pytest.raises(RateLimitedError):
        caller.call(Call("get", "GET", "/x"), sender(httpx.Response(429)), interpret, dict)
    delete = Call("delete", "DELETE", "/x", gone_after_retry_is_success=True)
    gone = sender(httpx.Response(502), httpx.Response(404))
    assert caller.call(delete, gone, interpret, lambda body: body) is None


def test_transport_errors_carry_no_request_and_a_broken_audit_hook_changes_nothing() -> None:
    def broken(_record: CallRecord) -> None:
        raise RuntimeError("audit down")

    caller = HttpCaller(RetryPolicy(1, 0.0, 0.0), on_attempt=broken, sleep=lambda _s: None)
    with pytest.raises(NotSentError) as raised:
        caller.call(Call("get", "GET", "/x"), sender(httpx.ConnectError("x")), interpret, dict)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert (
        caller.call(Call("get", "GET", "/x"), sender(httpx.Response(200, json={})), interpret, dict)
        == {}
    )


def test_retry_after_values() -> None:
    assert parse_retry_after("7") == 7
    assert parse_retry_after("-3") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
