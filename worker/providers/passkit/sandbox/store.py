"""Thread-safe in-memory PassKit programs, tiers, members and messages behind the sandbox."""

from __future__ import annotations

import copy
import json
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker.providers.passkit.sandbox.webhooks import Sink, SinkError, read_sink

# Fixed namespace: the same program name gets the same 22-character id on every run.
PROGRAM_NAMESPACE = uuid.UUID("2d0b7c4e-5a3f-5e1c-8f7a-3c9e6b1d4a20")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 22
# Keys that identify a member or steer the call; never changed by an update.
IDENTITY_KEYS = frozenset({"id", "externalId", "programId", "operation"})
READ_ONLY_KEYS = frozenset({"created", "updated", "status", "passMetaData"})
POINT_KEYS = ("points", "secondaryPoints", "tierPoints")
# Fields of `Member` the sandbox accepts; anything else is a 400, as protojson refuses it.
MEMBER_KEYS = frozenset(
    {
        "id",
        "externalId",
        "groupingIdentifier",
        "tierId",
        "programId",
        "person",
        "metaData",
        "optOut",
        "points",
        "secondaryPoints",
        "tierPoints",
        "expiryDate",
        "status",
        "passOverrides",
        "passMetaData",
        "notes",
        "currentTierAwarded",
        "currentTierExpires",
        "created",
        "updated",
        "profileImage",
        "operation",
    }
)


# Fields of `Person` (a `person` key outside them is unknown to protojson).
PERSON_KEYS = frozenset(
    {
        "surname",
        "forename",
        "otherNames",
        "salutation",
        "suffix",
        "displayName",
        "gender",
        "dateOfBirth",
        "emailAddress",
        "mobileNumber",
        "externalId",
        "externalIds",
    }
)


class StoreError(Exception):
    """Base of the store's refusals; `status` and `code` are HTTP and gRPC."""

    status = 400
    code = 3  # INVALID_ARGUMENT


class NotFound(StoreError):
    status = 404
    code = 5


class Duplicate(StoreError):
    status = 409
    code = 6  # ALREADY_EXISTS


class Invalid(StoreError):
    pass


def base62_id(number: int) -> str:
    """A 22-character PassKit-style id from a 128-bit number."""
    chars = []
    for _ in range(ID_LENGTH):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def program_id_for(name: str) -> str:
    """The deterministic program id the sandbox gives a program name."""
    return base62_id(uuid.uuid5(PROGRAM_NAMESPACE, name).int)


