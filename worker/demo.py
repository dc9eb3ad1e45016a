"""`passsync demo`: the embedded stack under a generated CRM workload, checked end to end.

The workload has thousands of signed events for hundreds of customers, with duplicate
deliveries, batches and out-of-order arrivals. After the queue drains, the report is checked
against the provider's own state (the sandbox's inspection endpoint): every accepted event
handled, exactly one pass per customer and pass key, each showing the newest customer data.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from worker.commands.adoption import demo_installs, demo_scans
from worker.config import Settings, load_settings
from worker.db import Database
from worker.inbound.models import EventStatus, InboundEvent
from worker.inbound.schema import CanonicalEvent
from worker.inbound.signatures import SignatureError, WebhookVerifier, sign
from worker.outbox.models import UNFINISHED, OutboxDelivery, OutboxEvent
from worker.providers import registry
from worker.stack import Stack, free_port
from worker.sync.rules import compile_rules, desired_passes, user_provided_id

TIERS = ("bronze", "silver", "gold", "platinum")
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")


@dataclass
class DemoOptions:
    customers: int = 300
    events: int = 3000
    seed: int = 7
    duplicate_share: float = 0.1
    batch_share: float = 0.3
    shuffle_window: int = 40
    senders: int = 8
    provider_rate_per_minute: int = 12_000
    drain_timeout_seconds: float = 600.0
    keep: bool = False
    data_dir: Path | None = None
    # One account of this platform kind (named after it) instead of the configured default.
    provider: str | None = None
    # Two accounts at once: the loyalty card on the first, a member card on the second (two
    # platforms when two registered kinds have a sandbox, else two accounts of one).
    mixed: bool = False


@dataclass
class DemoReport:
    customers: int = 0
    events_generated: int = 0
    deliveries_sent: int = 0
    http_requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected_requests: int = 0
    events_handled: int = 0
    events_failed: int = 0
    events_lost: int = 0
    passes_expected: int = 0
    passes_at_provider: int = 0
    passes_missing: int = 0
    passes_duplicated: int = 0
    passes_wrong_fields: int = 0
    passes_created: int = 0
    passes_updated: int = 0
    provider_calls: int = 0
    provider_429s: int = 0
    outbound_received: int = 0
    outbound_verified: int = 0
    outbound_events: int = 0  # distinct webhook-ids
    outbound_issued: int = 0
    passes_issued_once: int = 0
    passes_issued_twice: int = 0
    passes_not_issued: int = 0
    elapsed_seconds: float = 0.0
    events_per_second: float = 0.0
    # account -> "<passes at its sandbox> passes (<kind>)" (each checked against its own sandbox)
    accounts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.events_lost
            or self.events_failed
            or self.passes_missing
            or self.passes_duplicated
            or self.passes_wrong_fields
            or self.rejected_requests
            or self.outbound_received != self.outbound_verified
            or self.passes_issued_twice
            or self.passes_not_issued
        )


def generate_events(options: DemoOptions) -> list[CanonicalEvent]:
    """Customer lifecycles: one customer.created, then updates (and orders) later in time."""
    rng = random.Random(options.seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    per_customer = Counter(rng.randrange(options.customers) for _ in range(options.events))
    events: list[CanonicalEvent] = []
    for index in range(options.customers):
        customer_id = f"cust-{index:06d}"
        at = start + timedelta(seconds=rng.randrange(86_400))
        points = 0
        for step in range(max(1, per_customer[index])):
            at += timedelta(seconds=rng.randrange(1, 3600))
            points += rng.randrange(0, 50)
            kind = (
                "customer.created"
                if step == 0
                else rng.choice(
                    ("customer.updated", "customer.updated", "customer.updated", "order.completed")
                )
            )
            events.append(
                CanonicalEvent.model_validate(
                    {
                        "id": f"evt-{customer_id}-{step:04d}",
                        "type": kind,
                        "occurred_at": at.isoformat(),
                        "customer": {
                            "id": customer_id,
                            "email": f"{customer_id}@example.com",
                            "first_name": rng.choice(FIRST),
                            "last_name": rng.choice(LAST),
                            "attributes": {"tier": rng.choice(TIERS), "points": points},
                        },
                        "data": {"total": rng.randrange(5, 500)}
                        if kind == "order.completed"
                        else {},
                    }
                )
            )
    return events


def delivery_plan(events: list[CanonicalEvent], options: DemoOptions) -> list[list[CanonicalEvent]]:
    """Chronological order, shuffled within windows, duplicates re-sent later, some batched."""
    rng = random.Random(options.seed + 1)
    ordered = sorted(events, key=lambda e: e.occurred_at)
    window = options.shuffle_window
    for begin in range(0, len(ordered), window):
        chunk = ordered[begin : begin + window]
        rng.shuffle(chunk)
        ordered[begin : begin + window] = chunk
    extra = rng.sample(ordered, int(len(ordered) * options.duplicate_share))
    for event in extra:
        ordered.insert(rng.randrange(len(ordered) + 1), event)
    bodies: list[list[CanonicalEvent]] = []
    position = 0
    while position < len(ordered):
        size = rng.randrange(2, 26) if rng.random() < options.batch_share else 1
        bodies.append(ordered[position : position + size])
        position += size
    return bodies


def expected_passes(events: list[CanonicalEvent], settings: Settings) -> dict[str, dict[str, Any]]:
    """userProvidedId -> the fields the newest matching event asks for (every account's)."""
    found: dict[str, dict[str, Any]] = {}
    for passes in expected_by_account(events, settings).values():
        found |= passes
    return found


def expected_by_account(
    events: list[CanonicalEvent], settings: Settings
) -> dict[str, dict[str, dict[str, Any]]]:
    """account -> userProvidedId -> the fields the newest matching event asks for."""
    newest: dict[tuple[str, str], tuple[tuple[datetime, str], dict[str, Any]]] = {}
    rules = compile_rules(settings.sync)
    for event in events:
        for desired in desired_passes(event, rules):
            key = (event.customer.id, desired.pass_key)
            order = (event.occurred_at, event.id)
            if key not in newest or order > newest[key][0]:
                newest[key] = (order, desired.fields)
    prefix = settings.sync.external_id_prefix
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for (customer, pass_key), (_, fields) in newest.items():
        upid = user_provided_id(prefix, pass_key, customer)
        found.setdefault(rules.account_of(pass_key), {})[upid] = fields
    return found


def demo_accounts(options: DemoOptions) -> dict[str, str]:
    """The environment that gives the demo its accounts (and, mixed, its two rules); {} keeps
    the configured default account. Raises LookupError for a kind without a sandbox."""
    with_sandbox = [k for k in registry.kinds() if registry.get_kind(k).sandbox is not None]
    if options.provider is not None:
        if options.provider not in with_sandbox:
            raise LookupError(
                f"no sandbox for provider {options.provider!r}; "
                f"kinds with one: {', '.join(with_sandbox)}"
            )
        kind = options.provider
        return {f"PASSSYNC_PROVIDERS__{kind.upper()}__KIND": kind, DEFAULT_ACCOUNT_ENV: kind}
    if not options.mixed:
        return {}
    kinds = with_sandbox[:2] if len(with_sandbox) > 1 else with_sandbox[:1] * 2
    names = kinds if len(set(kinds)) == 2 else ["brand_a", "brand_b"]
    env = {f"PASSSYNC_PROVIDERS__{n.upper()}__KIND": k for n, k in zip(names, kinds, strict=True)}
    card = {
        "firstName": "customer.first_name",
        "lastName": "customer.last_name",
        "email": "customer.email",
        "tier": "customer.attributes.tier",
        "points": "customer.attributes.points",
    }
    on = ["customer.created", "customer.updated"]
    rules = [
        {
            "name": "loyalty_card",
            "on": on,
            "actions": [
                {
                    "upsert": "loyalty",
                    "account": names[0],
                    "template": "Loyalty Card",
                    "fields": card,
                }
            ],
        },
        {
            "name": "member_card",
            "on": on,
            "actions": [
                {
                    "upsert": "member",
                    "account": names[1],
                    "template": "Loyalty Card",
                    "fields": card,
                }
            ],
        },
    ]
    return env | {DEFAULT_ACCOUNT_ENV: names[0], "PASSSYNC_SYNC__RULES": json.dumps(rules)}


DEFAULT_ACCOUNT_ENV = "PASSSYNC_SYNC__DEFAULT_ACCOUNT"


def run_demo(options: DemoOptions, *, console: Console, as_json: bool) -> DemoReport:
    # The demo's accounts reach every process of the stack through the environment.
    os.environ.update(demo_accounts(options))
    settings = load_settings()
    # Only the rules' accounts are served (a sandbox each); others in the config are left out.
    rules = compile_rules(settings.sync, registry.capabilities(settings))
    used = sorted({rules.account_of(key) for key in rules.templates}) or [
        registry.account(settings).name
    ]
    data_dir = options.data_dir or Path(tempfile.mkdtemp(prefix="passsync-demo-"))
    demo_settings = settings.model_copy(
        update={
            "database_url": f"sqlite:///{(data_dir / 'passsync.db').resolve()}",
            "broker_url": "embedded",
            "data_dir": data_dir,
        }
    )
    stack = Stack(
        settings=demo_settings,
        data_dir=data_dir,
        api_port=free_port(),
        sandboxes=dict.fromkeys(used, 0),
        log_to_files=True,
        extra_env={
            f"PASSSYNC_PROVIDERS__{name.upper()}__SANDBOX__RATE_LIMIT_PER_MINUTE": str(
                options.provider_rate_per_minute
            )
            for name in used
        },
    )
    report = DemoReport()
    _stop_on_signals()
    outbound = OutboundReceiver().start()
    stack.extra_env |= outbound.env("demo")
    pos_secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    stack.extra_env["PASSSYNC_SOURCES__POS__SECRET"] = pos_secret
    callback_token = secrets.token_urlsafe(24)
    stack.extra_env["PASSSYNC_CALLBACKS__SECRET"] = callback_token
    try:
        console.print(f"starting the embedded stack in {data_dir} ...")
        stack.start()
        _drive(stack, options, demo_settings, report, console)
        _check_outbound(
            stack,
            outbound,
            expected_passes(generate_events(options), demo_settings),
            report,
            console=console,
            timeout=options.drain_timeout_seconds,
        )
        # Issue 6: scans as usage, then the adoption funnel.
        for account in used:
            report.problems += demo_installs(
                account, stack.sandbox_url_of(account), stack.api_url, callback_token, demo_settings
            )
        report.problems += demo_scans(stack.api_url, pos_secret, demo_settings, console)
    finally:
        stack.stop()
        outbound.stop()
        if not options.keep and options.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    _print(report, console, as_json)
    return report


def _stop_on_signals() -> None:
    """SIGTERM or SIGHUP end the demo like Ctrl-C does, so the stack is always stopped."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _drive(
    stack: Stack, options: DemoOptions, settings: Settings, report: DemoReport, console: Console
) -> None:
    events = generate_events(options)
    bodies = delivery_plan(events, options)
    secret = stack.env["PASSSYNC_SOURCES__CRM__SECRET"]
    report.customers = options.customers
    report.events_generated = len(events)
    report.deliveries_sent = sum(len(b) for b in bodies)
    report.http_requests = len(bodies)
    console.print(
        f"sending {report.deliveries_sent} deliveries of {len(events)} events "
        f"in {len(bodies)} signed requests ..."
    )
    started = time.monotonic()
    _send_all(stack.api_url + "/webhooks/crm", secret, bodies, options.senders, report)
    database = Database(stack.env["PASSSYNC_DATABASE_URL"], pool_size=1)
    try:
        _wait_for_drain(database, options.drain_timeout_seconds, stack, console)
        report.elapsed_seconds = round(time.monotonic() - started, 2)
        report.events_per_second = round(len(events) / max(report.elapsed_seconds, 1e-9), 1)
        _count_ledger(database, report)
    finally:
        database.dispose()
    for account, passes in expected_by_account(events, settings).items():
        _check_provider(stack, settings, account, passes, report)


def _send_all(
    url: str, secret: str, bodies: list[list[CanonicalEvent]], senders: int, report: DemoReport
) -> None:
    def send(client: httpx.Client, body: list[CanonicalEvent]) -> dict[str, Any]:
        if len(body) == 1:
            payload: Any = body[0].model_dump(mode="json")
        else:
            payload = {"events": [e.model_dump(mode="json") for e in body]}
        raw = json.dumps(payload).encode()
        for attempt in range(5):
            headers = sign(secret, f"msg_{uuid.uuid4().hex}", int(time.time()), raw)
            headers["content-type"] = "application/json"
            response = client.post(url, content=raw, headers=headers)
            if response.status_code == 202:
                return dict(response.json())
            if response.status_code != 503 or attempt == 4:
                return {"error": response.status_code}
            time.sleep(float(response.headers.get("retry-after", "1")))
        return {"error": "unreachable"}

    with httpx.Client(timeout=30.0) as client, ThreadPoolExecutor(senders) as pool:
        for answer in pool.map(lambda b: send(client, b), bodies):
            if "error" in answer:
                report.rejected_requests += 1
                report.problems.append(f"request rejected: {answer['error']}")
            else:
                report.accepted += int(answer["accepted"])
                report.duplicates += int(answer["duplicates"])


def _wait_for_drain(database: Database, timeout: float, stack: Stack, console: Console) -> None:
    deadline = time.monotonic() + timeout
    with console.status("waiting for the queue to drain ...") as status:
        while time.monotonic() < deadline:
            with database.sessions() as session:
                pending = session.scalar(
                    select(func.count())
                    .select_from(InboundEvent)
                    # failed = a retry is scheduled: not drained yet
                    .where(InboundEvent.status.in_([EventStatus.PENDING, EventStatus.FAILED]))
                )
            if not pending:
                return
            if stack.dead():
                raise RuntimeError(f"{', '.join(stack.dead())} exited during the demo")
            status.update(f"waiting for the queue to drain: {pending} events pending")
            time.sleep(0.25)


def _count_ledger(database: Database, report: DemoReport) -> None:
    with database.sessions() as session:
        counts = dict(
            session.execute(
                select(InboundEvent.status, func.count()).group_by(InboundEvent.status)
            ).all()
        )
    report.events_handled = int(counts.get(EventStatus.HANDLED, 0))
    # dead letter, and any retry still scheduled when the demo gave up waiting
    report.events_failed = int(counts.get(EventStatus.DEAD, 0)) + int(
        counts.get(EventStatus.FAILED, 0)
    )
    report.events_lost = report.events_generated - report.events_handled - report.events_failed


def _check_provider(
    stack: Stack,
    settings: Settings,
    account: str,
    expected: dict[str, dict[str, Any]],
    report: DemoReport,
) -> None:
    """Compare what the account's own sandbox holds (its neutral state) with the model."""
    chosen = registry.account(settings, account)
    kit = chosen.kind.sandbox
    assert kit is not None  # the demo serves only accounts whose platform has a sandbox
    if kit.attach is None:
        report.problems.append(f"{account}: {chosen.kind.title}'s sandbox cannot be inspected")
        report.passes_missing += len(expected)
        return
    sandbox = kit.attach(stack.sandbox_url_of(account), chosen.sandbox_settings)
    live = [p for p in sandbox.state() if not p.deleted]
    stats = sandbox.stats()
    by_id: dict[str, list[Any]] = {}
    for item in live:
        by_id.setdefault(str(item.external_id), []).append(item)
    report.passes_expected += len(expected)
    report.passes_at_provider += len(live)
    report.accounts[account] = f"{len(live)} passes ({chosen.kind.kind})"
    for upid, fields in expected.items():
        found = by_id.get(upid, [])
        if not found:
            report.passes_missing += 1
            report.problems.append(f"{account}: no pass for {upid}")
        elif len(found) > 1:
            report.passes_duplicated += 1
            report.problems.append(f"{account}: {len(found)} passes for {upid}")
        elif any(found[0].fields.get(k) != v for k, v in fields.items()):
            report.passes_wrong_fields += 1
            report.problems.append(f"{account}: {upid} shows {found[0].fields}, expected {fields}")
    created = int(stats.get("creates", 0))
    report.passes_created += created
    report.passes_updated += max(0, int(stats.get("writes", created)) - created)
    calls = stats.get("calls", {})
    report.provider_calls += int(sum(calls.values()) if isinstance(calls, dict) else calls)
    report.provider_429s += int(stats.get("rate_limited", 0))


class OutboundReceiver:
    """The CRM's side of the demo: a local HTTP endpoint that verifies every outbound event's
    Standard Webhooks signature and keeps what arrived."""

    def __init__(self) -> None:
        self.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        self.verifier = WebhookVerifier([self.secret], tolerance_seconds=300)
        self.received: list[tuple[bool, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def env(self, name: str) -> dict[str, str]:
        """What the stack's processes need to send to this receiver."""
        assert self._server is not None
        prefix = f"PASSSYNC_OUTBOUND__DESTINATIONS__{name.upper()}__"
        url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        return {prefix + "URL": url, prefix + "SECRET": self.secret}

    def start(self) -> OutboundReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.record({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def record(self, headers: dict[str, str], body: bytes) -> None:
        try:
            self.verifier.verify(headers, body)
            verified = True
        except SignatureError:
            verified = False
        with self._lock:
            self.received.append((verified, headers, body))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _check_outbound(
    stack: Stack,
    receiver: OutboundReceiver,
    expected: dict[str, dict[str, Any]],
    report: DemoReport,
    *,
    console: Console,
    timeout: float,
) -> None:
    """Wait for the outbox to drain, then: every pass announced by exactly one pass.issued."""
    database = Database(stack.env["PASSSYNC_DATABASE_URL"], pool_size=1)
    try:
        _wait_for_outbox(database, timeout, console)
    finally:
        database.dispose()
    events: dict[str, dict[str, Any]] = {}
    for verified, headers, body in list(receiver.received):
        report.outbound_received += 1
        report.outbound_verified += int(verified)
        if verified:
            events[headers["webhook-id"]] = json.loads(body)  # retries share the id
    report.outbound_events = len(events)
    issued = Counter(
        str(e["data"]["user_provided_id"]) for e in events.values() if e["type"] == "pass.issued"
    )
    report.outbound_issued = sum(issued.values())
    for upid in expected:
        count = issued.get(upid, 0)
        report.passes_issued_once += int(count == 1)
        report.passes_issued_twice += int(count > 1)
        report.passes_not_issued += int(count == 0)
        if count != 1:
            report.problems.append(f"{upid}: {count} pass.issued events")


def _wait_for_outbox(database: Database, timeout: float, console: Console) -> None:
    deadline = time.monotonic() + timeout
    with console.status("waiting for outbound events to be delivered ...") as status:
        while time.monotonic() < deadline:
            with database.sessions() as session:
                waiting = (
                    session.scalar(
                        select(func.count())
                        .select_from(OutboxDelivery)
                        .where(OutboxDelivery.status.in_(UNFINISHED))
                    )
                    or 0
                )
                waiting += (
                    session.scalar(
                        select(func.count())
                        .select_from(OutboxEvent)
                        .where(OutboxEvent.fanned_out_at.is_(None))
                    )
                    or 0
                )
            if not waiting:
                return
            status.update(f"waiting for outbound events: {waiting} to deliver")
            time.sleep(0.25)


def _cell(value: object) -> str:
    """A report value for people: a mapping as one `name: value` line each, not a dict."""
    if isinstance(value, dict):
        return "\n".join(f"{name}: {shown}" for name, shown in value.items())
    return str(value)


def _print(report: DemoReport, console: Console, as_json: bool) -> None:
    if as_json:
        payload = asdict(report) | {"ok": report.ok, "problems": report.problems[:20]}
        print(json.dumps(payload, indent=2))
        return
    table = Table(title="passsync demo report", show_header=False)
    for key, value in asdict(report).items():
        if key != "problems":
            table.add_row(key.replace("_", " "), _cell(value))
    table.add_row("result", "[green]OK[/green]" if report.ok else "[red]FAILED[/red]")
    Console().print(table)
    for problem in report.problems[:20]:
        console.print(f"[red]- {problem}[/red]")
