"""Thread-safe in-memory pass and template store behind the sandbox's HTTP layer."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# Fixed namespace so the same template name gets the same id on every run and machine.
TEMPLATE_NAMESPACE = uuid.UUID("6f1f3f4e-2b7a-5a51-9a77-5f0d2c8e1a10")
# Keys of a v3 `data` object that describe the pass; every other key is a template property.
PASS_KEYS = frozenset(
    {
        "templateId",
        "userProvidedId",
        "enforceUniqueUserProvidedId",
        "barcodeValue",
        "groupingIdentifier",
    }
)


class StoreError(Exception):
    """Base of the store's refusals; the HTTP layer turns each into an error envelope."""


class PassNotFound(StoreError):
    pass


class UnknownTemplate(StoreError):
    pass


class DuplicateUserProvidedId(StoreError):
    pass


def template_id_for(name: str) -> str:
    """The deterministic template id the sandbox gives a template name."""
    return str(uuid.uuid5(TEMPLATE_NAMESPACE, name))


@dataclass
class StoredPass:
    identifier: str
    template_id: str
    user_provided_id: str | None
    barcode_value: str
    fields: dict[str, Any]
    created_ms: int
    modified_ms: int
    seq: int
    grouping_identifier: str | None = None
    voided: bool = False
    deleted: bool = False

    def sort_key(self) -> tuple[int, int]:
        return (self.created_ms, self.seq)


@dataclass(frozen=True)
class Page:
    items: list[StoredPass]
    total: int
    next_start: StoredPass | None


