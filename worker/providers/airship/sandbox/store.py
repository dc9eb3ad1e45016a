"""The Airship sandbox's data: templates, passes (integer ids, external ids unique per
template), adaptive links, the project's callback target and issued OAuth tokens."""

from __future__ import annotations

import json
import os
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FIRST_TEMPLATE_ID = 1000
FIRST_PASS_ID = 149440311  # the size of the ids in Airship's examples


class StoreError(Exception):
    def __init__(self, status: int, description: str, details: str = "") -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.details = details


def not_found(details: str) -> StoreError:
    # V: the 404 body Airship documents.
    return StoreError(404, "The resource is no longer at that location.", details)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class StoredPass:
    id: int
    template_id: int
    external_id: str | None
    fields: dict[str, dict[str, Any]]
    headers: dict[str, dict[str, Any]]
    created_at: str
    updated_at: str
    serial: str
    status: str = "not_been_installed"
    deleted: bool = False
    installs: int = 0
    uninstalls: int = 0
    change_messages: list[str] = field(default_factory=list)

    def view(self, base_url: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "templateId": self.template_id,
            "externalId": self.external_id,
            "serialNumber": self.serial,
            "fields": self.fields,
            "headers": self.headers,
            "status": self.status,
            "publicUrl": {"path": f"{base_url}/_sandbox/p/{self.id}", "type": "multiple"},
            "url": f"{base_url}/v1/pass/{self.id}/download",
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }


@dataclass
class Token:
    value: str
    client_id: str
    issued_at: float
    expires_at: float
    scopes: tuple[str, ...]
    revoked: bool = False


class SandboxStore:
    """Thread-safe; every method raises StoreError with Airship's status."""

    def __init__(self, templates: list[str], project_id: int, path: Path | None = None) -> None:
        self._names = list(templates)
        self.project_id = project_id
        self._path = path
        self._lock = threading.RLock()
        self.reset(keep_file=True)
        if path is not None and path.exists():
            self._load(path)

    def reset(self, *, keep_file: bool = False) -> None:
        with self._lock:
            self.templates: dict[int, str] = {
                FIRST_TEMPLATE_ID + i: name for i, name in enumerate(self._names)
            }
            self.passes: dict[int, StoredPass] = {}
            self.by_external: dict[tuple[int, str], int] = {}
            self.links: list[dict[str, Any]] = []
            self.callback: dict[str, Any] | None = None
            self.tokens: dict[str, Token] = {}
            self.token_requests = 0
            self._next_pass = FIRST_PASS_ID
            self._tickets = 12345
            if not keep_file:
                self.save()

    # -- persistence (`store_path`): passes and the callback target survive a restart --------

    def save(self) -> None:
        """Write the passes and the callback target to `store_path` (atomically), if set."""
        if self._path is None:
            return
        with self._lock:
            data = {
                "passes": [asdict(p) for _, p in sorted(self.passes.items())],
                "callback": self.callback,
                "next_pass": self._next_pass,
                "tickets": self._tickets,
            }
            tmp = self._path.with_suffix(self._path.suffix + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(data, out)
            os.replace(tmp, self._path)

    def _load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        for row in data.get("passes", []):
            stored = StoredPass(**row)
            self.passes[stored.id] = stored
            if stored.external_id is not None and not stored.deleted:
                self.by_external[(stored.template_id, stored.external_id)] = stored.id
        self.callback = data.get("callback")
        self._next_pass = int(data.get("next_pass", self._next_pass))
        self._tickets = int(data.get("tickets", self._tickets))

    # -- templates -----------------------------------------------------------------------------

    def template(self, template_id: str) -> int:
        try:
            tid = int(template_id)
        except ValueError:
            raise not_found(f"object not found :Template not found! {template_id}") from None
        if tid not in self.templates:
            raise not_found(f"object not found :Template not found! {template_id}")
        return tid

    def headers(self) -> list[dict[str, Any]]:
        return [
            {
                "id": tid,
                "name": name,
                "vendor": "Apple",
                "vendorId": 1,
                "projectId": self.project_id,
                "projectType": "loyalty",
                "deleted": False,
                "disabled": False,
            }
            for tid, name in sorted(self.templates.items())
        ]

    # -- passes --------------------------------------------------------------------------------

    def create(self, template_id: str, external_id: str | None, body: dict[str, Any]) -> StoredPass:
        tid = self.template(template_id)
        fields, headers = _fields(body.get("fields")), _fields(body.get("headers"))
        with self._lock:
            if external_id is not None and (tid, external_id) in self.by_external:
                # V: 400, "External IDs are designed to allow passes to be generated once".
                raise StoreError(
                    400,
                    "Bad Request",
                    f"A pass with external id {external_id} already exists for this template. "
                    "External IDs are designed to allow passes to be generated once, then "
                    "updated.",
                )
            pid = self._next_pass
            self._next_pass += 1
            now = _now()
            stored = StoredPass(
                id=pid,
                template_id=tid,
                external_id=external_id,
                fields=fields,
                headers=headers,
                created_at=now,
                updated_at=now,
                serial=f"{self.project_id}.{tid}_{uuid.uuid4()}_{pid}",
            )
            self.passes[pid] = stored
            if external_id is not None:
                self.by_external[(tid, external_id)] = pid
            return stored

    def find(self, pass_id: str) -> StoredPass:
        stored = self.passes.get(int(pass_id)) if pass_id.isdigit() else None
        if stored is None or stored.deleted:
            raise not_found(f"object not found :Pass not found! {pass_id}")
        return stored

    def find_external(self, external_id: str, template_id: str | None = None) -> StoredPass:
        with self._lock:
            for (tid, ext), pid in self.by_external.items():
                if ext == external_id and (template_id is None or str(tid) == template_id):
                    stored = self.passes[pid]
                    if not stored.deleted:
                        return stored
        raise not_found(
            f"object not found :Pass not found! Please pass a valid external Id instead of "
            f"{external_id}"
        )

    def update(self, stored: StoredPass, body: dict[str, Any]) -> int:
        """Partial: the fields and headers given are merged value by value (V)."""
        with self._lock:
            for name, item in _fields(body.get("fields")).items():
                current = stored.fields.setdefault(name, {})
                current.update(item)
                message = item.get("changeMessage")
                if isinstance(message, str):
                    stored.change_messages.append(message.replace("%@", str(item.get("value", ""))))
            for name, item in _fields(body.get("headers")).items():
                stored.headers.setdefault(name, {}).update(item)
            stored.updated_at = _now()
            self._tickets += 1
            return self._tickets

    def delete(self, stored: StoredPass) -> None:
        with self._lock:
            stored.deleted = True
            if stored.external_id is not None:
                self.by_external.pop((stored.template_id, stored.external_id), None)

    def of_template(self, template_id: str) -> list[StoredPass]:
        tid = self.template(template_id)
        return [p for _, p in sorted(self.passes.items()) if p.template_id == tid and not p.deleted]

    # -- tokens --------------------------------------------------------------------------------

    def issue(self, client_id: str, scopes: tuple[str, ...], now: float, lifetime: float) -> Token:
        with self._lock:
            token = Token(secrets.token_urlsafe(24), client_id, now, now + lifetime, scopes)
            self.tokens[token.value] = token
            self.token_requests += 1
            return token

    def revoke_all(self) -> int:
        """Every issued token expires now (as if an hour had passed)."""
        with self._lock:
            live = [t for t in self.tokens.values() if not t.revoked]
            for token in live:
                token.revoked = True
            return len(live)


def _fields(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, item in value.items():
        out[str(name)] = dict(item) if isinstance(item, dict) else {"value": item}
    return out
