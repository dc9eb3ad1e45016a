"""`passsync adoption`: the adoption funnel (table, --json, --csv); subscribe to callbacks."""

from __future__ import annotations

import csv
import json
import re
import sys
import time
import uuid
from datetime import date
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.adoption.metrics import Filters, adoption_report
from worker.commands.actions_cli import AccountOpt
from worker.commands.admin_token import require_token
from worker.commands.audited import SetupError, audited_client
from worker.config import Settings, load_settings
from worker.db import Database, utcnow
from worker.inbound.signatures import sign
from worker.providers import registry
from worker.scans.models import Scan, ScanStatus
from worker.sync.models import PassMapping

OPEN_SCANS = (ScanStatus.PENDING, ScanStatus.APPLYING)

adoption_app = typer.Typer(
    rich_markup_mode=None, help="Pass adoption: the funnel; provider callback subscriptions."
)


@adoption_app.callback(invoke_without_command=True)
def funnel_command(
    ctx: typer.Context,
    *,
    template: Annotated[str | None, typer.Option(help="Template id or name.")] = None,
    pass_key: Annotated[str | None, typer.Option(help="Pass key, e.g. loyalty.")] = None,
    campaign: Annotated[int | None, typer.Option(help="Campaign id.")] = None,
    platform: Annotated[str | None, typer.Option(help="ios or android.")] = None,
    since: Annotated[str | None, typer.Option(help="Issued on or after (YYYY-MM-DD).")] = None,
    until: Annotated[str | None, typer.Option(help="Issued on or before (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print the steps as CSV.")] = False,
) -> None:
    """The funnel: known -> issued -> downloaded -> installed -> used -> removed."""
    if ctx.invoked_subcommand is not None:
        return
    filters = Filters(template, pass_key, campaign, platform, _day(since), _day(until))
    settings = load_settings()
    report = load_report(settings, filters)
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    elif as_csv:
        writer = csv.writer(sys.stdout)
        writer.writerow(["step", "passes", "rate", "rate_of"])
        for step in report["steps"]:
            writer.writerow(
                [step["step"], step["count"], _blank(step["rate"]), step["rate_of"] or ""]
            )
    else:
        print_funnel(report, Console(width=120))
        for hint in setup_hints(report, settings, filters):
            typer.echo(hint)


def load_report(settings: Settings, filters: Filters) -> dict[str, Any]:
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            return adoption_report(session, None, filters)
    finally:
        database.dispose()


def print_funnel(report: dict[str, Any], console: Console) -> None:
    """The funnel as a terminal table, with time to install and the platform split."""
    table = Table("step", "passes", "rate", title="adoption funnel (passes)")
    for step in report["steps"]:
        rate, base = step["rate"], step["rate_of"]
        shown = (
            ""
            if rate is None
            else f"{rate:.0%} of {base}"
            if rate >= 0.1 or rate == 0
            else f"{rate:.1%} of {base}"
        )
        table.add_row(step["step"], str(step["count"]), shown)
    console.print(table)
    wait = report["time_to_install_seconds"]["median"]
    console.print(f"median time to install: {'-' if wait is None else f'{wait / 60:.1f} min'}")
    split = ", ".join(f"{k} {v}" for k, v in report["platforms"].items()) or "-"
    console.print(f"platforms: {split}")


def setup_hints(report: dict[str, Any], settings: Settings, filters: Filters) -> list[str]:
    """What to set up when the funnel is empty (as the dashboard's empty state says it):
    events first, then the provider callbacks that report downloads, installs and removals."""
    if any(value is not None for value in vars(filters).values()):
        return []  # a filter that selects nothing is not a setup problem
    counts = {step["step"]: step["count"] for step in report["steps"]}
    hints = []
    if counts["known"] == 0:
        hints.append(
            "no passes yet: send signed customer events to POST /webhooks/<source> (README, "
            '"The webhook contract"), or `passsync campaign create FILE.csv --start`'
        )
    if counts["downloaded"] == 0:
        how = (
            f"subscribed at {settings.callbacks.public_url}: saves show up once phones save passes"
            if settings.callbacks.public_url
            else "set callbacks.public_url (an address the provider can reach) and "
            "PASSSYNC_CALLBACKS__SECRET, then run `passsync adoption subscribe`"
        )
        hints.append(
            "downloads, installs and removals need provider callbacks (the wallet apps tell "
            f"the provider, the provider tells passsync): {how}"
        )
    return hints


def callbacks_url(public_url: str, account: str) -> str:
    """Where an account's platform posts its callbacks: the API's public base URL + the
    route. A public_url that already names a callbacks route (the shape before named
    accounts) gives its base."""
    base = re.sub(r"/providers/[^/]+/callbacks/?$", "", public_url.rstrip("/"))
    return f"{base}/providers/{account}/callbacks"


