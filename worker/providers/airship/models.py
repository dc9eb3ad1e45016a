"""Airship Wallet JSON shapes <-> passsync's neutral terms (pure functions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from worker.providers.port import ProviderPass

# Header names Airship keeps apart from `fields` (V: create body and get response).
EXPIRATION = "expirationDate"
INSTALLED_STATUSES = frozenset({"installed"})


def wire_fields(fields: dict[str, Any], *, change_message: str | None = None) -> dict[str, Any]:
    """{"tier": "gold"} -> {"tier": {"value": "gold"}} (+ changeMessage when given)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        item: dict[str, Any] = {"value": value}
        if change_message is not None:
            item["changeMessage"] = change_message
        out[name] = item
    return out


def flat_fields(fields: Any) -> dict[str, Any]:
    """{"tier": {"value": "gold", "label": ...}} -> {"tier": "gold"}; lenient on shape."""
    if not isinstance(fields, dict):
        return {}
    out: dict[str, Any] = {}
    for name, item in fields.items():
        out[str(name)] = item.get("value") if isinstance(item, dict) else item
    return out


def text(value: Any) -> str | None:
    """Airship ids are integers in JSON; passsync keeps them as strings."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    return str(value)


def is_voided(body: dict[str, Any], void_label: str) -> bool:
    headers = body.get("headers")
    expiry = headers.get(EXPIRATION) if isinstance(headers, dict) else None
    label = expiry.get("label") if isinstance(expiry, dict) else None
    return isinstance(label, str) and label.strip().lower() == void_label.lower()


def public_url(body: dict[str, Any]) -> str | None:
    """`publicUrl.path` (Android SDK test) or `url` (uareach): both are tolerated (U)."""
    public = body.get("publicUrl")
    if isinstance(public, dict) and isinstance(public.get("path"), str) and public["path"]:
        return str(public["path"])
    url = body.get("url")
    return url if isinstance(url, str) and url else None


def to_provider_pass(
    body: dict[str, Any],
    *,
    void_label: str,
    external_id: str | None = None,
    template_id: str | None = None,
    fields: dict[str, Any] | None = None,
    link: str | None = None,
) -> ProviderPass:
    """A pass object (create, get or list item) as the port's ProviderPass."""
    page = public_url(body)
    return ProviderPass(
        pass_id=text(body.get("id")) or "",
        user_provided_id=text(body.get("externalId")) or external_id,
        template_id=text(body.get("templateId")) or template_id,
        voided=is_voided(body, void_label),
        fields=flat_fields(body.get("fields")) if fields is None else fields,
        download_page=link or page,
        iphone_uri=page,
        android_uri=page,
    )


def expiry_value(when: datetime) -> str:
    """ISO 8601 in UTC, minutes precision as in Airship's examples (2023-01-28T15:00Z)."""
    return when.strftime("%Y-%m-%dT%H:%MZ")
