"""Reconciliation's view of a Passcreator account: its passes, page by page."""

from __future__ import annotations

from itertools import islice
from typing import Any

from worker.providers.passcreator.models import PassRow
from worker.providers.port import CatalogPass, Page, TakeSlot


class PasscreatorCatalog:
    """Passes newest first; the cursor is how many were read in this sweep.

    The client follows Passcreator's own keyset links (`page.next`) but does not expose
    them, so a run re-reads the pages before its cursor; each page read takes a slot from
    the account's shared budget (`take_slot`, in the bulk lane: realtime sync goes first).
    """

    def __init__(self, client: Any, take_slot: TakeSlot | None) -> None:
        self._client = client
        self._take_slot = take_slot

    def page(self, cursor: str | None, size: int) -> Page:
        offset = int(cursor or 0)
        if self._take_slot is not None:
            for _ in range(offset // size + 1):
                self._take_slot()
        rows = list(islice(self._client.iter_passes(page_size=size), offset, offset + size + 1))
        more = len(rows) > size
        return Page([_catalog(r) for r in rows[:size]], str(offset + size) if more else None)


def _catalog(row: PassRow) -> CatalogPass:
    return CatalogPass(
        pass_id=row.pass_id,
        user_provided_id=row.user_provided_id,
        template_id=row.template_id,
        voided=bool(row.voided),
        barcode=row.barcode_value,
        active_devices=row.active_devices,
    )
