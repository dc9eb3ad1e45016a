"""How a rule's flat fields become a PassKit Member, and back."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.providers.passkit.models import (
    Member,
    flatten_member,
    split_fields,
    template_fields,
)


def test_fields_split_into_member_person_and_metadata() -> None:
    parts = split_fields(
        {
            "points": 5,
            "optOut": False,
            "forename": "Ada",
            "person.mobileNumber": "+447700900000",
            "tier": "gold",
            "metaData.visits": 3,
            "vip": True,
            "nothing": None,
        }
    )
    assert parts.body() == {
        "points": 5,
        "optOut": False,
        "person": {"forename": "Ada", "mobileNumber": "+447700900000"},
        "metaData": {"tier": "gold", "visits": "3", "vip": "true", "nothing": ""},
    }
    assert sorted(parts.falsey()) == ["metaData.nothing", "optOut"]


def test_no_falsey_values_means_a_plain_patch() -> None:
    assert split_fields({"points": 3, "tier": "gold", "forename": "A"}).falsey() == []


def test_a_member_flattens_back_to_rule_fields() -> None:
    member = {
        "id": "m",
        "person": {"forename": "Ada", "externalIds": ["x"]},
        "points": 7,
        "metaData": {"tier": "gold", "points": "shadowed"},
        "status": "ENROLLED",
    }
    assert flatten_member(member) == {"forename": "Ada", "points": 7, "tier": "gold"}


def test_void_state_of_a_member() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert Member(id="m", status="EXPIRED").voided(now) is True
    assert Member(id="m", passMetaData={"status": "PASS_INVALIDATED"}).voided(now) is True
    assert Member(id="m", expiryDate="2026-05-31T23:59:59Z").voided(now) is True
    assert Member(id="m", expiryDate="2036-01-01T00:00:00Z").voided(now) is False
    assert Member(id="m", expiryDate="not a date").voided(now) is False
    assert Member(id="m", status="ENROLLED").voided(now) is False


def test_template_fields_name_the_member_fields() -> None:
    fields = dict(template_fields())
    assert fields["points"] == "number"
    assert fields["emailAddress"] == "text"
    assert fields["optOut"] == "boolean"
    assert "tier" not in fields  # free names go to metaData
