"""What the routers need from the app factory, reachable through one typed dependency."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request

from worker.config import Settings
from worker.db import Database
from worker.inbound.signatures import WebhookVerifier
from worker.inbound.sources.adapter import SourceAdapter

if TYPE_CHECKING:
    from worker.api.auth import AdminAuth
    from worker.api.intake import Intake

# Publishes one task per ledger id; may raise when the broker is unreachable.
Enqueue = Callable[[list[int]], None]
BrokerPing = Callable[[], None]


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    db: Database
    enqueue: Enqueue
    broker_ping: BrokerPing
    verifiers: Mapping[str, WebhookVerifier]
    admin_auth: AdminAuth
    intake: Intake
    # Sources of a sender's own kind (shopify, stripe, ...), by name; standard ones are in
    # `verifiers`.
    adapters: Mapping[str, SourceAdapter] = field(default_factory=dict)


STATE_KEY = "passsync"


async def get_context(request: Request) -> ApiContext:
    return cast(ApiContext, getattr(request.app.state, STATE_KEY))


Context = Annotated[ApiContext, Depends(get_context)]
