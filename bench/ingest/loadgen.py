"""A load generator for the ingest benchmark: signed canonical events over keep-alive HTTP/1.1.

Run as its own process (`python -m bench.ingest.loadgen ...`) so that it never shares an
interpreter with the server it measures. It speaks raw HTTP/1.1 over asyncio streams: no
client library sits between the socket and the clock, so one process drives several thousand
requests per second.

Two modes:
- `saturate`: N connections, each sends its next request as soon as the previous answer
  arrives (closed loop). The achieved rate is the server's saturation rate.
- `rate`: requests are scheduled at a fixed rate (open loop); latency is measured from each
  request's *scheduled* time, so a stalled server is charged for the requests it delayed
  (no coordinated omission).

The result (JSON on stdout) holds the counts, the rate, latency percentiles and, with
`--ids-file`, the ids of every event answered 202 (for the ledger check).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class Tally:
    requests: int = 0
    events_accepted: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    accepted_ids: list[str] = field(default_factory=list)


class Requests:
    """Builds signed request bytes for unique events; one body shape per run.

    `sender` standard: canonical events with Standard Webhooks headers. `shopify`: a Shopify
    `customers/update` as Shopify sends it (the REST customer resource, base64 HMAC-SHA256 of
    the raw body in X-Shopify-Hmac-Sha256 with the secret as is, a unique X-Shopify-Event-Id).
    """

    def __init__(  # noqa: PLR0917 - the command line's options, in order
        self, host: str, path: str, secret: str, batch: int, tag: str, sender: str = "standard"
    ) -> None:
        self.host = host
        self.path = path
        self.sender = sender
        self.secret = secret
        self.key = base64.b64decode(secret.removeprefix("whsec_")) if sender == "standard" else b""
        self.batch = batch
        self.tag = tag
        self.seq = 0
        # Thirty seconds in the past: well inside the receiver's tolerance and never "future".
        self.occurred = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()

    def _event(self, event_id: str) -> str:
        customer = f"c{int(event_id.rsplit('-', 1)[1]) % 5000}"
        return (
            f'{{"id":"{event_id}","type":"customer.updated","occurred_at":"{self.occurred}",'
            f'"customer":{{"id":"{customer}","email":"{customer}@example.test",'
            f'"first_name":"Ada","attributes":{{"tier":"gold","points":120}}}}}}'
        )

    def _shopify(self) -> tuple[bytes, list[str]]:
        self.seq += 1
        event_id = f"{self.tag}-{self.seq}"
        customer = 100000000000000000 + self.seq % 5000
        raw = (
            f'{{"id":{customer},"email":"c{customer}@example.test","created_at":"{self.occurred}",'
            f'"updated_at":"{self.occurred}","first_name":"Ada","last_name":"Lovelace",'
            f'"orders_count":3,"state":"enabled","total_spent":"120.00","phone":null,'
            f'"tags":"gold","admin_graphql_api_id":"gid://shopify/Customer/{customer}"}}'
        ).encode()
        mac = hmac.new(self.secret.encode(), raw, hashlib.sha256).digest()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"X-Shopify-Topic: customers/update\r\n"
            f"X-Shopify-Hmac-Sha256: {base64.b64encode(mac).decode()}\r\n"
            f"X-Shopify-Shop-Domain: bench.myshopify.com\r\nX-Shopify-API-Version: 2025-10\r\n"
            f"X-Shopify-Webhook-Id: wh-{event_id}\r\nX-Shopify-Event-Id: {event_id}\r\n"
            f"X-Shopify-Triggered-At: {self.occurred}\r\n\r\n"
        )
        # The ledger keys a Shopify event as "<event id>:<topic>".
        return head.encode() + raw, [f"{event_id}:customers/update"]

    def next(self) -> tuple[bytes, list[str]]:
        if self.sender == "shopify":
            return self._shopify()
        ids = []
        for _ in range(self.batch):
            self.seq += 1
            ids.append(f"{self.tag}-{self.seq}")
        if self.batch == 1:
            body = self._event(ids[0])
        else:
            body = '{"events":[' + ",".join(self._event(i) for i in ids) + "]}"
        raw = body.encode()
        msg_id = f"msg_{ids[0]}"
        ts = str(int(time.time()))
        mac = hmac.new(self.key, f"{msg_id}.{ts}.".encode() + raw, hashlib.sha256).digest()
        signature = "v1," + base64.b64encode(mac).decode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
            f"webhook-id: {msg_id}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: {signature}\r\n\r\n"
        )
        return head.encode() + raw, ids


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    *,
    ids: list[str],
    started: float,
    tally: Tally,
    keep_ids: bool,
) -> None:
    writer.write(request)
    status, body = await _read_response(reader)
    tally.latencies.append(time.perf_counter() - started)
    tally.requests += 1
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    if 200 <= status < 300:  # 202 from the standard receiver, 200 for a sender's format
        accepted = json.loads(body).get("accepted", len(ids))
        tally.events_accepted += accepted
        if keep_ids:
            tally.accepted_ids.extend(ids)


async def saturate(
    args: argparse.Namespace, requests: Requests, tally: Tally, keep_ids: bool
) -> float:
    stop_at = time.perf_counter() + args.duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(args.host, args.port)
        try:
            while time.perf_counter() < stop_at:
                request, ids = requests.next()
                started = time.perf_counter()
                await _exchange(
                    reader,
                    writer,
                    request,
                    ids=ids,
                    started=started,
                    tally=tally,
                    keep_ids=keep_ids,
                )
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(args.connections)))
    return time.perf_counter() - started


async def fixed_rate(
    args: argparse.Namespace, requests: Requests, tally: Tally, keep_ids: bool
) -> float:
    interval = 1.0 / args.rate
    total = int(args.rate * args.duration)
    slots: asyncio.Queue[float | None] = asyncio.Queue()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(args.host, args.port)
        try:
            while (scheduled := await slots.get()) is not None:
                request, ids = requests.next()
                await _exchange(
                    reader,
                    writer,
                    request,
                    ids=ids,
                    started=scheduled,
                    tally=tally,
                    keep_ids=keep_ids,
                )
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(args.connections)]
    started = time.perf_counter()
    for n in range(total):
        scheduled = started + n * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        slots.put_nowait(scheduled)
    for _ in workers:
        slots.put_nowait(None)
    await asyncio.gather(*workers)
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/crm")
    parser.add_argument("--secret", default=os.environ.get("LOADGEN_SECRET", ""))
    parser.add_argument("--mode", choices=["saturate", "rate"], default="saturate")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--tag", default="ev")
    parser.add_argument("--sender", choices=["standard", "shopify"], default="standard")
    parser.add_argument("--ids-file", default=None)
    args = parser.parse_args(argv)
    requests = Requests(
        f"{args.host}:{args.port}", args.path, args.secret, args.batch, args.tag, args.sender
    )
    tally = Tally()
    keep = args.ids_file is not None
    run = saturate if args.mode == "saturate" else fixed_rate
    cpu0 = time.process_time()
    elapsed = asyncio.run(run(args, requests, tally, keep))
    if args.ids_file:
        with open(args.ids_file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(tally.accepted_ids))
    result = {
        "mode": args.mode,
        "batch": args.batch,
        "requests": tally.requests,
        "events_accepted": tally.events_accepted,
        "statuses": tally.statuses,
        "elapsed": elapsed,
        "requests_per_second": tally.requests / elapsed,
        "events_per_second": tally.events_accepted / elapsed,
        "p50_ms": percentile(tally.latencies, 0.50) * 1000,
        "p99_ms": percentile(tally.latencies, 0.99) * 1000,
        "loadgen_cpu_seconds": time.process_time() - cpu0,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