def tier_id_for(name: str) -> str:
    """Tier ids are chosen by the user: lower case, here the name without spaces."""
    return "".join(name.lower().split())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_falsey(value: Any) -> bool:
    """What a PATCH-style update ignores: 0, "", false, null, and empty objects."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    return value is None or value in ("", {}, [])


@dataclass
class StoredProgram:
    id: str
    name: str
    tiers: list[dict[str, Any]]


@dataclass
class StoredMember:
    data: dict[str, Any]
    seq: int
    deleted: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.data["id"])


class SandboxStore:
    """Members unique per (programId, externalId); all methods are thread-safe."""

    def __init__(
        self,
        programs: dict[str, list[str]],
        *,
        path: Path | None = None,
        clock: Callable[[], str] = _now,
    ):
        self._programs_spec = programs
        self._clock = clock
        self._lock = threading.RLock()
        self._disk = _Disk(path) if path is not None else None
        self._empty()
        if self._disk is not None:
            self._disk.load(self)

    def reset(self) -> None:
        """Forget every member and sink (on disk too); the programs stay."""
        with self._lock:
            self._empty()
            if self._disk is not None:
                self._disk.clear()

    def _empty(self) -> None:
        with self._lock:
            self._programs: dict[str, StoredProgram] = {}
            for name, tiers in self._programs_spec.items():
                pid = program_id_for(name)
                rows = [
                    {"id": tier_id_for(t), "name": t, "programId": pid, "tierIndex": i + 1}
                    for i, t in enumerate(tiers)
                ]
                self._programs[pid] = StoredProgram(pid, name, rows)
            self._members: dict[str, StoredMember] = {}
            self._by_external: dict[tuple[str, str], str] = {}
            self._messages: dict[str, dict[str, Any]] = {}
            self._sent: list[dict[str, Any]] = []
            self._sinks: dict[str, Sink] = {}
            self._seq = 0

    # -- programs and tiers ------------------------------------------------------------------

    def programs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": p.id, "name": p.name} for p in self._programs.values()]

    def program(self, program_id: str) -> StoredProgram:
        with self._lock:
            found = self._programs.get(program_id)
        if found is None:
            raise NotFound(f"program {program_id} not found")
        return found

    def tiers(self, program_id: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.program(program_id).tiers)

    def tier(self, program_id: str, tier_id: str) -> dict[str, Any]:
        for tier in self.program(program_id).tiers:
            if tier["id"] == tier_id:
                return dict(tier)
        raise NotFound(f"tier {tier_id} not found in program {program_id}")

    # -- members -----------------------------------------------------------------------------

    def enrol(self, body: dict[str, Any]) -> StoredMember:
        """A new member; Duplicate when the program has the externalId already."""
        _check_keys(body)
        program_id = _text(body.get("programId"))
        tier_id = _text(body.get("tierId"))
        if not program_id or not tier_id:
            raise Invalid("programId and tierId are required")
        external = _text(body.get("externalId"))
        with self._lock:
            self.tier(program_id, tier_id)
            if external and (program_id, external) in self._by_external:
                raise Duplicate(f"member with externalId {external} already exists")
            self._seq += 1
            now = self._clock()
            data = {
                k: copy.deepcopy(v)
                for k, v in body.items()
                if k not in READ_ONLY_KEYS
                and k not in ("id", "operation")
                and (k in POINT_KEYS or not is_falsey(v))
            }
            data.update(
                {
                    "id": base62_id(uuid.uuid4().int),
                    "programId": program_id,
                    "tierId": tier_id,
                    "status": "ENROLLED",
                    "created": now,
                    "updated": now,
                }
            )
            stored = StoredMember(data, self._seq, events=["enrolled"])
            self._members[stored.id] = stored
            if external:
                self._by_external[(program_id, external)] = stored.id
            self._save(stored)
            return stored

    def find(self, member_id: str) -> StoredMember:
        with self._lock:
            stored = self._members.get(member_id)
            if stored is None or stored.deleted:
                raise NotFound(f"member {member_id} not found")
            return stored

    def find_external(self, program_id: str, external_id: str) -> StoredMember:
        with self._lock:
            member_id = self._by_external.get((program_id, external_id))
            if member_id is None:
                raise NotFound(f"member with externalId {external_id} not found")
            return self.find(member_id)

    def resolve(self, body: dict[str, Any], *, id_key: str = "id") -> StoredMember:
        """The member a body names: by `id`, or by `externalId` + `programId`."""
        member_id = _text(body.get(id_key))
        if member_id:
            return self.find(member_id)
        external = _text(body.get("externalId"))
        program_id = _text(body.get("programId"))
        if external and program_id:
            return self.find_external(program_id, external)
        raise Invalid(f"{id_key} or externalId and programId are required")

    def update(self, body: dict[str, Any]) -> StoredMember:
        """PUT /members/member: PATCH (the default) ignores falsey values; PUT sets them."""
        _check_keys(body)
        operation = body.get("operation", "OPERATION_PATCH")
        if operation not in ("OPERATION_PATCH", "OPERATION_PUT", 0, 1, 2):
            raise Invalid(f"unknown operation {operation!r}")
        put = operation in ("OPERATION_PUT", 1)
        with self._lock:
            stored = self.resolve(body)
            if "tierId" in body and not is_falsey(body["tierId"]):
                self.tier(stored.data["programId"], str(body["tierId"]))
            for key, value in body.items():
                if key in IDENTITY_KEYS or key in READ_ONLY_KEYS:
                    continue
                if key in ("person", "metaData") and isinstance(value, dict) and not put:
                    _patch_map(stored.data, key, value)
                elif put or not is_falsey(value):
                    stored.data[key] = copy.deepcopy(value)
            stored.data["updated"] = self._clock()
            stored.events.append("updated")
            self._save(stored)
            return stored

    def delete(self, body: dict[str, Any]) -> StoredMember:
        with self._lock:
            stored = self.resolve(body)
            stored.deleted = True
            stored.events.append("deleted")
            external = stored.data.get("externalId")
            if external:
                self._by_external.pop((stored.data["programId"], external), None)
            self._save(stored)
            return stored

    def points(self, kind: str, body: dict[str, Any]) -> StoredMember:
        """earn / burn / set; amounts must be >= 0, a burn below zero is refused."""
        with self._lock:
            stored = self.resolve(body)
            names = ("points", "secondaryPoints", "tierPoints")
            amounts = {n: _number(body.get(n, 0), n) for n in names}
            current = {n: _number(stored.data.get(n, 0), n) for n in names}
            if kind == "set":
                for n in names:
                    flag = f"reset{n[0].upper()}{n[1:]}"
                    if body.get(flag) is True:
                        current[n] = 0
                    elif amounts[n] != 0:
                        current[n] = amounts[n]
            else:
                sign = 1 if kind == "earn" else -1
                for n in names:
                    current[n] += sign * amounts[n]
                if any(v < 0 for v in current.values()):
                    raise Invalid("insufficient points")
            for n in names:
                # Kept even at 0 (the API view leaves zeros out, as protojson does).
                if n in stored.data or current[n] != 0:
                    stored.data[n] = _whole(current[n])
            stored.data["updated"] = self._clock()
            stored.events.append(f"points_{kind}")
            self._save(stored)
            return stored

    def update_expiry(self, body: dict[str, Any]) -> StoredMember:
        expiry = body.get("expiryDate")
        if not isinstance(expiry, str) or _parse_time(expiry) is None:
            raise Invalid("expiryDate must be an RFC 3339 timestamp")
        with self._lock:
            stored = self.resolve(body)
            stored.data["expiryDate"] = expiry
            stored.data["updated"] = self._clock()
            stored.events.append("expiry")
            self._save(stored)
            return stored

    def members(self, program_id: str) -> list[StoredMember]:
        """The program's live members, oldest first (the order a list streams them in)."""
        self.program(program_id)
        with self._lock:
            rows = [m for m in self._members.values() if not m.deleted]
        return sorted((m for m in rows if m.data["programId"] == program_id), key=lambda m: m.seq)

    def all_members(self) -> list[StoredMember]:
        with self._lock:
            return sorted(self._members.values(), key=lambda m: m.seq)

    def delete_externally(self, member_id: str) -> StoredMember:
        """As if someone deleted the member in PassKit's portal."""
        return self.delete({"id": member_id})

    # -- messages ----------------------------------------------------------------------------

    def create_message(self, body: dict[str, Any]) -> str:
        if not _text(body.get("title")) and not _text(body.get("plainTextContent")):
            raise Invalid("a message needs a title or plainTextContent")
        with self._lock:
            message_id = base62_id(uuid.uuid4().int)
            self._messages[message_id] = copy.deepcopy(body)
            return message_id

    def send_message(self, body: dict[str, Any]) -> int:
        message_id = _text(body.get("messageId"))
        pass_ids = body.get("passIds")
        ids = pass_ids.get("ids") if isinstance(pass_ids, dict) else None
        if not isinstance(ids, list) or not ids:
            raise Invalid("passIds.ids is required")
        with self._lock:
            message = self._messages.get(message_id or "")
            if message is None:
                raise NotFound(f"message {message_id} not found")
            for pass_id in ids:
                self.find(str(pass_id))
            for pass_id in ids:
                self._sent.append({"messageId": message_id, "passId": str(pass_id), **message})
            return len(ids)

    def sent_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._sent)

    # -- webhook sinks -----------------------------------------------------------------------

    def add_sink(self, body: dict[str, Any]) -> Sink:
        """A new subscription (create is not idempotent: a repeat makes a second one)."""
        sink = self._read_sink(body, base62_id(uuid.uuid4().int))
        with self._lock:
            self._sinks[sink.id] = sink
            self._save_sink(sink)
        return sink

    def update_sink(self, body: dict[str, Any]) -> Sink:
        sink_id = _text(body.get("id"))
        if not sink_id:
            raise Invalid("id is required")
        self.sink(sink_id)
        sink = self._read_sink(body, sink_id)
        with self._lock:
            self._sinks[sink_id] = sink
            self._save_sink(sink)
        return sink

    def _read_sink(self, body: dict[str, Any], sink_id: str) -> Sink:
        try:
            sink = read_sink(body, sink_id)
        except SinkError as exc:
            raise Invalid(str(exc)) from None
        self.program(sink.class_id)
        return sink

    def sink(self, sink_id: str) -> Sink:
        with self._lock:
            found = self._sinks.get(sink_id)
        if found is None:
            raise NotFound(f"subscription {sink_id} not found")
        return found

    def delete_sink(self, sink_id: str) -> None:
        self.sink(sink_id)
        with self._lock:
            self._sinks.pop(sink_id, None)
            if self._disk is not None:
                self._disk.delete("sink", sink_id)

    def sinks(self) -> list[Sink]:
        with self._lock:
            return list(self._sinks.values())

    # -- the optional disk copy ----------------------------------------------------------------

    def _save(self, stored: StoredMember) -> None:
        if self._disk is not None:
            body = {"data": stored.data, "seq": stored.seq, "deleted": stored.deleted}
            self._disk.save("member", stored.id, {**body, "events": stored.events})

    def _save_sink(self, sink: Sink) -> None:
        if self._disk is not None:
            self._disk.save("sink", sink.id, sink.body)

    def restore(self, kind: str, key: str, body: dict[str, Any]) -> None:
        """Put one row read from disk back (start-up only)."""
        if kind == "member":
            stored = StoredMember(body["data"], int(body["seq"]), bool(body["deleted"]))
            stored.events = list(body.get("events", []))
            self._members[stored.id] = stored
            self._seq = max(self._seq, stored.seq)
            external = stored.data.get("externalId")
            if external and not stored.deleted:
                self._by_external[(stored.data["programId"], external)] = stored.id
        elif kind == "sink":
            try:
                self._sinks[key] = read_sink(body, key)
            except SinkError:
                return


