"""Structured logs (structlog over the standard library): JSON or console, context on every line.

Every module keeps its plain `logging.getLogger(...)`; the root handler renders each record
through structlog's processors, so third-party lines and ours look the same. Context bound
with `bind()` (event id, campaign id, account, actor, task id) is a context variable: it
rides on every line of the task or request that bound it, and never leaks into another.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, clear_contextvars

from worker.observability import redact

# Loggers of libraries that talk a lot at INFO (per task, per tick, per request).
THIRD_PARTY = (
    "celery",
    "kombu",
    "amqp",
    "httpx",
    "httpcore",
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "alembic",
    "asyncio",
    "urllib3",
    "mcp",
    "sqlalchemy",
    "opentelemetry",
)

# The keys a line may carry as context (documented; `bind` accepts only these).
CONTEXT_KEYS = ("event_id", "campaign_id", "account", "actor", "task_id", "source", "trace_id")


def shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]


def configure_logging(
    level: str = "INFO",
    *,
    fmt: str = "console",
    third_party_level: str = "WARNING",
    stream: TextIO | None = None,
) -> None:
    """Install the root handler (replacing any other) and quiet the chatty libraries."""
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        exc: list[Any] = [structlog.processors.format_exc_info]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        exc = []
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    # No URL query string or password in any line, ours or a library's (issue 16, M3).
    redact.install(handler)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(third_party_level)
    structlog.configure(
        processors=[
            *shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def from_settings(settings: Any) -> None:
    """configure_logging with `log_level` and `logging.*` of the settings."""
    configure_logging(
        settings.log_level,
        fmt=settings.logging.format,
        third_party_level=settings.logging.third_party_level,
    )


def bind(**context: Any) -> None:
    """Add context to every following line of this task or request."""
    bind_contextvars(**{k: v for k, v in context.items() if v is not None})


@contextmanager
def context(**values: Any) -> Iterator[None]:
    """Context for the lines inside the block only."""
    with bound_contextvars(**{k: v for k, v in values.items() if v is not None}):
        yield


def clear() -> None:
    """Forget the context (at the end of a task: pool processes run many tasks)."""
    clear_contextvars()


def get_logger(name: str) -> Any:
    """A structlog logger: `log.info("event applied", outcome=...)` gives key=value fields."""
    return structlog.get_logger(name)
