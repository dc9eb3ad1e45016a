"""Reconciliation's view of an Airship account: every template's passes, page by page.

The list's per-pass `status` (installed, uninstalled, not_been_installed...) is Airship's
statistics per pass: an installed pass counts one active device, any other none.
"""

from __future__ import annotations

from typing import Any

from worker.providers.airship.models import INSTALLED_STATUSES, is_voided, text
from worker.providers.port import CatalogPass, Page, TakeSlot


class AirshipCatalog:
    """Passes template by template; the cursor is "<template index>:<page>" (1-based pages).

    Each page is one `GET /pass?templateId=&pageSize=&page=` and takes one slot of the
    account's budget first; listing the templates takes one more per page.
    """

    def __init__(self, client: Any, take_slot: TakeSlot | None) -> None:
        self._client = client
        self._take_slot = take_slot

    def page(self, cursor: str | None, size: int) -> Page:
        index, number = _cursor(cursor)
        self._slot()
        templates = [t.template_id for t in self._client.list_templates()]
        while index < len(templates):
            self._slot()
            rows, _ = self._client.list_passes_page(templates[index], page=number, page_size=size)
            passes = [catalog_pass(self._client, row) for row in rows]
            if len(rows) == size:
                return Page(passes, f"{index}:{number + 1}")
            index, number = index + 1, 1
            if passes:
                return Page(passes, f"{index}:1" if index < len(templates) else None)
        return Page([], None)

    def _slot(self) -> None:
        if self._take_slot is not None:
            self._take_slot()


def _cursor(cursor: str | None) -> tuple[int, int]:
    if not cursor:
        return 0, 1
    index, _, number = cursor.partition(":")
    try:
        return max(int(index), 0), max(int(number or 1), 1)
    except ValueError:
        return 0, 1


def catalog_pass(client: Any, row: dict[str, Any]) -> CatalogPass:
    status = row.get("status")
    return CatalogPass(
        pass_id=text(row.get("id")) or "",
        user_provided_id=text(row.get("externalId")),
        template_id=text(row.get("templateId")),
        voided=is_voided(row, client.void_label),
        active_devices=None if not isinstance(status, str) else int(status in INSTALLED_STATUSES),
    )
