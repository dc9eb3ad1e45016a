"""Rotation inside one process: new clients between calls, in-flight calls finish with the
old credential, a refused credential holds the account (no storm), SIGHUP reloads."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from worker.config import Settings
from worker.providers import rotation
from worker.providers.credentials import CredentialRefusedError
from worker.providers.errors import NotFoundError, RejectedError
from worker.providers.port import AccountSettings, ProviderTemplate
from worker.providers.rotation import CredentialReloader, RotatingProvider


@dataclass
class Platform:
    """The provider's side: which keys it accepts, and every call with the key it carried."""

    accepted: set[str]
    calls: list[tuple[str, str]] = field(default_factory=list)
    gate: threading.Event | None = None  # a call waits here (an in-flight call)


@dataclass
class FakeClient:
    platform: Platform
    key: str
    name: str = "fake"
    closed: bool = False

    def list_templates(self) -> list[ProviderTemplate]:
        self.platform.calls.append(("list_templates", self.key))
        if self.platform.gate is not None:
            gate, self.platform.gate = self.platform.gate, None
            gate.wait(5)
        if self.key not in self.platform.accepted:
            raise RejectedError("Unauthorized", status=401)
        return [ProviderTemplate(template_id="t1", name="Loyalty Card")]

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> Any:
        self.platform.calls.append(("get_pass", self.key))
        raise NotFoundError("no such pass", status=404)

    def close(self) -> None:
        self.closed = True