class _Disk:
    """The optional SQLite copy: one JSON row per member or sink, written on every change."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS record (kind TEXT, key TEXT, body TEXT, "
            "PRIMARY KEY (kind, key))"
        )

    def load(self, store: SandboxStore) -> None:
        rows = self._db.execute("SELECT kind, key, body FROM record ORDER BY rowid").fetchall()
        for kind, key, body in rows:
            store.restore(kind, key, json.loads(body))

    def save(self, kind: str, key: str, body: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO record (kind, key, body) VALUES (?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
            (kind, key, json.dumps(body)),
        )

    def delete(self, kind: str, key: str) -> None:
        self._db.execute("DELETE FROM record WHERE kind = ? AND key = ?", (kind, key))

    def clear(self) -> None:
        self._db.execute("DELETE FROM record")


def known_member_keys(body: dict[str, Any], unknown: str) -> dict[str, Any]:
    """A member body without keys protojson does not know (member and `person` keys):
    `unknown="reject"` raises Invalid naming the first, "ignore" drops them all."""
    person = body.get("person")
    extra = sorted(set(body) - MEMBER_KEYS)
    extra += (
        [f"person.{k}" for k in sorted(set(person) - PERSON_KEYS)]
        if isinstance(person, dict)
        else []
    )
    if not extra:
        return body
    if unknown == "reject":
        raise Invalid(f'proto: unknown field "{extra[0]}"')
    out = {k: v for k, v in body.items() if k in MEMBER_KEYS}
    if isinstance(person, dict):
        out["person"] = {k: v for k, v in person.items() if k in PERSON_KEYS}
    return out


def _check_keys(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - MEMBER_KEYS)
    if unknown:
        # protojson refuses unknown fields; PassKit surfaces that as a 400.
        raise Invalid(f'proto: unknown field "{unknown[0]}"')
    for key in ("person", "metaData"):
        if key in body and not isinstance(body[key], dict):
            raise Invalid(f"proto: syntax error: {key} must be an object")
    meta = body.get("metaData")
    if isinstance(meta, dict) and not all(isinstance(v, str) for v in meta.values()):
        raise Invalid("proto: syntax error: metaData values must be strings")


def _patch_map(data: dict[str, Any], key: str, changes: dict[str, Any]) -> None:
    current = data.get(key)
    merged = dict(current) if isinstance(current, dict) else {}
    merged.update({k: copy.deepcopy(v) for k, v in changes.items() if not is_falsey(v)})
    if merged:
        data[key] = merged


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid(f"{name} must be a number")
    if value < 0:
        raise Invalid(f"{name} must not be negative")
    return float(value)


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def member_view(stored: StoredMember, *, now: datetime | None = None) -> dict[str, Any]:
    """The Member JSON as the API answers it: zero scalars left out (protojson), and status
    EXPIRED once the expiry date has passed."""
    data = {
        k: copy.deepcopy(v)
        for k, v in stored.data.items()
        if not (k in POINT_KEYS or k == "optOut") or not is_falsey(v)
    }
    expiry = data.get("expiryDate")
    when = _parse_time(expiry) if isinstance(expiry, str) else None
    if when is not None and when <= (now or datetime.now(UTC)):
        data["status"] = "EXPIRED"
    return data
