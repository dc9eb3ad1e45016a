"""What the sync engine emits for a pass, and the pass view shared by push and pull.

`pass.issued` goes out once per provider pass: when a pass id the customer was never told
about is recorded (a first create, an adoption after a lost answer, a re-creation after the
pass was deleted at the provider). Payloads are documented in README, "Outbound events".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.inbound.models import InboundEvent
from worker.outbox.causes import cause_of
from worker.outbox.emit import emit
from worker.outbox.models import OutboxEvent
from worker.sync.models import PassMapping, PassStatus

ISSUING = frozenset({"created", "recreated", "adopted"})
UPDATING = frozenset({"updated", "unvoided"})


def pass_view(row: PassMapping, template: str | None = None) -> dict[str, Any]:
    """One pass as a CRM sees it, in outbound payloads and in GET /api/passes."""
    view: dict[str, Any] = {
        "customer_id": row.customer_id,
        "pass_key": row.pass_key,
        "account": row.provider,  # the column holds the account's name
        "provider": row.kind or row.provider,  # the account's platform kind
        "pass_id": row.provider_pass_id,
        "user_provided_id": row.user_provided_id,
        "template_id": row.template_id,
        "status": row.status,
        "links": {
            "download_page": row.download_page,
            "iphone": row.iphone_uri,
            "android": row.android_uri,
        },
        "last_event_id": row.last_event_id,
    }
    if template is not None:
        view["template"] = template
    return view


def list_pass_views(
    session: Session, customer_id: str | None, *, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Pass views, by customer then pass key; one customer's when `customer_id` is given."""
    query = select(PassMapping).order_by(PassMapping.customer_id, PassMapping.pass_key)
    if customer_id is not None:
        query = query.where(PassMapping.customer_id == customer_id)
    rows = session.scalars(query.limit(limit).offset(offset))
    return [pass_view(row) for row in rows]


def pass_event_types(
    before_pass_id: str | None,
    steps: Iterable[tuple[str, str, str | None]],
    after_pass_id: str | None,
) -> list[tuple[str, str | None]]:
    """(type, pass id) to emit for one pass's step results (action, outcome, pass id), given
    the pass id recorded before them and the one recorded after."""
    announced = {before_pass_id} if before_pass_id else set()
    found: list[tuple[str, str | None]] = []
    for action, outcome, pass_id in steps:
        if outcome in ISSUING:
            fresh = after_pass_id is not None and after_pass_id not in announced
            found.append(("pass.issued" if fresh else "pass.updated", after_pass_id))
            announced.add(after_pass_id or "")
        elif outcome in UPDATING:
            found.append(("pass.updated", pass_id))
        elif outcome == "voided":
            found.append(("pass.voided", pass_id))
        elif outcome == "deleted":
            found.append(("pass.deleted", pass_id))
        elif outcome == "absent" and action in ("void", "unvoid") and pass_id:
            # The void found the pass deleted at the provider; the mapping forgot it.
            found.append(("pass.deleted", pass_id))
    return found


def emit_pass_changes(
    session: Session,
    *,
    leader: int,
    row: PassMapping,
    template: str | None,
    before_pass_id: str | None,
    steps: Iterable[tuple[str, str, str | None]],
) -> list[OutboxEvent]:
    """Emit what one pass's recorded results mean for the CRM, in this transaction."""
    kinds = pass_event_types(before_pass_id, steps, row.provider_pass_id)
    if not kinds:
        return []
    event = session.get(InboundEvent, leader)
    assert event is not None  # locked by the engine in this transaction
    cause, ref = cause_of(event)
    emitted = []
    for kind, pass_id in kinds:
        payload = pass_view(row, template) | {"event": ref}
        if kind == "pass.deleted":
            payload |= {"pass_id": pass_id, "status": PassStatus.DELETED.value}
        emitted.append(emit(session, kind, payload, row.customer_id, cause))
    return emitted
