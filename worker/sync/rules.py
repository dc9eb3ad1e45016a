"""The minimal rule set: a customer event upserts the configured passes with mapped fields."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from worker.config import SyncSettings
from worker.inbound.schema import CanonicalEvent

SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class DesiredPass:
    """What one pass of one customer must look like after an event."""

    pass_key: str
    template_name: str
    fields: dict[str, Any]


def desired_passes(event: CanonicalEvent, sync: SyncSettings) -> list[DesiredPass]:
    """The passes this event touches, in pass-key order (a stable lock order)."""
    doc = event.model_dump(mode="json")
    out = []
    for key in sorted(sync.passes):
        rule = sync.passes[key]
        if event.type not in rule.event_types:
            continue
        fields = {}
        for name, path in rule.fields.items():
            value = lookup(doc, path)
            if value is not None:
                fields[name] = value
        out.append(DesiredPass(pass_key=key, template_name=rule.template, fields=fields))
    return out


def lookup(doc: dict[str, Any], path: str) -> Any:
    """Follow a dotted path (`customer.attributes.tier`); None where any step is missing."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def content_hash(template_id: str, fields: dict[str, Any]) -> str:
    body = json.dumps({"t": template_id, "f": fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def user_provided_id(prefix: str, pass_key: str, customer_id: str) -> str:
    """The deterministic external id sent to the provider for (customer, pass key).

    `{prefix}-{pass_key}-{customer_id}` when the customer id is URL-safe, so support staff can
    read it; otherwise `{prefix}-{pass_key}-~{sha256 prefix}`. Pass keys never contain '-'
    and '~' is never in a safe id, so two different pairs never share an id.
    """
    if SAFE_ID.match(customer_id):
        return f"{prefix}-{pass_key}-{customer_id}"
    digest = hashlib.sha256(customer_id.encode()).hexdigest()[:40]
    return f"{prefix}-{pass_key}-~{digest}"
