"""The `passsync` command: the embedded stack, each production process, the demo, admin tools."""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from worker.commands.adoption import adoption_app
from worker.commands.audit import audit_app
from worker.commands.campaign import campaign_app
from worker.commands.events import events_app
from worker.commands.mcp import mcp as mcp_command
from worker.commands.outbox import outbox_app
from worker.commands.passes import passes_app
from worker.commands.rules import rules_app
from worker.commands.templates import templates_app
from worker.commands.tools import tools_app
from worker.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from worker.stack import Stack

app = typer.Typer(
    name="passsync",
    help="Keep Apple and Google Wallet passes true to your CRM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(adoption_app, name="adoption")
app.add_typer(audit_app, name="audit")
app.add_typer(campaign_app, name="campaign")
app.add_typer(events_app, name="events")
app.add_typer(outbox_app, name="outbox")
app.add_typer(rules_app, name="rules")
app.add_typer(passes_app, name="passes")
app.add_typer(templates_app, name="templates")
app.add_typer(tools_app, name="tools")
app.command("mcp")(mcp_command)
console = Console(stderr=True)


def _settings() -> Settings:
    from worker.sync.rules import compile_rules

    settings = load_settings()
    compile_rules(settings.sync)  # invalid rules stop start-up, one line per problem
    return settings


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def run(
    concurrency: Annotated[int, typer.Option(help="Worker processes.")] = 2,
) -> None:
    """Run everything in one process tree: embedded Redis, SQLite, receiver, worker, beat and,
    without a Passcreator API key, the local sandbox. Stops cleanly on Ctrl-C or SIGTERM."""
    from worker.stack import Stack

    settings = _settings()
    use_sandbox = settings.providers.passcreator.api_key is None
    stack = Stack(
        settings=settings,
        data_dir=settings.data_dir,
        api_port=settings.api.port,
        use_sandbox=use_sandbox,
        worker_concurrency=concurrency,
        sandbox_port=settings.sandbox.port,
    )
    stopping = _install_stop_handlers()
    try:
        stack.start()
        _print_run_banner(stack, settings, use_sandbox)
        while not stopping and not stack.dead():
            time.sleep(0.2)
        dead = stack.dead()
        if dead and not stopping:
            console.print(f"[red]stopped: {', '.join(dead)} exited unexpectedly[/red]")
            raise typer.Exit(1)
    finally:
        console.print("stopping passsync ...")
        stack.stop()
        console.print("stopped.")


def _install_stop_handlers() -> list[int]:
    stopping: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)
    return stopping


def _print_run_banner(stack: Stack, settings: Settings, use_sandbox: bool) -> None:
    provider = (
        f"local sandbox at {stack.sandbox_url}"
        if use_sandbox
        else settings.providers.passcreator.base_url
    )
    console.print(f"[bold green]passsync is running[/bold green] (provider: {provider})")
    for source in settings.sources:
        console.print(f"  send signed events to  POST {stack.api_url}/webhooks/{source}")
    console.print(f"  health                 GET  {stack.api_url}/readyz")
    console.print(f"  admin API              GET  {stack.api_url}/api/events")
    console.print(f"  generated secrets      {(stack.data_dir / 'secrets.env').resolve()}")
    console.print("  Ctrl-C stops everything.")


@app.command()
def api(
    workers: Annotated[
        int | None, typer.Option(help="uvicorn worker processes (default: api.workers).")
    ] = None,
) -> None:
    """The receiver and admin API (production process)."""
    import uvicorn

    settings = _settings()
    _logging(settings)
    count = workers or settings.api.workers
    common: dict[str, Any] = {
        "host": settings.api.host,
        "port": settings.api.port,
        "log_level": settings.log_level.lower(),
        "access_log": False,
    }
    if count == 1:
        uvicorn.run(api_app(settings), **common)
    else:
        # Each worker process builds its own app (and its own group-commit queue) from the
        # same settings; uvicorn needs an import string to do that.
        uvicorn.run("worker.cli:api_app", factory=True, workers=count, **common)


def api_app(settings: Settings | None = None) -> Any:
    """The production ASGI app: ledger database, Celery publishing, broker readiness."""
    from worker.api.app import create_app
    from worker.brokers import make_ping
    from worker.db import Database
    from worker.tasks.app import configure
    from worker.tasks.jobs import dispatch_events
    from worker.tasks.scans import dispatch_scans

    if settings is None:  # a uvicorn worker process, started by import string
        settings = _settings()
        _logging(settings)
    configure(settings)
    database = Database(settings.database_url)
    return create_app(
        settings,
        database,
        enqueue=dispatch_events,
        broker_ping=make_ping(settings.broker_url),
        enqueue_scans=dispatch_scans,
    )


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Pool processes.")] = None,
    queues: Annotated[
        str, typer.Option(help="Comma-separated queues: realtime, bulk (campaigns).")
    ] = "realtime,bulk",
) -> None:
    """A Celery worker (production process)."""
    from worker.commands.rules import check_templates_at_start
    from worker.outbox.transport import check_destinations
    from worker.tasks.app import configure

    settings = _settings()
    _logging(settings)
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
            "--hostname=passsync@%h",
        ]
    )


@app.command()
def beat() -> None:
    """The scheduler: the sweeper and, later, campaign starts (production process)."""
    from worker.tasks.app import configure

    settings = _settings()
    _logging(settings)
    celery = configure(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery.start(["beat", f"--schedule={schedule}", f"--loglevel={settings.log_level}"])


@app.command()
def sandbox(
    port: Annotated[int | None, typer.Option(help="Port (default: sandbox.port).")] = None,
) -> None:
    """A local Passcreator-compatible server for trying passsync without an account."""
    from worker.providers.passcreator.sandbox.server import serve

    settings = _settings()
    _logging(settings)
    sandbox_settings = settings.sandbox
    if port is not None:
        sandbox_settings = sandbox_settings.model_copy(update={"port": port})
    serve(sandbox_settings)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the configured database to the latest schema (safe to repeat)."""
    from worker.migrate import upgrade

    settings = _settings()
    upgrade(settings.database_url)
    console.print("database is at the latest revision")


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Distinct customers.")] = 300,
    events: Annotated[int, typer.Option(help="Distinct events (before duplicates).")] = 3000,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the demo's data directory.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Where the demo keeps its data.")] = None,
) -> None:
    """Run the embedded stack, send a generated workload through the real receiver, verify it
    against the provider's own state and print a report. Exits 1 on any lost or twin pass."""
    from worker.demo import DemoOptions, run_demo

    options = DemoOptions(
        customers=customers, events=events, seed=seed, keep=keep, data_dir=data_dir
    )
    report = run_demo(options, console=console, as_json=as_json)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        sys.stderr.write(f"passsync: {exc}\n")  # one line, never wrapped
        sys.exit(2)


if __name__ == "__main__":
    main()