def split_data(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pass keys, template properties) of a v3 `data` object."""
    known = {k: v for k, v in data.items() if k in PASS_KEYS}
    props = {k: v for k, v in data.items() if k not in PASS_KEYS}
    return known, props


class SandboxStore:
    """Passes and templates; every method returns copies, so callers never share state."""

    def __init__(self, templates: Iterable[str], *, clock: Callable[[], float] = time.time):
        self._lock = threading.Lock()
        self._clock = clock
        self._templates = {template_id_for(name): name for name in templates}
        self._passes: dict[str, StoredPass] = {}
        self._seq = 0

    # -- templates ---------------------------------------------------------------------------

    def templates(self) -> dict[str, str]:
        return dict(self._templates)

    def template_name(self, template_id: str) -> str | None:
        return self._templates.get(template_id)

    # -- writes ------------------------------------------------------------------------------

    def create(self, data: dict[str, Any]) -> StoredPass:
        """Store a pass from a v3 create `data` object, applying the uniqueness guard."""
        known, props = split_data(data)
        template_id = str(known.get("templateId") or "")
        upid = _opt_str(known.get("userProvidedId"))
        with self._lock:
            if template_id not in self._templates:
                raise UnknownTemplate(template_id)
            enforce = known.get("enforceUniqueUserProvidedId") is True
            if upid is not None and enforce and self._live_by_upid(upid):
                raise DuplicateUserProvidedId(upid)
            self._seq += 1
            now = self._now_ms()
            stored = StoredPass(
                identifier=str(uuid.uuid4()),
                template_id=template_id,
                user_provided_id=upid,
                barcode_value=_opt_str(known.get("barcodeValue")) or uuid.uuid4().hex.upper(),
                fields=copy.deepcopy(props),
                created_ms=now,
                modified_ms=now,
                seq=self._seq,
                grouping_identifier=_opt_str(known.get("groupingIdentifier")),
            )
            self._passes[stored.identifier] = stored
            return copy.deepcopy(stored)

    def patch(self, identifier: str, data: dict[str, Any], *, by_upid: bool) -> StoredPass:
        """Merge: properties not sent are kept."""
        return self._write(identifier, data, by_upid=by_upid, replace=False)

    def replace(self, identifier: str, data: dict[str, Any], *, by_upid: bool) -> StoredPass:
        """Full update: properties not sent are dropped (the real API's POST pitfall)."""
        return self._write(identifier, data, by_upid=by_upid, replace=True)

    def delete(self, identifier: str, *, by_upid: bool) -> StoredPass:
        with self._lock:
            stored = self._live_v3(identifier, by_upid=by_upid)
            stored.deleted = True
            stored.modified_ms = self._now_ms()
            return copy.deepcopy(stored)

    def set_voided(self, identifier: str, voided: bool) -> StoredPass:
        with self._lock:
            stored = self._live_v1(identifier)
            stored.voided = voided
            stored.modified_ms = self._now_ms()
            return copy.deepcopy(stored)

    def delete_externally(self, identifier: str) -> StoredPass:
        """Delete as if someone used the Passcreator UI: the next PATCH gets 404."""
        return self.delete(identifier, by_upid=False)

    def reset(self) -> None:
        with self._lock:
            self._passes.clear()
            self._seq = 0

    # -- reads -------------------------------------------------------------------------------

    def find_v1(self, identifier: str) -> StoredPass:
        """By uid, else userProvidedId (newest wins), else barcode value."""
        with self._lock:
            return copy.deepcopy(self._live_v1(identifier))

    def all(self) -> list[StoredPass]:
        """Every pass ever stored, deleted ones included, oldest first."""
        with self._lock:
            return [copy.deepcopy(p) for p in sorted(self._passes.values(), key=_by_age)]

    def page(
        self,
        *,
        size: int,
        start_uid: str | None,
        start_ms: int | None,
        keep: Callable[[StoredPass], bool],
    ) -> Page:
        """Newest first, keyset-paged: the page starts at (start_ms, start_uid), inclusive."""
        with self._lock:
            rows = [p for p in self._passes.values() if not p.deleted and keep(p)]
            rows.sort(key=StoredPass.sort_key, reverse=True)
            bound = self._bound(start_uid, start_ms)
            rows_from = rows if bound is None else [p for p in rows if p.sort_key() <= bound]
            items = rows_from[:size]
            nxt = rows_from[size] if len(rows_from) > size else None
            return Page(
                items=[copy.deepcopy(p) for p in items],
                total=len(rows),
                next_start=copy.deepcopy(nxt),
            )

    # -- internals (call with the lock held) -------------------------------------------------

    def _write(
        self, identifier: str, data: dict[str, Any], *, by_upid: bool, replace: bool
    ) -> StoredPass:
        known, props = split_data(data)
        with self._lock:
            stored = self._live_v3(identifier, by_upid=by_upid)
            if replace:
                stored.fields = copy.deepcopy(props)
            else:
                stored.fields.update(copy.deepcopy(props))
            if "userProvidedId" in known:
                stored.user_provided_id = _opt_str(known["userProvidedId"])
            if known.get("barcodeValue"):
                stored.barcode_value = str(known["barcodeValue"])
            if "templateId" in known and known["templateId"] in self._templates:
                stored.template_id = str(known["templateId"])
            stored.modified_ms = self._now_ms()
            return copy.deepcopy(stored)

    def _bound(self, start_uid: str | None, start_ms: int | None) -> tuple[int, int] | None:
        anchor = self._passes.get(start_uid) if start_uid else None
        if anchor is not None:
            return anchor.sort_key()
        if start_ms is not None:
            return (start_ms, 2**63)
        return None

    def _live_by_upid(self, upid: str) -> list[StoredPass]:
        found = [p for p in self._passes.values() if not p.deleted and p.user_provided_id == upid]
        return sorted(found, key=_by_age, reverse=True)

    def _live_v3(self, identifier: str, *, by_upid: bool) -> StoredPass:
        stored = self._passes.get(identifier)
        if stored is not None and not stored.deleted:
            return stored
        if by_upid and (matches := self._live_by_upid(identifier)):
            return matches[0]
        raise PassNotFound(identifier)

    def _live_v1(self, identifier: str) -> StoredPass:
        stored = self._passes.get(identifier)
        if stored is not None and not stored.deleted:
            return stored
        if matches := self._live_by_upid(identifier):
            return matches[0]
        for candidate in self._passes.values():
            if not candidate.deleted and candidate.barcode_value == identifier:
                return candidate
        raise PassNotFound(identifier)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _by_age(stored: StoredPass) -> tuple[int, int]:
    return stored.sort_key()


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
