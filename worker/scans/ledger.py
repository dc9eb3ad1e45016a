"""Record scans in the ledger: one row per (source, scan id), duplicates counted, not stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from worker.db import utcnow
from worker.scans.models import Scan, ScanStatus
from worker.scans.schema import ScanIn


@dataclass(frozen=True)
class Recorded:
    new_ids: list[int]
    duplicates: int


def record_scans(session: Session, source: str, scans: list[ScanIn]) -> Recorded:
    """Insert the scans not seen before (arbitrated by the unique key); the caller commits."""
    new_ids: list[int] = []
    for scan in scans:
        row_id = session.execute(_insert(session, source, scan)).scalar_one_or_none()
        if row_id is not None:
            new_ids.append(row_id)
    return Recorded(new_ids=new_ids, duplicates=len(scans) - len(new_ids))


def _insert(session: Session, source: str, scan: ScanIn) -> Executable:
    values = {
        "source": source,
        "scan_id": scan.id,
        "scanned_at": scan.scanned_at,
        "barcode": scan.barcode,
        "provider_pass_id": scan.pass_id,
        "customer_id": scan.customer_id,
        "pass_key": scan.pass_key,
        "location": scan.location,
        "amount": scan.amount,
        "attributes": scan.attributes,
        "status": ScanStatus.PENDING,
        "received_at": utcnow(),
    }
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement: Executable = (
        dialect.insert(Scan)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["source", "scan_id"])
        .returning(Scan.id)
    )
    return statement


def pending_scan_ids(session: Session, received_before: datetime, limit: int = 500) -> list[int]:
    """Scans received before `received_before` that no worker finished (to republish)."""
    query = select(Scan.id).where(
        Scan.status.in_([ScanStatus.PENDING, ScanStatus.APPLYING]),
        Scan.received_at < received_before,
    )
    return list(session.scalars(query.order_by(Scan.id).limit(limit)))