def _settings(key: str, **credentials: Any) -> Settings:
    return Settings(
        providers={"acct": {"kind": "passcreator", "api_key": key}},
        credentials={
            "reload_check_seconds": 2,
            "refused_hold_seconds": 5,
            "retire_after_seconds": 60,
            **credentials,
        },
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    platform: Platform
    settings: Settings
    generation: list[int]
    keys: list[str]  # the key the next load returns
    clock: Clock
    reloader: CredentialReloader
    provider: RotatingProvider
    built: list[FakeClient]

    def rotate(self, key: str) -> None:
        """The secrets file gets `key`, `passsync accounts rotate` bumps the generation."""
        self.keys[0] = key
        self.generation[0] += 1


def _world(**credentials: Any) -> World:
    platform = Platform(accepted={"old"})
    settings = _settings("old", **credentials)
    generation, keys, clock = [0], ["old"], Clock()
    built: list[FakeClient] = []

    def build(conf: AccountSettings) -> Any:
        client = FakeClient(platform, conf.api_key.get_secret_value())  # type: ignore[attr-defined]
        built.append(client)
        return client

    reloader = CredentialReloader(
        settings,
        load=lambda: _settings(keys[0], **credentials),
        read=lambda: generation[0],
        clock=clock,
    )
    provider = RotatingProvider(reloader, "acct", build, clock=clock)
    return World(platform, settings, generation, keys, clock, reloader, provider, built)


def test_after_a_rotation_the_next_call_uses_a_client_with_the_new_key() -> None:
    world = _world()
    world.provider.list_templates()
    # When the key is rotated and the next look at the generation comes
    world.platform.accepted = {"old", "new"}
    world.rotate("new")
    world.clock.now += 2
    world.provider.list_templates()
    # Then that call went out with the new key, from a new client
    assert world.platform.calls == [("list_templates", "old"), ("list_templates", "new")]
    assert [c.key for c in world.built] == ["old", "new"]
    assert world.settings.providers["acct"].api_key.get_secret_value() == "new"  # type: ignore[attr-defined]


def test_between_looks_no_reload_happens() -> None:
    world = _world()
    world.rotate("new")
    world.clock.now += 1  # within reload_check_seconds
    world.provider.list_templates()
    assert world.platform.calls == [("list_templates", "old")]


def test_a_call_in_flight_finishes_with_the_old_credential_and_its_client_stays_open() -> None:
    world = _world()
    world.platform.accepted = {"old", "new"}
    started = threading.Event()
    world.platform.gate = threading.Event()
    gate = world.platform.gate
    results: list[Any] = []

    def in_flight() -> None:
        started.set()
        results.append(world.provider.list_templates())

    thread = threading.Thread(target=in_flight)
    thread.start()
    started.wait(5)
    time.sleep(0.05)  # the call is inside the old client, waiting at the provider
    # When a rotation is picked up by another call meanwhile
    world.rotate("new")
    world.clock.now += 2
    world.provider.list_templates()
    gate.set()
    thread.join(5)
    # Then the in-flight call finished, with the old key, and its client was not closed
    assert results and results[0][0].name == "Loyalty Card"
    assert ("list_templates", "old") in world.platform.calls
    assert ("list_templates", "new") in world.platform.calls
    old, _new = world.built
    assert not old.closed
    # ... until retire_after_seconds later
    world.clock.now += 61
    world.rotate("newer")
    world.platform.accepted.add("newer")
    world.provider.list_templates()
    assert old.closed and not world.built[-1].closed


def test_a_refused_credential_holds_the_account_without_more_calls() -> None:
    world = _world()
    world.platform.accepted = {"new"}  # the old key was revoked at the provider
    # When calls keep coming during the hold
    with pytest.raises(CredentialRefusedError) as first:
        world.provider.list_templates()
    for _ in range(20):
        world.clock.now += 0.1
        with pytest.raises(CredentialRefusedError):
            world.provider.list_templates()
    # Then only the first reached the provider (no 401 storm), and the error is transient
    assert world.platform.calls == [("list_templates", "old")]
    assert first.value.status == 401
    assert first.value.retry_after == 5
    # ... and after the hold one call tries again
    world.clock.now += 5
    with pytest.raises(CredentialRefusedError):
        world.provider.list_templates()
    assert len(world.platform.calls) == 2


def test_a_rotation_ends_the_hold_at_once() -> None:
    world = _world()
    world.platform.accepted = {"new"}
    with pytest.raises(CredentialRefusedError):
        world.provider.list_templates()
    world.rotate("new")
    world.clock.now += 2
    assert world.provider.list_templates()[0].template_id == "t1"
    assert world.platform.calls == [("list_templates", "old"), ("list_templates", "new")]


def test_a_401_looks_for_a_rotation_at_once_and_tries_once_more_with_it() -> None:
    # Given the provider switched keys and the rotation was announced a moment ago
    world = _world()
    world.platform.accepted = {"new"}
    world.rotate("new")
    # When a call goes out before the next regular look (with the old key)
    templates = world.provider.list_templates()
    # Then its 401 made the process look now, and the call succeeded with the new key
    assert templates[0].template_id == "t1"
    assert world.platform.calls == [("list_templates", "old"), ("list_templates", "new")]


def test_other_rejections_pass_through_untouched() -> None:
    world = _world()
    with pytest.raises(NotFoundError):
        world.provider.get_pass("p1")
    world.provider.list_templates()  # no hold
    assert len(world.platform.calls) == 2


def test_an_invalid_reload_keeps_the_credential_in_use(caplog: pytest.LogCaptureFixture) -> None:
    world = _world()

    def broken() -> Settings:
        raise ValueError("secrets file /x has mode 0644: it must be readable by its owner only")

    world.reloader._load = broken  # type: ignore[method-assign]
    world.rotate("new")
    world.clock.now += 2
    world.provider.list_templates()
    assert world.platform.calls == [("list_templates", "old")]
    assert "credentials not reloaded, the ones in use stay: secrets file /x has mode" in caplog.text


def test_a_rotation_that_changes_another_account_keeps_this_client() -> None:
    world = _world()
    world.generation[0] += 1  # same key for acct
    world.clock.now += 2
    world.provider.list_templates()
    assert len(world.built) == 1
    assert world.reloader.reloads == 1


def test_sighup_reloads_this_process_at_its_next_call(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a process without a shared Redis (SIGHUP reaches only itself)
    world = _world()
    world.reloader._read = None  # type: ignore[assignment]
    world.platform.accepted = {"old", "new"}
    world.keys[0] = "new"  # the secrets file changed
    previous = signal.getsignal(signal.SIGHUP)
    told: list[Settings] = []
    monkeypatch.setattr(rotation, "_tell_fleet", told.append)
    try:
        rotation.install_sighup(world.settings)
        # When the process gets SIGHUP
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGHUP, previous)
    # Then its next call uses the new key at once (no waiting for the next look)
    world.provider.list_templates()
    assert world.platform.calls == [("list_templates", "new")]
    assert told == [world.settings]  # and it told the fleet
