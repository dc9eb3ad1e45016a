"""`passsync doctor`: is this installation ready? One line per check, exit 1 on a failure.

Checks, in order: the configuration and rules, the secrets every source and admin token
needs, the database (reachable, migrated), the broker, the provider (the credential is
accepted, every rule's template exists and takes every field the rules set), each outbound
destination (its secret, and that it answers), and the clock (against the database server
and the destinations' Date headers).
Nothing is changed and nothing is sent but reads.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import text

from worker.commands.problems import explain
from worker.config import ConfigError, Settings, load_settings
from worker.db import Database
from worker.providers import registry

Status = Literal["ok", "warn", "fail", "skip"]
# Beyond this, signed webhooks (5 min tolerance) and schedules start to go wrong.
MAX_SKEW_SECONDS = 30.0
HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check config, secrets, database, broker, provider, destinations and clock."""
    checks = list(run_checks())
    if as_json:
        body = {
            "ok": all(c.status != "fail" for c in checks),
            "checks": [asdict(c) for c in checks],
        }
        sys.stdout.write(json.dumps(body) + "\n")
    else:
        out = Console(highlight=False, soft_wrap=True)
        colour = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
        width = max(len(c.name) for c in checks)
        for check in checks:
            mark = f"[{colour[check.status]}]{check.status:<4}[/]"
            # the name and detail are text, not markup: "[...]" in a detail is shown as is
            out.print(f"{mark}  {escape(f'{check.name:<{width}}')} {escape(check.detail)}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


def run_checks() -> Iterator[Check]:
    """Every check's verdict; a failed configuration stops the rest (they need it)."""
    try:
        settings = load_settings()
        from worker.sync.rules import compile_rules  # noqa: PLC0415

        rules = compile_rules(settings.sync)
    except ConfigError as exc:
        yield Check("config", "fail", str(exc))
        return
    except Exception as exc:  # RulesError and friends: one line each
        yield Check("config", "fail", " ".join(str(exc).split()))
        return
    yield Check("config", "ok", f"valid; {len(rules.rules)} rule(s)")
    yield from _secrets(settings)
    migrated = yield from _database(settings)
    yield _broker(settings)
    yield from _providers(settings, migrated)
    yield from _destinations(settings)


def _secrets(settings: Settings) -> Iterator[Check]:
    missing = [
        f"PASSSYNC_SOURCES__{name.upper()}__SECRET"
        for name, source in settings.sources.items()
        if source.secret is None
    ]
    missing += [
        f"PASSSYNC_ADMIN_TOKENS__{name.upper()}__SECRET"
        for name, token in settings.admin_tokens.items()
        if token.secret is None
    ]
    if settings.callbacks.public_url and settings.callbacks.secret is None:
        missing.append("PASSSYNC_CALLBACKS__SECRET")
    if missing:
        yield Check("secrets", "fail", "not set: " + ", ".join(missing))
        return
    count = len(settings.sources) + len(settings.admin_tokens)
    yield Check("secrets", "ok", f"{count} source and admin-token secrets set")


def _database(settings: Settings) -> Generator[Check, None, bool]:
    """Reachable, migrated, and its clock; returns whether the schema is current."""
    from worker.migrate import current_revisions, head_revisions, revision_names  # noqa: PLC0415

    try:
        database = Database(settings.database_url, pool_size=1)
    except Exception as exc:
        yield Check("database", "fail", explain(exc) or type(exc).__name__)
        return False
    try:
        current = current_revisions(database.engine)
        now_there = _database_now(database)
    except Exception as exc:
        yield Check("database", "fail", explain(exc) or type(exc).__name__)
        return False
    finally:
        database.dispose()
    migrated = current == head_revisions()
    if migrated:
        yield Check("database", "ok", f"reachable, at {revision_names(current)}")
    else:
        yield Check("database", "fail", f"at {revision_names(current)}: run `passsync db upgrade`")
    if now_there is not None:
        yield _skew("clock", "the database server", now_there)
    return migrated


def _database_now(database: Database) -> datetime | None:
    if database.is_sqlite:
        return None  # the same machine's clock
    with database.engine.connect() as conn:
        value = conn.execute(text("SELECT CURRENT_TIMESTAMP")).scalar_one()
    return value if isinstance(value, datetime) else None


def _broker(settings: Settings) -> Check:
    if settings.embedded_broker:
        return Check("broker", "skip", "embedded: `passsync run` starts it")
    from worker.brokers import make_ping  # noqa: PLC0415

    try:
        make_ping(settings.broker_url)()
    except Exception as exc:
        return Check("broker", "fail", f"unreachable ({type(exc).__name__})")
    return Check("broker", "ok", "reachable")


def _providers(settings: Settings, migrated: bool) -> Iterator[Check]:
    """Per account: its credential is accepted (its template list is read); then every rule's
    template exists at the default account. Audited like every provider call when the audit
    table exists."""
    from worker.providers.errors import ProviderError  # noqa: PLC0415

    accounts = registry.accounts(settings)
    for account in accounts.values():
        label = f"provider {account.name}"
        try:
            names = _with_audit(
                settings, migrated, functools.partial(_templates, account), account.name
            )
        except ProviderError as exc:
            yield Check(label, "fail", f"{account.kind.title}: {exc.message}")
            continue
        except ConfigError as exc:
            yield Check(label, "fail", str(exc))
            continue
        except Exception as exc:
            detail = explain(exc) or type(exc).__name__
            yield Check(label, "fail", f"{account.kind.title}: {detail}")
            continue
        yield Check(
            label, "ok", f"{account.kind.title}: credential accepted ({len(names)} templates)"
        )
    yield from _rules_at_provider(settings, migrated)


def _templates(account: Any, on_attempt: Callable[[Any], None] | None) -> list[str]:
    client = account.build_client(on_attempt)
    try:
        return [t.name for t in client.list_templates()]
    finally:
        client.close()


def _rules_at_provider(settings: Settings, migrated: bool) -> Iterator[Check]:
    """Every rule's template exists at its account, and takes every field the rules (and a
    visit's counters) set, on every platform that lists template fields."""
    from worker.commands.rules import ProviderCheck, provider_check  # noqa: PLC0415
    from worker.sync.rules import compile_rules  # noqa: PLC0415

    found: list[ProviderCheck] = []

    def call(on_attempt: Callable[[Any], None] | None) -> list[str]:
        rules = compile_rules(settings.sync, registry.capabilities(settings))
        found.append(provider_check(settings, rules, on_attempt))
        return found[-1].problems

    try:
        _with_audit(settings, migrated, call)
    except Exception as exc:  # ProviderError, ConfigError and friends: not checked
        detail = getattr(exc, "message", None) or explain(exc) or str(exc) or type(exc).__name__
        yield Check("templates", "skip", f"not checked: {detail}")
        yield Check("fields", "skip", f"not checked: {detail}")
        return
    result = found[-1]
    if result.templates:
        yield Check("templates", "fail", "; ".join(result.templates))
    else:
        yield Check("templates", "ok", "every rule's template exists at the provider")
    if result.fields:
        yield Check("fields", "fail", "; ".join(result.fields))
    elif result.unchecked:
        yield Check("fields", "skip", "; ".join(result.unchecked))
    else:
        yield Check("fields", "ok", "every field the rules set is a field of its template")


def _with_audit(
    settings: Settings,
    migrated: bool,
    call: Callable[[Callable[[Any], None] | None], list[str]],
    account: str | None = None,
) -> list[str]:
    if not migrated:
        return call(None)
    from worker.audit import AuditRecorder  # noqa: PLC0415

    name = account or registry.account(settings).name
    database = Database(settings.database_url, pool_size=1)
    try:
        return call(AuditRecorder(database, provider=name).on_attempt)
    finally:
        database.dispose()


def _destinations(settings: Settings) -> Iterator[Check]:
    from worker.outbox.transport import check_destinations  # noqa: PLC0415

    destinations = settings.outbound.destinations
    if not destinations:
        yield Check("outbound", "skip", "no outbound destinations configured")
        return
    try:
        check_destinations(settings.outbound, resolve=False)
    except ConfigError as exc:
        yield Check("outbound", "fail", str(exc))
        return
    for name, destination in sorted(destinations.items()):
        label = f"outbound {name}"
        try:
            answer = httpx.head(destination.url, timeout=HTTP_TIMEOUT_SECONDS)
        except httpx.HTTPError as exc:
            yield Check(label, "fail", f"does not answer ({type(exc).__name__})")
            continue
        yield Check(label, "ok", f"answers (HTTP {answer.status_code})")
        date = answer.headers.get("date")
        if date:
            yield _skew(f"clock {name}", f"destination {name}", parsedate_to_datetime(date))


def _skew(name: str, against: str, there: datetime) -> Check:
    there = there if there.tzinfo else there.replace(tzinfo=UTC)
    skew = (datetime.now(UTC) - there).total_seconds()
    detail = f"{abs(skew):.1f} s {'ahead of' if skew > 0 else 'behind'} {against}"
    return Check(name, "ok" if abs(skew) <= MAX_SKEW_SECONDS else "fail", detail)
