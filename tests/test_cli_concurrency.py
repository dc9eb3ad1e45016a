"""`passsync run --concurrency` and the setting celery.concurrency agree."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

import worker.stack
from worker.cli import app


class _Started(Exception):
    pass


class FakeStack:
    seen: list[int] = []

    def __init__(self, **kwargs: Any) -> None:
        FakeStack.seen.append(kwargs["worker_concurrency"])

    def start(self) -> None:
        raise _Started

    def stop(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeStack.seen = []
    monkeypatch.setattr(worker.stack, "Stack", FakeStack)


def test_run_without_the_flag_uses_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_CELERY__CONCURRENCY", "5")
    result = CliRunner().invoke(app, ["run"])
    assert isinstance(result.exception, _Started)
    assert FakeStack.seen == [5]


def test_the_flag_overrides_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PASSSYNC_CELERY__CONCURRENCY", "5")
    result = CliRunner().invoke(app, ["run", "--concurrency", "3"])
    assert isinstance(result.exception, _Started)
    assert FakeStack.seen == [3]


def test_the_default_is_the_settings_default() -> None:
    result = CliRunner().invoke(app, ["run"])
    assert isinstance(result.exception, _Started)
    assert FakeStack.seen == [2]
