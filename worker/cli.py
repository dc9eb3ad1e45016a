"""The `passsync` command: the embedded stack, each production process, the demo, admin tools."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from worker.commands.accounts import accounts_app
from worker.commands.adoption import adoption_app
from worker.commands.audit import audit_app
from worker.commands.campaign import campaign_app
from worker.commands.dashboard import dashboard as dashboard_command
from worker.commands.doctor import doctor as doctor_command
from worker.commands.events import events_app
from worker.commands.health import health_app, heartbeat_path
from worker.commands.mcp import mcp as mcp_command
from worker.commands.outbox import outbox_app
from worker.commands.passes import passes_app
from worker.commands.retention import retention_app
from worker.commands.rules import rules_app
from worker.commands.scans import scans_app
from worker.commands.sources import sources_app
from worker.commands.templates import templates_app
from worker.commands.tools import tools_app
from worker.config import ConfigError, Settings, SourceSettings, load_settings
from worker.providers import registry

if TYPE_CHECKING:
    from worker.stack import Stack

app = typer.Typer(
    name="passsync",
    help="Keep Apple and Google Wallet passes true to your CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Docstrings wrap at 100 columns in the source: plain click help rewraps them.
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"passsync {package_version()}")
        raise typer.Exit


def package_version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("passsync")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@app.callback()
def _root(
    ctx: typer.Context,
    _version_flag: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Keep Apple and Google Wallet passes true to your CRM."""
    from worker.commands.attach import STACK_COMMANDS, attach

    if ctx.invoked_subcommand in STACK_COMMANDS or ctx.resilient_parsing:
        return
    try:
        data_dir = load_settings().data_dir
    except ConfigError:
        return  # the command itself reports it
    attach(data_dir, os.environ)  # next to `passsync run`: its broker, database, sandbox


db_app = typer.Typer(help="Database schema.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")
app.add_typer(accounts_app, name="accounts")
app.add_typer(adoption_app, name="adoption")
app.add_typer(audit_app, name="audit")
app.add_typer(campaign_app, name="campaign")
app.add_typer(events_app, name="events")
app.add_typer(health_app, name="health")
app.add_typer(outbox_app, name="outbox")
app.add_typer(rules_app, name="rules")
app.add_typer(scans_app, name="scans")
app.add_typer(sources_app, name="sources")
app.add_typer(passes_app, name="passes")
app.add_typer(retention_app, name="retention")
app.add_typer(templates_app, name="templates")
app.add_typer(tools_app, name="tools")
console = Console(stderr=True)


def _settings() -> Settings:
    from worker.sync.rules import compile_rules

    settings = load_settings()
    compile_rules(settings.sync)  # invalid rules stop start-up, one line per problem
    return settings


def _logging(settings: Settings) -> None:
    from worker.observability import logs, metrics, tracing

    logs.from_settings(settings)
    metrics.set_enabled(settings.metrics.enabled)
    tracing.setup_tracing(settings.tracing)


def _multiprocess_metrics(settings: Settings, role: str) -> None:
    """Count in prometheus-client's multiprocess mode, in a directory of this process tree's
    own (wiped at start): the pool processes forked later add up in one /metrics. Each
    worker (and the API) needs its own directory."""
    from worker.observability import metrics

    if not settings.metrics.enabled:
        return
    folder = os.environ.get(metrics.MULTIPROC_ENV) or str(
        Path(settings.metrics.multiproc_dir or settings.data_dir / "metrics" / role).resolve()
    )
    metrics.prepare_multiprocess_dir(folder, wipe=True)
    metrics.switch_to_multiprocess(folder)


