"""The actor context: set by the edges, read by the recorder, never leaking between contexts."""

from __future__ import annotations

import contextvars
import threading

import pytest

from worker.audit import SYSTEM, Actor, acting_as, current_actor


def test_without_an_edge_the_actor_is_the_system() -> None:
    assert current_actor() == SYSTEM == Actor("system", "passsync")


def test_acting_as_nests_and_restores_the_outer_actor() -> None:
    # Given an event actor, When a nested admin block runs and ends
    with acting_as(Actor.event(42)):
        with acting_as(Actor.admin("ops")):
            inner = current_actor()
        outer = current_actor()
    # Then each block saw its own actor and the default is back
    assert (str(inner), str(outer)) == ("admin:ops", "event:42")
    assert current_actor() == SYSTEM


def test_the_actor_is_restored_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError), acting_as(Actor.campaign(7)):
        raise RuntimeError("boom")
    assert current_actor() == SYSTEM


def test_another_thread_does_not_see_this_threads_actor() -> None:
    seen: list[Actor] = []
    with acting_as(Actor.event(1)):
        thread = threading.Thread(target=lambda: seen.append(current_actor()))
        thread.start()
        thread.join()
    assert seen == [SYSTEM]


def test_a_copied_context_keeps_the_actor_for_work_handed_to_it() -> None:
    with acting_as(Actor.event(5)):
        ctx = contextvars.copy_context()
    assert ctx.run(current_actor) == Actor("event", "5")


def test_cli_actor_is_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    assert str(Actor.cli()) == "cli:alice"


def test_cli_actor_without_a_known_user_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("no user")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert Actor.cli() == Actor("cli", "unknown")