@adoption_app.command("subscribe")
def subscribe_command(account: AccountOpt = None) -> None:
    """Subscribe the account's callbacks URL (callbacks.public_url + /providers/<account>/
    callbacks) at its platform for callbacks.events, else the platform's own list
    (idempotent)."""
    settings = load_settings()
    require_token(settings)
    hooks = settings.callbacks
    if not hooks.public_url or hooks.secret is None:
        typer.echo("set callbacks.public_url and PASSSYNC_CALLBACKS__SECRET first", err=True)
        raise typer.Exit(2)
    try:
        chosen = registry.account(settings, account)
        subscribe = chosen.kind.subscribe_callbacks
        if subscribe is None:
            raise SetupError(
                f"{chosen.kind.title} callbacks are set up in its own console: point them at "
                f"{callbacks_url(hooks.public_url, chosen.name)}?token=<PASSSYNC_CALLBACKS__SECRET>"
            )
        events = tuple(hooks.events) or chosen.kind.callback_events
        with audited_client(settings, chosen.name) as client:
            added = subscribe(
                client,
                callbacks_url(hooks.public_url, chosen.name),
                hooks.secret.get_secret_value(),
                events,
            )
    except (SetupError, LookupError) as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"subscribed: {', '.join(added) or 'nothing new (all present)'}")


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not YYYY-MM-DD") from None


def _blank(value: Any) -> Any:
    return "" if value is None else value


def demo_scans(api_url: str, secret: str, settings: Settings, console: Console) -> list[str]:
    """The demo's last act: scan some passes at POST /scans/pos, wait, print the funnel.

    Each coupon is scanned twice (the second scan must be rejected), each card once.
    Returns the problems found (none when everything behaved).
    """
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            targets = _demo_targets(session, settings)
        bodies = [
            {
                "id": f"demo-scan-{n}",
                "scanned_at": utcnow().isoformat(),
                "pass_id": pass_id,
                "location": DEMO_LOCATIONS[n % len(DEMO_LOCATIONS)],
                "amount": 12.5,
            }
            for n, pass_id in enumerate(targets)
        ]
        console.print(f"sending {len(bodies)} POS scans ...")
        problems = _post_scans(api_url, secret, bodies)
        problems += _wait_for_scans(database, len(bodies))
        with database.session() as session:
            report = adoption_report(session, None, Filters())
    finally:
        database.dispose()
    print_funnel(report, console)
    return problems


DEMO_LOCATIONS = ("Berlin Mitte", "Hamburg Altona", "Munich Center")


def _demo_targets(session: Session, settings: Settings) -> list[str]:
    modes = {r.pass_key: r.mode for r in settings.usage.rules}
    rows = session.execute(
        select(PassMapping.pass_key, PassMapping.provider_pass_id)
        .where(PassMapping.provider_pass_id.is_not(None), PassMapping.pass_key.in_(list(modes)))
        .order_by(PassMapping.id)
        .limit(10)
    )
    targets: list[str] = []
    for key, pass_id in rows:
        assert pass_id is not None
        targets += [pass_id, pass_id] if modes[key] == "redeem" else [pass_id]
    return targets


def _post_scans(api_url: str, secret: str, bodies: list[dict[str, Any]]) -> list[str]:
    problems = []
    with httpx.Client(timeout=30.0) as client:
        for body in bodies:
            raw = json.dumps(body).encode()
            headers = sign(secret, f"msg_{uuid.uuid4().hex}", int(time.time()), raw)
            headers["content-type"] = "application/json"
            answer = client.post(api_url + "/scans/pos", content=raw, headers=headers)
            if answer.status_code != 202:
                problems.append(f"scan refused: {answer.status_code}")
    return problems


def _wait_for_scans(database: Database, expected: int, timeout: float = 60.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with database.session() as session:
            done = session.scalar(
                select(func.count()).select_from(Scan).where(Scan.status.not_in(OPEN_SCANS))
            )
        if done == expected:
            return []
        time.sleep(0.2)
    return [f"only {done} of {expected} scans were handled in {timeout:.0f}s"]


def demo_installs(
    account: str, sandbox_url: str, api_url: str, token: str, settings: Settings
) -> list[str]:
    """Subscribe passsync at the account's sandbox, then let "phones" save most of its
    passes and remove one (platforms whose sandbox cannot do this are skipped)."""
    chosen = registry.account(settings, account)
    kit, subscribe = chosen.kind.sandbox, chosen.kind.subscribe_callbacks
    if kit is None or kit.simulate_device is None or subscribe is None:
        return []
    pointed = chosen.pointed_at(kit.account_overrides(chosen.sandbox_settings, sandbox_url))
    client = chosen.kind.build_client(pointed, None)
    try:
        events = tuple(settings.callbacks.events) or chosen.kind.callback_events
        subscribe(client, callbacks_url(api_url, account), token, events)
    finally:
        client.close()
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.session() as session:
            ids = session.scalars(
                select(PassMapping.provider_pass_id)
                .where(PassMapping.provider_pass_id.is_not(None), PassMapping.provider == account)
                .order_by(PassMapping.id)
            ).all()
    finally:
        database.dispose()
    actions = [
        (pid, "install", "iOS" if n % 3 else "Android") for n, pid in enumerate(ids) if n % 4
    ]
    actions += [(pid, "remove", "iOS") for pid in ids[1:2]]
    problems: list[str] = []
    for pass_id, action, platform in actions:
        if pass_id is not None and not kit.simulate_device(sandbox_url, pass_id, action, platform):
            problems.append(f"sandbox {action} of {pass_id} did not call back")
    return problems