@app.command()
def run(
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default: celery.concurrency).")
    ] = None,
    show_logs: Annotated[
        bool,
        typer.Option(
            "--show-logs", help="The processes' logs in this terminal (default: data_dir/logs/)."
        ),
    ] = False,
) -> None:
    """Run everything in one process tree: embedded Redis, SQLite, receiver, worker, beat and,
    for every provider account without credentials, its platform's local sandbox. Stops
    cleanly on Ctrl-C or SIGTERM."""
    from worker.stack import Stack

    settings = _settings()
    refuse_wrong_keys(settings)
    stack = Stack(
        settings=settings,
        data_dir=settings.data_dir,
        api_port=settings.api.port,
        sandboxes=_sandboxed_accounts(settings),
        worker_concurrency=concurrency or settings.celery.concurrency,
        write_run_file=True,
        persist_sandbox=True,
        log_to_files=not show_logs,  # the terminal keeps the banner, not every tick
    )
    stopping = _install_stop_handlers()
    try:
        stack.start()
        _reload_on_sighup(stack)
    except BaseException:
        stack.stop()  # what did start; a setup problem is then one line (see main)
        raise
    try:
        _print_run_banner(stack, settings)
        while not stopping and not stack.dead():
            time.sleep(0.2)
        dead = stack.dead()
        if dead and not stopping:
            console.print(f"[red]stopped: {', '.join(dead)} exited unexpectedly[/red]")
            for name in dead:
                _print_log_tail(stack, name)
            raise typer.Exit(1)
    finally:
        console.print("stopping passsync ...")
        stack.stop()
        console.print("stopped.")


def _print_log_tail(stack: Stack, name: str, lines: int = 20) -> None:
    log = stack.data_dir / "logs" / f"{name}.log"
    if stack.log_to_files and log.exists():
        console.print(f"last lines of {log}:", highlight=False)
        for line in log.read_text(errors="replace").splitlines()[-lines:]:
            console.print("  " + line, highlight=False, markup=False)


def _install_stop_handlers() -> list[int]:
    stopping: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the stack is up: see _reload_on_sighup
    return stopping


def _reload_on_sighup(stack: Stack) -> None:
    """SIGHUP to `passsync run`: every process of the stack reloads its credentials (the
    shared generation in the stack's Redis), as `passsync accounts rotate --no-check` does."""
    from worker.providers.rotation import install_sighup

    broker = stack.env.get("PASSSYNC_BROKER_URL", stack.settings.broker_url)
    install_sighup(stack.settings.model_copy(update={"broker_url": broker}))


def refuse_wrong_keys(settings: Settings) -> None:
    """Before starting: an account whose key the provider refuses stops start-up (one line);
    an unreachable provider does not (events wait and retry)."""
    from worker.providers.credentials import CredentialStatus, check_credentials

    for account in registry.accounts(settings).values():
        if not account.has_credentials:
            continue
        client = account.build_client()
        try:
            status = check_credentials(client.list_templates)
        finally:
            client.close()
        if status is CredentialStatus.REFUSED:
            raise ConfigError(
                f"{status.value} (account {account.name!r}): check "
                f"PASSSYNC_PROVIDERS__{account.name.upper()}__API_KEY"
            )


def _sandboxed_accounts(settings: Settings) -> dict[str, int]:
    """Accounts without credentials whose platform has a sandbox: name -> its port."""
    return {
        a.name: int(a.sandbox_settings.port)
        for a in registry.accounts(settings).values()
        if not a.has_credentials and a.kind.sandbox is not None
    }


def _print_run_banner(stack: Stack, settings: Settings) -> None:
    for line in run_banner(stack, settings):
        console.print(line, highlight=False, soft_wrap=True)


def source_url(base: str, name: str, source: SourceSettings) -> str:
    """The one URL a source's sender posts to: a standard source with `target: scans` takes
    scans at /scans/{name}; every other source (a sender's own webhooks too, even when they
    become scans) posts to /webhooks/{name}."""
    if source.kind == "standard":
        if source.target == "scans":
            return f"POST {base}/scans/{name} (scans)"
        return f"POST {base}/webhooks/{name} (events)"
    return f"POST {base}/webhooks/{name} ({source.kind} webhooks)"


def run_banner(stack: Stack, settings: Settings) -> list[str]:
    """What `passsync run` prints once it is up: every URL a user needs, no secret."""
    from worker.stack import SECRETS_FILE

    base = stack.api_url
    secrets_file = (stack.data_dir / SECRETS_FILE).resolve()
    lines = ["[bold green]passsync is running[/bold green]"]
    for account in registry.accounts(settings).values():
        where = (
            f"local sandbox at {stack.sandbox_url_of(account.name)}"
            if account.name in stack.sandboxes
            else "credentials set"
        )
        label = f"account {account.name}"
        lines.append(f"  {label:<22} {account.kind.title}: {where}")
    for name, source in settings.sources.items():
        lines.append(f"  {f'source {name}':<22} {source_url(base, name, source)}")
    lines += [
        f"  dashboard              {base}/dashboard  (`passsync dashboard` prints a login link)",
        f"  API docs               {base}/docs",
        f"  health                 {base}/readyz",
        f"  secrets                {secrets_file}  (signing secrets, admin tokens; mode 0600)",
        "  CLI                    other passsync commands in this directory use this stack",
        *(
            [f"  logs                   {(stack.data_dir / 'logs').resolve()}"]
            if stack.log_to_files
            else []
        ),
        "  Ctrl-C stops everything.",
    ]
    return lines


