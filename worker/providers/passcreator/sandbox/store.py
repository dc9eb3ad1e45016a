"""Thread-safe in-memory pass and template store behind the sandbox's HTTP layer."""

from __future__ import annotations

import copy
import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.providers.passcreator.settings import SEEDED_PROPERTIES

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


class UnknownProperties(StoreError):
    """Properties the pass's template does not have (with `unknown_properties: reject`)."""

    def __init__(self, template: str, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.template = template
        self.names = names


class PassVoided(StoreError):
    """The pass is voided: Passcreator refuses a push to a pass that is not active."""


def template_id_for(name: str) -> str:
    """The deterministic template id the sandbox gives a template name."""
    return str(uuid.uuid5(TEMPLATE_NAMESPACE, name))


def property_id_for(template_id: str, name: str) -> str:
    """The id the sandbox gives a template's property (a rule may use it for the name)."""
    return f"{template_id}.{name}"


def template_properties(template: StoredTemplate) -> list[str]:
    """The names of a template's additional properties (its `additionalProperties`)."""
    names = template.data.get("additionalProperties")
    return [str(n) for n in names] if isinstance(names, list) else []


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


@dataclass
class StoredTemplate:
    """A template: its create body (`data`), and whether changes await publishing."""

    identifier: str
    name: str
    data: dict[str, Any]
    created_ms: int
    modified_ms: int
    seeded: bool = False
    unpublished_changes: bool = False
    published_ms: int | None = None
    deleted: bool = False


@dataclass
class StoredHook:
    """A webhook subscription as POST /api/hook/subscribe stored it."""

    identifier: str
    event: str
    target_url: str | None
    template_id: str | None
    body: dict[str, Any]
    created_ms: int


@dataclass
class StoredScan:
    identifier: str
    body: dict[str, Any]
    pass_id: str | None
    created_ms: int


@dataclass
class StoredPush:
    pass_id: str
    text: str
    created_ms: int


@dataclass
class Records:
    """The non-pass state, kept together so reset and persistence treat it alike."""

    templates: dict[str, StoredTemplate] = field(default_factory=dict)
    hooks: dict[str, StoredHook] = field(default_factory=dict)
    scans: dict[str, StoredScan] = field(default_factory=dict)
    pushes: list[StoredPush] = field(default_factory=list)


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
    """Passes, templates, hooks, scans and pushes; methods return copies, never live state.

    With `path`, every change is also written to a SQLite file and read back at start-up,
    so a restarted sandbox keeps its passes.
    """

    def __init__(
        self,
        templates: Mapping[str, list[str]] | Iterable[str],
        *,
        clock: Callable[[], float] = time.time,
        path: Path | None = None,
    ):
        self._lock = threading.Lock()
        self._clock = clock
        # name -> its properties (a bare name: the default seed's, else none)
        self._seeds = (
            {name: list(props) for name, props in templates.items()}
            if isinstance(templates, Mapping)
            else {name: list(SEEDED_PROPERTIES.get(name, [])) for name in templates}
        )
        self._passes: dict[str, StoredPass] = {}
        self._records = Records()
        self._seq = 0
        self._disk = _Disk(path) if path is not None else None
        if self._disk is not None and self._disk.load(self):
            self._give_seeds_properties()
            return
        self._seed()

    def _seed(self) -> None:
        now = self._now_ms()
        for name, props in self._seeds.items():
            tid = template_id_for(name)
            data = {"name": name, "type": "generic", "additionalProperties": props}
            template = StoredTemplate(tid, name, data, now, now, True)
            self._records.templates[tid] = template
            self._save("template", tid, template)

    def _give_seeds_properties(self) -> None:
        """A seeded template kept on disk by a sandbox without properties gets them now."""
        for template in self._records.templates.values():
            props = self._seeds.get(template.name)
            if template.seeded and props and "additionalProperties" not in template.data:
                template.data["additionalProperties"] = list(props)
                self._save("template", template.identifier, template)

    # -- templates ---------------------------------------------------------------------------

    def templates(self) -> dict[str, str]:
        """Live templates, id -> name, in creation order."""
        with self._lock:
            return {t.identifier: t.name for t in self._records.templates.values() if not t.deleted}

    def template_name(self, template_id: str) -> str | None:
        found = self._records.templates.get(template_id)
        return None if found is None or found.deleted else found.name

    def template(self, template_id: str) -> StoredTemplate:
        with self._lock:
            return copy.deepcopy(self._live_template(template_id))

    def all_templates(self) -> list[StoredTemplate]:
        with self._lock:
            return [copy.deepcopy(t) for t in self._records.templates.values()]

    def create_template(self, data: dict[str, Any]) -> StoredTemplate:
        now = self._now_ms()
        with self._lock:
            tid = str(uuid.uuid4())
            name = str(data["name"])
            template = StoredTemplate(tid, name, copy.deepcopy(data), now, now)
            self._records.templates[tid] = template
            self._save("template", tid, template)
            return copy.deepcopy(template)

    def update_template(
        self, template_id: str, data: dict[str, Any], *, replace: bool
    ) -> StoredTemplate:
        """PATCH merges into the template, POST replaces it; either waits for publishing."""
        with self._lock:
            template = self._live_template(template_id)
            merged = copy.deepcopy(data) if replace else {**template.data, **copy.deepcopy(data)}
            template.data = merged
            template.name = str(merged.get("name") or template.name)
            template.unpublished_changes = True
            template.modified_ms = self._now_ms()
            self._save("template", template_id, template)
            return copy.deepcopy(template)

    def publish_template(self, template_id: str) -> StoredTemplate:
        with self._lock:
            template = self._live_template(template_id)
            template.unpublished_changes = False
            template.published_ms = self._now_ms()
            self._save("template", template_id, template)
            return copy.deepcopy(template)

    def delete_template(self, template_id: str) -> None:
        """Its passes stay (what the real API does with them is unconfirmed)."""
        with self._lock:
            template = self._live_template(template_id)
            template.deleted = True
            self._save("template", template_id, template)

    def count_passes(self, template_id: str) -> int:
        with self._lock:
            return sum(
                1 for p in self._passes.values() if p.template_id == template_id and not p.deleted
            )

    # -- hooks, scans, pushes ----------------------------------------------------------------

    def subscribe(self, body: dict[str, Any], template_id: str | None) -> StoredHook:
        """Stores every call, duplicates included: subscribing is not idempotent (§6)."""
        with self._lock:
            if template_id is not None:
                self._live_template(template_id)
            hook = StoredHook(
                identifier=str(uuid.uuid4()),
                event=str(body["event"]),
                target_url=_opt_str(body.get("target_url")),
                template_id=template_id,
                body=copy.deepcopy(body),
                created_ms=self._now_ms(),
            )
            self._records.hooks[hook.identifier] = hook
            self._save("hook", hook.identifier, hook)
            return copy.deepcopy(hook)

    def hooks(self) -> list[StoredHook]:
        with self._lock:
            return [copy.deepcopy(h) for h in self._records.hooks.values()]

    def record_scan(self, body: dict[str, Any]) -> StoredScan:
        """Store an app scan; `setVoided` voids the pass it names (by id or barcode)."""
        with self._lock:
            reference = _opt_str(body.get("passId")) or _opt_str(body.get("scannedBarcodeValue"))
            target = self._live_v1(reference) if reference else None
            if target is not None and body.get("setVoided") is True:
                target.voided = True
                target.modified_ms = self._now_ms()
                self._save("pass", target.identifier, target)
            scan = StoredScan(
                str(uuid.uuid4()),
                copy.deepcopy(body),
                target.identifier if target else None,
                self._now_ms(),
            )
            self._records.scans[scan.identifier] = scan
            self._save("scan", scan.identifier, scan)
            return copy.deepcopy(scan)

    def scans(self) -> list[StoredScan]:
        with self._lock:
            return [copy.deepcopy(s) for s in self._records.scans.values()]

    def push(self, identifier: str, text: str) -> StoredPass:
        """Record a push to a live pass; PassVoided when it is no longer active."""
        with self._lock:
            stored = self._live_v1(identifier)
            if stored.voided:
                raise PassVoided(identifier)
            entry = StoredPush(stored.identifier, text, self._now_ms())
            self._records.pushes.append(entry)
            self._save("push", f"{len(self._records.pushes):09d}", entry)
            return copy.deepcopy(stored)

    def pushes(self) -> list[StoredPush]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._records.pushes]

    # -- writes ------------------------------------------------------------------------------

    def create(self, data: dict[str, Any], *, unknown: str = "reject") -> StoredPass:
        """Store a pass from a v3 create `data` object, applying the uniqueness guard; a
        property the template lacks is refused (UnknownProperties) or, `unknown="ignore"`,
        dropped."""
        known, props = split_data(data)
        template_id = str(known.get("templateId") or "")
        upid = _opt_str(known.get("userProvidedId"))
        with self._lock:
            if self.template_name(template_id) is None:
                raise UnknownTemplate(template_id)
            props = self._properties(template_id, props, unknown)
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
            self._save("pass", stored.identifier, stored)
            return copy.deepcopy(stored)

    def patch(
        self, identifier: str, data: dict[str, Any], *, by_upid: bool, unknown: str = "reject"
    ) -> StoredPass:
        """Merge: properties not sent are kept."""
        return self._write(identifier, data, by_upid=by_upid, replace=False, unknown=unknown)

    def replace(
        self, identifier: str, data: dict[str, Any], *, by_upid: bool, unknown: str = "reject"
    ) -> StoredPass:
        """Full update: properties not sent are dropped (the real API's POST pitfall)."""
        return self._write(identifier, data, by_upid=by_upid, replace=True, unknown=unknown)

    def delete(self, identifier: str, *, by_upid: bool) -> StoredPass:
        with self._lock:
            stored = self._live_v3(identifier, by_upid=by_upid)
            stored.deleted = True
            stored.modified_ms = self._now_ms()
            self._save("pass", stored.identifier, stored)
            return copy.deepcopy(stored)

    def set_voided(self, identifier: str, voided: bool) -> StoredPass:
        with self._lock:
            stored = self._live_v1(identifier)
            stored.voided = voided
            stored.modified_ms = self._now_ms()
            self._save("pass", stored.identifier, stored)
            return copy.deepcopy(stored)

    def delete_externally(self, identifier: str) -> StoredPass:
        """Delete as if someone used the Passcreator UI: the next PATCH gets 404."""
        return self.delete(identifier, by_upid=False)

    def reset(self) -> None:
        """Empty everything and seed the configured templates again."""
        with self._lock:
            self._passes.clear()
            self._records = Records()
            self._seq = 0
            if self._disk is not None:
                self._disk.clear()
            self._seed()

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
        self, identifier: str, data: dict[str, Any], *, by_upid: bool, replace: bool, unknown: str
    ) -> StoredPass:
        known, props = split_data(data)
        with self._lock:
            stored = self._live_v3(identifier, by_upid=by_upid)
            target = str(known.get("templateId") or "")
            if not self.template_name(target):
                target = stored.template_id
            props = self._properties(target, props, unknown)
            if replace:
                stored.fields = copy.deepcopy(props)
            else:
                stored.fields.update(copy.deepcopy(props))
            if "userProvidedId" in known:
                stored.user_provided_id = _opt_str(known["userProvidedId"])
            if known.get("barcodeValue"):
                stored.barcode_value = str(known["barcodeValue"])
            if "templateId" in known and self.template_name(str(known["templateId"])):
                stored.template_id = str(known["templateId"])
            stored.modified_ms = self._now_ms()
            self._save("pass", stored.identifier, stored)
            return copy.deepcopy(stored)

    def _properties(self, template_id: str, props: dict[str, Any], unknown: str) -> dict[str, Any]:
        """`props` keyed by property name (a property id is accepted for its name); those the
        template lacks raise UnknownProperties, or are dropped with unknown="ignore". A
        template whose record is gone (its passes outlive it) checks nothing."""
        template = self._records.templates.get(template_id)
        if template is None:
            return props
        names = template_properties(template)
        by_id = {property_id_for(template.identifier, n): n for n in names}
        out: dict[str, Any] = {}
        missing = []
        for key, value in props.items():
            name = key if key in names else by_id.get(key)
            if name is None:
                missing.append(key)
            else:
                out[name] = value
        if missing and unknown == "reject":
            raise UnknownProperties(template.name, missing)
        return out

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

    def _live_template(self, template_id: str) -> StoredTemplate:
        found = self._records.templates.get(template_id)
        if found is None or found.deleted:
            raise UnknownTemplate(template_id)
        return found

    def _save(self, kind: str, key: str, record: Any) -> None:
        if self._disk is not None:
            self._disk.save(kind, key, record)

    def _restore(self, kind: str, body: dict[str, Any]) -> None:
        """Put one row read from disk back (start-up only, no lock needed)."""
        if kind == "pass":
            stored = StoredPass(**body)
            self._passes[stored.identifier] = stored
            self._seq = max(self._seq, stored.seq)
        elif kind == "template":
            self._records.templates[body["identifier"]] = StoredTemplate(**body)
        elif kind == "hook":
            self._records.hooks[body["identifier"]] = StoredHook(**body)
        elif kind == "scan":
            self._records.scans[body["identifier"]] = StoredScan(**body)
        elif kind == "push":
            self._records.pushes.append(StoredPush(**body))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


class _Disk:
    """The optional SQLite copy: one JSON row per record, written through on every change."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS record (kind TEXT, key TEXT, body TEXT, "
            "PRIMARY KEY (kind, key))"
        )

    def load(self, store: SandboxStore) -> bool:
        """Restore every row into `store`; False when the file held nothing yet."""
        rows = self._db.execute("SELECT kind, body FROM record ORDER BY rowid").fetchall()
        for kind, body in rows:
            store._restore(kind, json.loads(body))
        return bool(rows)

    def save(self, kind: str, key: str, record: Any) -> None:
        body = json.dumps(dataclasses.asdict(record))
        self._db.execute(
            "INSERT INTO record (kind, key, body) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            (kind, key, body),
        )

    def clear(self) -> None:
        self._db.execute("DELETE FROM record")


def _by_age(stored: StoredPass) -> tuple[int, int]:
    return stored.sort_key()


def _opt_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)
