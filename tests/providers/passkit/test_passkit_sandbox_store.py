"""The PassKit sandbox store: uniqueness, and the optional SQLite copy across restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from worker.providers.passkit.sandbox.store import (
    Duplicate,
    NotFound,
    SandboxStore,
    base62_id,
    program_id_for,
)

PROGRAMS = {"Loyalty Card": ["Base", "Gold"]}
LOYALTY = program_id_for("Loyalty Card")
SINK = {
    "classId": LOYALTY,
    "passEventId": ["PASS_EVENT_INSTALLED"],
    "configuration": json.dumps({"targetUrl": "http://127.0.0.1:9/hook"}),
}


def test_ids_are_22_base62_characters_and_program_ids_stable() -> None:
    assert len(base62_id(2**128 - 1)) == 22
    assert program_id_for("Loyalty Card") == program_id_for("Loyalty Card")
    assert program_id_for("Loyalty Card") != program_id_for("Event Ticket")


def test_members_and_sinks_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sandbox" / "passkit.db"
    store = SandboxStore(PROGRAMS, path=path)
    kept = store.enrol({"programId": LOYALTY, "tierId": "gold", "externalId": "c-1"})
    store.points("earn", {"id": kept.id, "points": 12})
    gone = store.enrol({"programId": LOYALTY, "tierId": "base", "externalId": "c-2"})
    store.delete({"id": gone.id})
    sink = store.add_sink(SINK)

    again = SandboxStore(PROGRAMS, path=path)

    assert again.find(kept.id).data["points"] == 12
    assert again.find_external(LOYALTY, "c-1").id == kept.id
    with pytest.raises(Duplicate):
        again.enrol({"programId": LOYALTY, "tierId": "base", "externalId": "c-1"})
    with pytest.raises(NotFound):
        again.find(gone.id)
    assert again.enrol({"programId": LOYALTY, "tierId": "base", "externalId": "c-2"}).id != gone.id
    assert [s.id for s in again.sinks()] == [sink.id]
    assert [m.seq for m in again.all_members()] == [1, 2, 3]


def test_reset_empties_the_disk_copy_too(tmp_path: Path) -> None:
    path = tmp_path / "passkit.db"
    store = SandboxStore(PROGRAMS, path=path)
    store.enrol({"programId": LOYALTY, "tierId": "base", "externalId": "c-1"})
    store.add_sink(SINK)
    store.reset()
    again = SandboxStore(PROGRAMS, path=path)
    assert (again.all_members(), again.sinks()) == ([], [])


def test_a_deleted_sink_stays_deleted(tmp_path: Path) -> None:
    path = tmp_path / "passkit.db"
    store = SandboxStore(PROGRAMS, path=path)
    sink = store.add_sink(SINK)
    store.delete_sink(sink.id)
    assert SandboxStore(PROGRAMS, path=path).sinks() == []