@app.command()
def api(
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes (default: api.workers).")
    ] = None,
) -> None:
    """The receiver and admin API (production process)."""
    import uvicorn

    from worker.api.server import raise_open_files_limit, uvicorn_options
    from worker.commands.problems import SetupError
    from worker.stack import port_in_use

    settings = _settings()
    _logging(settings)
    if port_in_use(_client_host(settings.api.host), settings.api.port):
        raise SetupError(
            f"port {settings.api.port} is already in use: stop what holds it or set "
            "PASSSYNC_API__PORT to another"
        )
    count = workers or settings.api.workers
    if count > 1:
        # Several processes behind one port: /metrics must add up all of them.
        _multiprocess_metrics(settings, "api")
    raise_open_files_limit()
    if count == 1:
        _api_sighup(settings)  # more processes: uvicorn's supervisor restarts them on SIGHUP
    # Connection limits and timeouts (issue 16, M1); logging stays ours (no log_level).
    common: dict[str, Any] = uvicorn_options(settings.api)
    if count == 1:
        uvicorn.run(api_app(settings), **common)
    else:
        # Each worker process builds its own app (and its own group-commit queue) from the
        # same settings; uvicorn needs an import string to do that.
        uvicorn.run("worker.cli:api_app", factory=True, workers=count, **common)


def _api_sighup(settings: Settings) -> None:
    """SIGHUP to an API process reloads the credentials (instead of ending it)."""
    from worker.providers.rotation import install_sighup

    install_sighup(settings)


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104


def api_app(settings: Settings | None = None) -> Any:
    """The production ASGI app: ledger database, Celery publishing, broker readiness."""
    from worker.api.app import create_app
    from worker.api.server import configure as configure_server
    from worker.db import Database
    from worker.tasks.app import broker_ping, configure, declare_amqp_topology, queue_depths
    from worker.tasks.jobs import dispatch_events
    from worker.tasks.scans import dispatch_scans

    if settings is None:  # a uvicorn worker process, started by import string
        settings = _settings()
        _logging(settings)
        _api_sighup(settings)
    configure_server(settings.api)  # the header timeout, in this (worker) process too
    configure(settings)
    declare_amqp_topology(settings.broker_url)
    database = Database(settings.database_url)
    return create_app(
        settings,
        database,
        enqueue=dispatch_events,
        broker_ping=broker_ping(settings.broker_url),
        enqueue_scans=dispatch_scans,
        broker_depth=lambda: queue_depths(settings.broker_url),
    )


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Pool processes.")] = None,
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: realtime, bulk (campaigns).")
    ] = "realtime,bulk",
    name: Annotated[
        str,
        typer.Option(help="Node name (NAME@host): tells workers on one host apart for health."),
    ] = "passsync",
) -> None:
    """A Celery worker (production process)."""
    from worker.commands.rules import check_templates_at_start
    from worker.observability.server import serve_worker_metrics
    from worker.outbox.transport import check_destinations
    from worker.tasks.app import configure

    settings = _settings()
    _multiprocess_metrics(settings, f"worker-{name}")
    _logging(settings)
    serve_worker_metrics(settings.metrics)
    check_templates_at_start(settings)
    check_destinations(settings.outbound)  # bad secret: stop; unresolvable host: warn
    celery = configure(settings)
    celery.worker_main(
        [
            "worker",
            f"--queues={queues}",
            f"--concurrency={concurrency or settings.celery.concurrency}",
            f"--loglevel={settings.log_level}",
            "--optimization=fair",
            "--without-gossip",
            "--without-mingle",
            f"--hostname={name}@%h",
        ]
    )


