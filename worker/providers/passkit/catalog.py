"""Reconciliation's view of a PassKit account: every program's members, page by page."""

from __future__ import annotations

from typing import Any

from worker.providers.port import CatalogPass, Page, TakeSlot


class PassKitCatalog:
    """Members program by program, oldest first; the cursor is "<program index>:<offset>".

    Each page is one `POST /members/member/list/{programId}` (offset paging over the NDJSON
    stream) and takes one slot of the account's budget (`take_slot`) first; listing the
    programs takes one more per page.
    """

    def __init__(self, client: Any, take_slot: TakeSlot | None) -> None:
        self._client = client
        self._take_slot = take_slot

    def page(self, cursor: str | None, size: int) -> Page:
        index, offset = _cursor(cursor)
        self._slot()
        programs = [p.id for p in self._client.list_programs()]
        while index < len(programs):
            self._slot()
            rows = self._client.list_members_page(programs[index], limit=size, offset=offset)
            passes = [catalog_pass(self._client, row) for row in rows]
            if len(rows) == size:
                return Page(passes, f"{index}:{offset + size}")
            index, offset = index + 1, 0
            if passes:
                return Page(passes, f"{index}:0" if index < len(programs) else None)
        return Page([], None)

    def _slot(self) -> None:
        if self._take_slot is not None:
            self._take_slot()


def _cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return 0, 0
    index, _, offset = cursor.partition(":")
    try:
        return max(int(index), 0), max(int(offset or 0), 0)
    except ValueError:
        return 0, 0


def catalog_pass(client: Any, row: dict[str, Any]) -> CatalogPass:
    found = client.to_provider_pass(row)
    return CatalogPass(
        pass_id=found.pass_id,
        user_provided_id=found.user_provided_id,
        template_id=found.template_id,
        voided=found.voided,
    )
