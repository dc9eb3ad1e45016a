"""The upsert engine: apply one ledger event to the provider, exactly once in effect.

Exactly once comes from the data, not the broker: the event row and each pass mapping row are
locked for the transaction (FOR UPDATE on Postgres; SQLite transactions begin IMMEDIATE and so
serialize), a handled event is never applied again, an event older than what a pass already
shows is skipped, an unchanged pass costs no call, and a create refused as "already exists"
(our crash between create and commit) adopts the existing pass instead of making a twin.
The caller commits; this module never does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from worker.config import Settings
from worker.db import utcnow
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.providers.errors import AlreadyExistsError, NotFoundError
from worker.providers.port import PassProvider, ProviderPass
from worker.sync.models import PassMapping, PassStatus
from worker.sync.rules import DesiredPass, content_hash, desired_passes, user_provided_id
from worker.sync.templates import TemplateResolver


class EventNotFoundError(LookupError):
    """The task names a ledger id that does not exist."""


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    ADOPTED = "adopted"  # create said "already exists": found and brought up to date
    RECREATED = "recreated"  # update said 404: the pass was deleted at the provider
    UNCHANGED = "unchanged"  # provider already shows these fields: no call
    STALE = "stale"  # an newer event was already applied to this pass: no call


@dataclass(frozen=True)
class PassResult:
    pass_key: str
    outcome: Outcome
    provider_pass_id: str | None


@dataclass
class EventResult:
    event_id: int
    already_handled: bool = False
    passes: list[PassResult] = field(default_factory=list)


@dataclass
class SyncContext:
    """What the engine needs besides the session: built once per process by the edge."""

    settings: Settings
    provider: PassProvider
    templates: TemplateResolver


def process_event(session: Session, event_id: int, ctx: SyncContext) -> EventResult:
    """Apply ledger event `event_id`; marks it handled. Provider errors propagate unchanged."""
    row = session.execute(
        select(InboundEvent).where(InboundEvent.id == event_id).with_for_update()
    ).scalar_one_or_none()
    if row is None:
        raise EventNotFoundError(f"inbound event {event_id} does not exist")
    result = EventResult(event_id=event_id)
    if row.status == EventStatus.HANDLED:
        result.already_handled = True
        return result
    event = CanonicalEvent.model_validate(row.payload)
    for desired in desired_passes(event, ctx.settings.sync):
        result.passes.append(_apply_pass(session, event, desired, ctx))
    row.status = EventStatus.HANDLED
    row.attempts += 1
    row.last_error = None
    row.handled_at = utcnow()
    return result


def _apply_pass(
    session: Session, event: CanonicalEvent, desired: DesiredPass, ctx: SyncContext
) -> PassResult:
    mapping = _lock_mapping(session, ctx, event.customer.id, desired.pass_key)
    if _is_stale(mapping, event):
        return PassResult(desired.pass_key, Outcome.STALE, mapping.provider_pass_id)
    template_id = ctx.templates.resolve(desired.template_name)
    digest = content_hash(template_id, desired.fields)
    if (
        mapping.provider_pass_id
        and mapping.content_hash == digest
        and not _other_unfinished(session, event.customer.id, event.id)
    ):
        _record(mapping, event, digest, None)
        return PassResult(desired.pass_key, Outcome.UNCHANGED, mapping.provider_pass_id)
    outcome, found = _upsert(mapping, template_id, desired.fields, ctx.provider)
    mapping.template_id = template_id
    _record(mapping, event, digest, found)
    return PassResult(desired.pass_key, outcome, mapping.provider_pass_id)


def _upsert(
    mapping: PassMapping, template_id: str, fields: dict[str, Any], provider: PassProvider
) -> tuple[Outcome, ProviderPass]:
    if mapping.provider_pass_id:
        try:
            return Outcome.UPDATED, provider.update_pass(mapping.provider_pass_id, fields)
        except NotFoundError:
            created, outcome = _create_or_adopt(mapping, template_id, fields, provider)
            return (Outcome.RECREATED if outcome is Outcome.CREATED else outcome), created
    created, outcome = _create_or_adopt(mapping, template_id, fields, provider)
    return outcome, created


def _create_or_adopt(
    mapping: PassMapping, template_id: str, fields: dict[str, Any], provider: PassProvider
) -> tuple[ProviderPass, Outcome]:
    try:
        created = provider.create_pass(
            template_id=template_id, user_provided_id=mapping.user_provided_id, fields=fields
        )
        return created, Outcome.CREATED
    except AlreadyExistsError:
        existing = provider.get_pass(mapping.user_provided_id)
        # The existing pass may carry older fields (created by an earlier attempt of another
        # event), so bring it up to date; this write happens only on the recovery path.
        updated = provider.update_pass(existing.pass_id, fields)
        return _merge_links(updated, existing), Outcome.ADOPTED


def _merge_links(primary: ProviderPass, fallback: ProviderPass) -> ProviderPass:
    return primary.model_copy(
        update={
            "download_page": primary.download_page or fallback.download_page,
            "iphone_uri": primary.iphone_uri or fallback.iphone_uri,
            "android_uri": primary.android_uri or fallback.android_uri,
        }
    )


def _record(
    mapping: PassMapping, event: CanonicalEvent, digest: str, found: ProviderPass | None
) -> None:
    mapping.content_hash = digest
    mapping.last_event_at = event.occurred_at
    mapping.last_event_id = event.id
    mapping.status = PassStatus.ACTIVE
    if found is not None:
        mapping.provider_pass_id = found.pass_id
        mapping.download_page = found.download_page or mapping.download_page
        mapping.iphone_uri = found.iphone_uri or mapping.iphone_uri
        mapping.android_uri = found.android_uri or mapping.android_uri


def _other_unfinished(session: Session, customer_id: str, event_id: str) -> bool:
    """Whether another event of this customer is unfinished (pending, retrying or failed).

    Such an event may have reached the provider and then lost its transaction (a lost answer,
    a SIGKILL), so the provider can be ahead of `content_hash`: then only a write is safe.
    """
    query = (
        select(InboundEvent.id)
        .where(
            InboundEvent.customer_id == customer_id,
            InboundEvent.event_id != event_id,
            InboundEvent.status != EventStatus.HANDLED,
        )
        .limit(1)
    )
    return session.execute(query).first() is not None


def _is_stale(mapping: PassMapping, event: CanonicalEvent) -> bool:
    """True when this pass already reflects an event at or after this one."""
    if mapping.last_event_at is None or mapping.last_event_id is None:
        return False
    return _order_key(event.occurred_at, event.id) <= _order_key(
        mapping.last_event_at, mapping.last_event_id
    )


def _order_key(at: datetime, event_id: str) -> tuple[datetime, str]:
    # Ties on occurred_at are broken by event id, the same way on every worker.
    return (at, event_id)


def _lock_mapping(
    session: Session, ctx: SyncContext, customer_id: str, pass_key: str
) -> PassMapping:
    """Claim the mapping row (insert if absent) and lock it until the caller commits."""
    provider = ctx.provider.name
    values = {
        "provider": provider,
        "customer_id": customer_id,
        "pass_key": pass_key,
        "user_provided_id": user_provided_id(
            ctx.settings.providers.passcreator.user_provided_id_prefix, pass_key, customer_id
        ),
        "status": PassStatus.NEW,
        "created_at": utcnow(),
        "updated_at": utcnow(),
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(PassMapping)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "customer_id", "pass_key"])
    )
    return session.execute(
        select(PassMapping)
        .where(
            PassMapping.provider == provider,
            PassMapping.customer_id == customer_id,
            PassMapping.pass_key == pass_key,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