@app.command()
def beat() -> None:
    """The scheduler of every periodic job: the pending-event and scan sweepers, campaign
    dispatch and scheduled starts, outbound deliveries, the drift reconcile, the purges
    (production process; run exactly one)."""
    from worker.private import private_dir
    from worker.tasks.app import configure, declare_amqp_topology
    from worker.tasks.observe import HEARTBEAT_CONF_KEY

    settings = _settings()
    _logging(settings)
    celery = configure(settings)
    declare_amqp_topology(settings.broker_url)
    private_dir(settings.data_dir)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery.conf[HEARTBEAT_CONF_KEY] = str(heartbeat_path(settings))
    celery.start(
        [
            "beat",
            f"--schedule={schedule}",
            "--scheduler=worker.tasks.observe:HeartbeatScheduler",
            f"--loglevel={settings.log_level}",
        ]
    )


@app.command()
def sandbox(
    port: Annotated[
        int | None, typer.Option(help="Port (default: the account's sandbox.port).")
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(help="Serve this account's sandbox (default: sync.default_account)."),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(help="Serve a sandbox of this platform kind (its default settings)."),
    ] = None,
) -> None:
    """A local server that behaves like a wallet platform, for trying passsync without an
    account (the default account's platform unless --account or --kind says otherwise)."""
    settings = _settings()
    _logging(settings)
    try:
        if kind is not None:
            chosen = [a for a in registry.accounts(settings).values() if a.kind.kind == kind]
            found = chosen[0] if chosen else None
            descriptor = registry.get_kind(kind)
        else:
            found = registry.account(settings, account)
            descriptor = found.kind
    except LookupError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    kit = descriptor.sandbox
    if kit is None:
        console.print(f"[red]{descriptor.title} has no local sandbox[/red]")
        raise typer.Exit(2)
    sandbox_settings = found.sandbox_settings if found is not None else kit.settings_model()
    if port is not None:
        sandbox_settings = sandbox_settings.model_copy(update={"port": port})
    kit.serve(sandbox_settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the latest schema (safe to repeat)."""
    from worker.db import make_engine
    from worker.migrate import current_revisions, pending_count, revision_names, upgrade

    settings = _settings()
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        before = current_revisions(engine)
        upgrade(settings.database_url)
        after = current_revisions(engine)
    finally:
        engine.dispose()
    if before == after:
        typer.echo(f"database already at the latest revision ({revision_names(after)})")
    else:
        applied = pending_count(before)
        typer.echo(
            f"database migrated from {revision_names(before)} to {revision_names(after)}"
            f" ({applied} migration{'s' if applied != 1 else ''} applied)"
        )


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Distinct customers.")] = 300,
    events: Annotated[int, typer.Option(help="Distinct events (before duplicates).")] = 3000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data directory.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Where the demo keeps its data.")] = None,
    provider: Annotated[
        str | None,
        typer.Option(help="Run it on one account of this platform kind (its sandbox)."),
    ] = None,
    mixed: Annotated[
        bool, typer.Option(help="Two accounts at once (two platforms when there are two).")
    ] = False,
) -> None:
    """Run the embedded stack, send a generated workload through the real receiver, verify it
    against each account's own sandbox state and print a report. Exits 1 on any lost or
    twin pass or wrong field."""
    from worker.demo import DemoOptions, run_demo

    options = DemoOptions(
        customers=customers,
        events=events,
        seed=seed,
        keep=keep,
        data_dir=data_dir,
        provider=provider,
        mixed=mixed,
    )
    if provider is not None and mixed:
        console.print("[red]give --provider or --mixed, not both[/red]")
        raise typer.Exit(2)
    try:
        report = run_demo(options, console=console, as_json=as_json)
    except LookupError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        raise typer.Exit(2) from None
    if not report.ok:
        raise typer.Exit(1)


# After the stack commands in `passsync --help`.
app.command("mcp")(mcp_command)
app.command("doctor")(doctor_command)
app.command("dashboard")(dashboard_command)


def main() -> None:
    """The console script: a setup problem is one line on stderr and exit 2, not a traceback."""
    from worker.commands.problems import explain

    # Whatever passsync writes (database, logs, schedules, the embedded Redis, its children's
    # files) is readable by this user only: new files 0600, new directories 0700.
    os.umask(0o077)
    try:
        app()
    except ConfigError as exc:
        sys.stderr.write(f"passsync: {exc}\n")  # one line, never wrapped
        sys.exit(2)
    except Exception as exc:
        line = explain(exc)
        if line is None:
            raise
        sys.stderr.write(f"passsync: {' '.join(line.split())}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
