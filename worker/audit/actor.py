"""On whose behalf a provider call is made: a context variable that the edges set."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

ActorKind = Literal["event", "campaign", "admin", "cli", "mcp", "system"]
ACTOR_KINDS: tuple[ActorKind, ...] = ("event", "campaign", "admin", "cli", "mcp", "system")


@dataclass(frozen=True, slots=True)
class Actor:
    """A kind and an id: `event:42`, `campaign:7`, `admin:ops`, `cli:alice`, `system:passsync`."""

    kind: ActorKind
    id: str

    @classmethod
    def event(cls, ledger_id: int) -> Actor:
        return cls("event", str(ledger_id))

    @classmethod
    def campaign(cls, campaign_id: int | str) -> Actor:
        return cls("campaign", str(campaign_id))

    @classmethod
    def admin(cls, token_name: str) -> Actor:
        """An admin API token, by its name (never its secret)."""
        return cls("admin", token_name)

    @classmethod
    def cli(cls) -> Actor:
        """The operating-system user running a `passsync` command."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
            user = "unknown"
        return cls("cli", user)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


SYSTEM = Actor("system", "passsync")

_current: ContextVar[Actor] = ContextVar("passsync_audit_actor", default=SYSTEM)


def current_actor() -> Actor:
    """The actor set by the innermost `acting_as`, else SYSTEM."""
    return _current.get()


@contextmanager
def acting_as(actor: Actor) -> Iterator[Actor]:
    """Attribute every provider call made inside the block (in this context) to `actor`."""
    token = _current.set(actor)
    try:
        yield actor
    finally:
        _current.reset(token)
