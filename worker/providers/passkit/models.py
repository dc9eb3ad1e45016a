"""PassKit Members JSON shapes (protojson names) and the mapping from a rule's flat fields.

A rule gives flat fields. They become a `Member` like this (docs/passkit.md):
- `points`, `secondaryPoints`, `tierPoints`, `expiryDate`, `optOut`, `notes`,
  `groupingIdentifier`, `profileImage` are member fields;
- the `Person` fields (`forename`, `surname`, `displayName`, `emailAddress`, `mobileNumber`, ...)
  go into `person` (also written `person.emailAddress`);
- everything else goes into `metaData` as a string (also written `metaData.segment`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

MEMBER_FIELDS = frozenset(
    {
        "points",
        "secondaryPoints",
        "tierPoints",
        "expiryDate",
        "optOut",
        "notes",
        "groupingIdentifier",
        "profileImage",
    }
)
POINT_FIELDS = ("points", "secondaryPoints", "tierPoints")
PERSON_FIELDS = frozenset(
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
    }
)
# Statuses and pass states that mean the pass no longer works (our "voided").
VOID_STATUSES = frozenset({"EXPIRED", "DELETED"})
VOID_PASS_STATES = frozenset({"PASS_INVALIDATED"})


@dataclass
class MemberFields:
    """A rule's flat fields split into the parts of a `Member`."""

    member: dict[str, Any] = field(default_factory=dict)
    person: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        """The fields as Member JSON (only the parts that hold something)."""
        out = dict(self.member)
        if self.person:
            out["person"] = dict(self.person)
        if self.meta:
            out["metaData"] = dict(self.meta)
        return out

    def falsey(self) -> list[str]:
        """Names of values a PATCH-style update would silently ignore (0, "", false)."""
        names = [f"person.{k}" for k, v in self.person.items() if _is_falsey(v)]
        names += [f"metaData.{k}" for k, v in self.meta.items() if v == ""]
        names += [k for k, v in self.member.items() if _is_falsey(v)]
        return names


def _is_falsey(value: Any) -> bool:
    return value is None or value is False or value == "" or (_is_number(value) and value == 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def split_fields(fields: dict[str, Any]) -> MemberFields:
    """Sort flat rule fields into member, person and metaData parts."""
    out = MemberFields()
    for name, value in fields.items():
        if name.startswith("person."):
            out.person[name.removeprefix("person.")] = value
        elif name.startswith("metaData."):
            out.meta[name.removeprefix("metaData.")] = _text(value)
        elif name in PERSON_FIELDS:
            out.person[name] = value
        elif name in MEMBER_FIELDS:
            out.member[name] = value
        else:
            out.meta[name] = _text(value)
    return out


def _text(value: Any) -> str:
    """metaData is a string map: booleans as true/false, None as ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flatten_member(member: dict[str, Any]) -> dict[str, Any]:
    """A member's readable fields as flat names (the inverse of split_fields)."""
    flat: dict[str, Any] = {}
    person = member.get("person")
    if isinstance(person, dict):
        flat.update({k: v for k, v in person.items() if k in PERSON_FIELDS})
    for name in MEMBER_FIELDS:
        if name in member:
            flat[name] = member[name]
    meta = member.get("metaData")
    if isinstance(meta, dict):
        flat.update({str(k): v for k, v in meta.items() if str(k) not in flat})
    return flat


class Member(BaseModel):
    """The Member fields passsync reads; protojson omits zero values, so all are optional."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    externalId: str | None = None
    programId: str | None = None
    tierId: str | None = None
    status: str | int | None = None
    expiryDate: str | None = None
    passMetaData: dict[str, Any] | None = None

    def voided(self, now: datetime | None = None) -> bool:
        """Expired, deleted or invalidated: the pass has lost its barcode."""
        if isinstance(self.status, str) and self.status in VOID_STATUSES:
            return True
        state = (self.passMetaData or {}).get("status")
        if isinstance(state, str) and state in VOID_PASS_STATES:
            return True
        expiry = parse_timestamp(self.expiryDate)
        return expiry is not None and expiry <= (now or datetime.now(UTC))


class MemberPoints(BaseModel):
    """Answer of the points calls."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    externalId: str | None = None
    programId: str | None = None
    points: float = 0.0
    secondaryPoints: float = 0.0
    tierPoints: int = 0


class Program(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str = ""


class Tier(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    name: str = ""
    programId: str | None = None
    tierIndex: int = 0


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 protojson Timestamp; None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as protojson writes a Timestamp."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# The member fields a rule can set by name, with their JSON types; any other name is a
# metaData entry (a string), so no rule field is ever refused for its name.
FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(sorted(PERSON_FIELDS - {"otherNames", "dateOfBirth"}), "text"),
    "otherNames": "list",
    "dateOfBirth": "date",
    "points": "number",
    "secondaryPoints": "number",
    "tierPoints": "integer",
    "expiryDate": "datetime",
    "optOut": "boolean",
    "notes": "text",
    "groupingIdentifier": "text",
    "profileImage": "text",
}


def template_fields() -> list[tuple[str, str]]:
    """(name, type) of every member field a program's tier takes (none is required)."""
    return sorted(FIELD_TYPES.items())
