"""`passsync health api|worker|beat`: container health checks, exit 0 when healthy, 1 when not.

Each check uses the same settings as the process it checks (the broker of `broker_url`, the
heartbeat under `data_dir`), so it asks the right broker, never a built-in default.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from worker.config import Settings, load_settings

health_app = typer.Typer(
    rich_markup_mode=None, help="Health checks for containers (exit 0 healthy, 1 not)."
)


def heartbeat_path(settings: Settings) -> Path:
    """The file beat touches on every tick."""
    return (settings.data_dir / "beat-heartbeat").resolve()


def _fail(message: str) -> None:
    typer.echo(f"unhealthy: {message}", err=True)
    raise typer.Exit(1)


@health_app.command("api")
def api_health(
    url: Annotated[str | None, typer.Option(help="Default: http://127.0.0.1:<api.port>.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds.")] = 5.0,
) -> None:
    """The API answers GET /readyz with 200 (database reachable and migrated, intake not
    overloaded, no provider key refused)."""
    base = url or f"http://127.0.0.1:{load_settings().api.port}"
    try:
        status = httpx.get(base.rstrip("/") + "/readyz", timeout=timeout).status_code
    except httpx.HTTPError as exc:
        _fail(f"api not reachable ({type(exc).__name__})")
        return
    if status != 200:
        _fail(f"/readyz answered {status}")
    typer.echo("ok")


@health_app.command("worker")
def worker_health(
    name: Annotated[str, typer.Option(help="The worker's --name.")] = "passsync",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the reply.")] = 5.0,
) -> None:
    """The worker NAME@<this host> answers a ping over the configured broker."""
    # Celery only for this check: the other two stay quick to start.
    from worker.tasks.app import configure  # noqa: PLC0415
    from worker.tasks.observe import ping_worker  # noqa: PLC0415

    configure(load_settings())
    try:
        alive = ping_worker(name, timeout=timeout)
    except Exception as exc:  # the broker itself is down
        _fail(f"broker not reachable ({type(exc).__name__})")
        return
    if not alive:
        _fail(f"worker {name} did not answer within {timeout:g} s")
    typer.echo("ok")


@health_app.command("beat")
def beat_health(
    max_age: Annotated[float, typer.Option(help="Seconds since beat's last tick.")] = 120.0,
) -> None:
    """Beat ticked within MAX_AGE seconds (it touches <data_dir>/beat-heartbeat each tick)."""
    path = heartbeat_path(load_settings())
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        _fail(f"no heartbeat at {path}")
        return
    if age > max_age:
        _fail(f"last heartbeat {age:.0f} s ago (more than {max_age:g} s)")
    typer.echo("ok")
