"""Claim leases: the living attempt renews its pass claims, so a dead one's lapse quickly.

A claim on a pass (pass_mappings.claim_token/claim_expires_at) lasts `sync.claim_seconds`.
While an attempt runs, a daemon thread of its process renews the claim every third of that
(`heartbeat`), with its own short transaction; a worker that dies stops renewing, and its
passes are free again at most `claim_seconds` after its last renewal.

Never two attempts on one pass: the renewal only extends a claim whose token is still ours,
and before every provider call the attempt checks, on its own monotonic clock, that its lease
has not run out (a renewal that failed, e.g. the database was unreachable, leaves it running
out). A lease that ran out stops the attempt with ClaimLostError before the next call; the
record step checks the token again (a fence), so a late result is never recorded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine, update

from worker.db import utcnow
from worker.sync.models import PassMapping

log = logging.getLogger("passsync.sync.lease")

# Renewals per lease: with three, two renewals in a row may fail before a lease lapses.
RENEWALS_PER_LEASE = 3


def heartbeat_seconds(claim_seconds: float) -> float:
    """How often a running attempt renews its claims (a third of the lease)."""
    return claim_seconds / RENEWALS_PER_LEASE


@dataclass
class Lease:
    """The claims of one attempt: (mapping id, token) pairs and the local view of the expiry."""

    engine: Engine
    claims: list[tuple[int, str]]
    seconds: float
    deadline: float  # time.monotonic() at which the lease may have lapsed in the database
    lost: bool = False
    renewed: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def valid(self) -> bool:
        """Whether the claims are surely still ours (no other attempt can have taken them)."""
        return not self.lost and self.remaining() > 0

    def renew(self) -> None:
        """Extend every claim still ours; marks the lease lost when one was taken over."""
        started = time.monotonic()
        expires = utcnow() + timedelta(seconds=self.seconds)
        with self.engine.begin() as conn:
            for mapping_id, token in self.claims:
                changed = conn.execute(
                    update(PassMapping)
                    .where(PassMapping.id == mapping_id, PassMapping.claim_token == token)
                    .values(claim_expires_at=expires)
                ).rowcount
                if changed != 1:
                    self.lost = True
        self.deadline = started + self.seconds
        self.renewed = started


class LeaseKeeper:
    """One renewal thread per process for the leases of the attempts running in it."""

    def __init__(self, claim_seconds: float) -> None:
        self.seconds = claim_seconds
        self.heartbeat = heartbeat_seconds(claim_seconds)
        self._by_id: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = -1

    def start_lease(self, engine: Engine, claims: list[tuple[int, str]], since: float) -> Lease:
        """A lease on claims taken at monotonic time `since` (before their commit)."""
        return Lease(engine, claims, self.seconds, deadline=since + self.seconds, renewed=since)

    @contextmanager
    def renewing(self, lease: Lease) -> Iterator[Lease]:
        """Renew `lease` in the background while the block runs."""
        self._ensure_thread()
        key = id(lease)
        with self._lock:
            self._by_id[key] = lease
        self._wake.set()
        try:
            yield lease
        finally:
            with self._lock:
                self._by_id.pop(key, None)

    def _ensure_thread(self) -> None:
        # A forked pool process inherits no threads: each process starts its own.
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._by_id.clear()
        thread = threading.Thread(target=self._loop, name="passsync-lease", daemon=True)
        thread.start()

    def _loop(self) -> None:
        while True:
            self._wake.wait(timeout=min(1.0, self.heartbeat / 2))
            self._wake.clear()
            with self._lock:
                due = [
                    lease
                    for lease in self._by_id.values()
                    if time.monotonic() - lease.renewed >= self.heartbeat and not lease.lost
                ]
            for lease in due:
                try:
                    lease.renew()
                except Exception as exc:  # the attempt sees its lease run out and stops
                    log.warning("could not renew a pass claim: %s", type(exc).__name__)
