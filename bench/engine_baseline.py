"""The hand-written worker `bench.engine` compares passsync with: what a team writes first.

One Celery task per customer event: look the pass up by its userProvidedId, then create it or
update it, over httpx, with acks_late. No ledger, no claims, no exactly-once, no ordering:
a redelivered or reordered task writes again. Run as `celery -A bench.engine_baseline worker`
with BENCH_BASELINE_BROKER, BENCH_BASELINE_PROVIDER, BENCH_BASELINE_KEY and
BENCH_BASELINE_TEMPLATE in the environment.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

app = Celery("bench_baseline", broker=os.environ.get("BENCH_BASELINE_BROKER", "memory://"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)

_clients: dict[int, httpx.Client] = {}


def client() -> httpx.Client:
    """One keep-alive client per worker process (built after the fork)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = httpx.Client(
            base_url=os.environ["BENCH_BASELINE_PROVIDER"],
            headers={"Authorization": os.environ["BENCH_BASELINE_KEY"]},
            timeout=30,
        )
    return _clients[pid]


@app.task(name="bench.sync_customer", acks_late=True)
def sync_customer(customer_id: str, fields: dict[str, Any]) -> str:
    """Check, then create or update: two provider calls per event."""
    upid = f"loyalty-{customer_id}"
    http = client()
    found = http.get(f"/api/pass/{upid}")
    if found.status_code == 404:
        body = {
            "templateId": os.environ["BENCH_BASELINE_TEMPLATE"],
            "userProvidedId": upid,
            **fields,
        }
        http.post("/api/v3/pass", params={"async": "false"}, json={"data": body}).raise_for_status()
        return "created"
    found.raise_for_status()
    identifier = found.json()["identifier"]
    http.patch(f"/api/v3/pass/{identifier}", json={"data": fields}).raise_for_status()
    return "updated"
