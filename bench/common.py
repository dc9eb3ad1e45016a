"""What the benchmarks share: a Postgres database of their own and free local ports."""

from __future__ import annotations

import os
import socket

import psycopg


def admin_url() -> str:
    """An admin connection (PASSSYNC_BENCH_PG); each benchmark creates and drops its own DB."""
    return os.environ.get("PASSSYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(name: str) -> str:
    """Create database `name` (dropping an old one), migrate it; its SQLAlchemy URL."""
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    base = psycopg.conninfo.conninfo_to_dict(admin_url())
    url = (
        f"postgresql+psycopg://{base.get('user', 'postgres')}@{base.get('host', '127.0.0.1')}:"
        f"{base.get('port', 5432)}/{name}"
    )
    from worker.migrate import upgrade

    upgrade(url)
    return url


def drop_database(name: str) -> None:
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
