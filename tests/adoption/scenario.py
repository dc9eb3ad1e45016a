"""A seeded adoption scenario: passes, installs, a removal, scans, a campaign."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from worker.adoption.models import PassAdoption
from worker.campaigns.models import Campaign, CampaignRecipient
from worker.db import Database
from worker.scans.models import PassUsage, Scan
from worker.sync.models import PassMapping, PassStatus

DAY1 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)

# customer, pass key, pass id, issued, (platform, devices now, installs) or None
PASSES = [
    ("cus_1", "loyalty", "P1", DAY1, ("ios", 1, 1)),
    ("cus_2", "loyalty", "P2", DAY1, ("ios", 0, 1)),  # installed, then removed
    ("cus_3", "loyalty", "P3", DAY2, ("android", 1, 1)),
    ("cus_4", "welcome", "P4", DAY2, None),  # never saved
]
# pass id, location, scans
SCANS = [("P1", "Berlin Mitte", 3), ("P3", "Hamburg", 1)]
EXPECTED = {"known": 4, "issued": 4, "downloaded": 3, "installed": 2, "used": 2, "removed": 1}


def seed(db: Database) -> None:
    """Write the scenario (idempotent only on an empty database)."""
    with db.session() as session:
        ids: dict[str, int] = {}
        for customer, key, pass_id, issued, adoption in PASSES:
            mapping = PassMapping(
                provider="passcreator",
                customer_id=customer,
                pass_key=key,
                user_provided_id=f"passsync-{key}-{customer}",
                provider_pass_id=pass_id,
                template_id=f"tpl-{key}",
                status=PassStatus.ACTIVE,
                created_at=issued,
            )
            session.add(mapping)
            session.flush()
            ids[pass_id] = mapping.id
            if adoption is not None:
                platform, active, installs = adoption
                session.add(
                    PassAdoption(
                        provider_pass_id=pass_id,
                        platform=platform,
                        active_devices=active,
                        installs=installs,
                        removals=installs - active,
                        seen_sweep=0,
                        first_installed_at=issued + timedelta(minutes=30),
                        removed_at=issued + timedelta(hours=5) if active == 0 else None,
                    )
                )
        _scans(session, ids)
        _campaign(session)


def _scans(session: Session, ids: dict[str, int]) -> None:
    number = 0
    for pass_id, location, count in SCANS:
        for _ in range(count):
            number += 1
            session.add(
                Scan(
                    source="pos",
                    scan_id=f"scan-{number}",
                    scanned_at=DAY2,
                    provider_pass_id=pass_id,
                    location=location,
                    attributes={},
                    status="accepted",
                    mapping_id=ids[pass_id],
                )
            )
        session.add(
            PassUsage(
                mapping_id=ids[pass_id],
                uses=count,
                visits=count,
                points=0.0,
                first_used_at=DAY2,
                last_used_at=DAY2,
            )
        )


def _campaign(session: Session) -> None:
    campaign = Campaign(
        name="Winter welcome", status="running", event_type="customer.created", total=4
    )
    session.add(campaign)
    session.flush()
    for i, state in enumerate(("done", "done", "skipped", "pending"), start=1):
        session.add(
            CampaignRecipient(
                campaign_id=campaign.id, line=i, customer_id=f"cus_{i}", payload={}, state=state
            )
        )
