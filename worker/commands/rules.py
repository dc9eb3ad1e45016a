"""`passsync rules check|explain`: validate the rules, and dry-run them on one event."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from worker.audit import AuditRecorder
from worker.config import ENV_PREFIX, ConfigError, Settings, load_settings
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.providers import registry
from worker.providers.credentials import CredentialStatus, is_refused_key
from worker.providers.errors import ProviderError
from worker.providers.registry import build_provider
from worker.sync.explain import Explanation, explain, load_states
from worker.sync.rules import RulesError, RuleSet, compile_rules, missing_templates

rules_app = typer.Typer(
    rich_markup_mode=None, help="Check the sync rules and dry-run them on an event."
)
log = logging.getLogger("passsync.rules")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="Config file (default: the one in force).")
]


@contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    """Load settings from `path` instead of the config in force, for this command only."""
    if path is None:
        yield
        return
    if not path.is_file():
        raise ConfigError(f"config file {path}: no such file")
    key = ENV_PREFIX + "CONFIG"
    before = os.environ.get(key)
    os.environ[key] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def _load(path: Path | None) -> tuple[Settings, RuleSet]:
    with _config_file(path):
        settings = load_settings()
    return settings, compile_rules(settings.sync, registry.capabilities(settings))


def _fail(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


@rules_app.command("check")
def check(
    file: Annotated[
        Path | None, typer.Argument(help="Config file (default: the one in force).")
    ] = None,
    provider: Annotated[
        bool, typer.Option("--provider", help="Also look the templates up at the provider.")
    ] = False,
) -> None:
    """Validate the rules: syntax, event fields, pass keys and (--provider) template names."""
    try:
        settings, rules = _load(file)
    except RulesError as exc:
        _fail(exc.problems)
        return
    except ConfigError as exc:
        _fail([str(exc)])
        return
    if provider:
        _fail_on_missing_templates(settings, rules)
    names = ", ".join(rule.name for rule in rules.rules) or "none"
    typer.echo(f"{len(rules.rules)} rules OK: {names}")


def _fail_on_missing_templates(settings: Settings, rules: RuleSet) -> None:
    try:
        problems = templates_problems(settings, rules)
    except ProviderError as exc:
        _fail([f"could not list the provider's templates: {exc.message}"])
        return
    if problems:
        _fail(problems)


def templates_problems(
    settings: Settings, rules: RuleSet, on_attempt: Callable[[Any], None] | None = None
) -> list[str]:
    """One line per rule whose template its account's platform does not list (ProviderError
    if a list cannot be read); each account is asked for its own templates."""
    problems: list[str] = []
    for account in rules.templates_by_account():
        client = build_provider(settings, account, on_attempt=on_attempt)
        try:
            listed = client.list_templates()
        finally:
            client.close()
        found = missing_templates(rules, listed, account=account)
        suffix = f" (account {account!r})" if len(settings.providers) > 1 else ""
        problems += [line + suffix for line in found]
    return problems


def check_templates_at_start(settings: Settings) -> None:
    """At worker start: unknown templates stop it (RulesError); an unreachable provider is
    only logged, since the events wait and retry until it answers."""
    rules = compile_rules(settings.sync, registry.capabilities(settings))
    database = Database(settings.database_url, pool_size=1)
    # Audited like every provider call (actor: system); written at once, no transaction open.
    recorder = AuditRecorder(database, provider=registry.account(settings).name)
    try:
        problems = templates_problems(settings, rules, recorder.on_attempt)
    except ProviderError as exc:
        if is_refused_key(exc):
            name = registry.account(settings).name
            raise ConfigError(
                f"{CredentialStatus.REFUSED.value} (account {name!r}): check "
                f"PASSSYNC_PROVIDERS__{name.upper()}__API_KEY"
            ) from None
        log.warning("could not check the rules' templates at start: %s", exc.message)
        return
    finally:
        database.dispose()
    if problems:
        raise RulesError(problems)


@rules_app.command("explain")
def explain_command(
    event_file: Annotated[Path, typer.Argument(help="A canonical event as JSON.")],
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show which rules EVENT_FILE matches and the calls they would make (no call is made)."""
    try:
        settings, rules = _load(config)
    except RulesError as exc:
        _fail(exc.problems)
        return
    event = _read_event(event_file)
    keys = sorted(rules.templates)
    states, source = _states(settings, rules, event, keys)
    prefix = settings.sync.external_id_prefix
    result = explain(event, rules, states, id_prefix=prefix, state_source=source)
    typer.echo(json.dumps(_as_dict(result), indent=2) if as_json else _as_text(result))


def _read_event(path: Path) -> CanonicalEvent:
    try:
        return CanonicalEvent.model_validate_json(path.read_bytes())
    except OSError as exc:
        _fail([f"{path}: {exc.strerror}"])
    except ValidationError as exc:
        lines = [
            f"{path}: {'.'.join(str(p) for p in err['loc']) or 'event'}: {err['msg']}"
            for err in exc.errors()
        ]
        _fail(lines)
    raise AssertionError("unreachable")  # pragma: no cover - _fail always exits


def _states(
    settings: Settings, rules: RuleSet, event: CanonicalEvent, keys: list[str]
) -> tuple[Any, str]:
    """The customer's mapping rows, or none with the reason when the database is out of reach."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return {}, f"no database at {url.database}; assuming no passes yet"
    database = Database(settings.database_url, pool_size=1)
    try:
        with database.sessions() as session:
            states: dict[str, Any] = {}
            for account in {rules.account_of(key) for key in keys}:
                mine = [key for key in keys if rules.account_of(key) == account]
                states |= load_states(session, account, event.customer.id, mine)
        return states, "database"
    except Exception as exc:  # any failure only means: explain without the stored state
        return {}, f"database not readable ({type(exc).__name__}); assuming no passes yet"
    finally:
        database.dispose()


def _as_dict(result: Explanation) -> dict[str, Any]:
    return asdict(result)


def _as_text(result: Explanation) -> str:
    lines = [
        f"event {result.event_id} ({result.event_type}) for customer {result.customer_id}",
        "rules:",
    ]
    for verdict in result.rules:
        mark = "match" if verdict.matched else "skip "
        lines.append(f"  {mark} {verdict.name}: {verdict.reason}")
    lines.append(f"calls (dry run; pass state from {result.state_source}):")
    if not result.calls:
        lines.append("  none")
    for call in result.calls:
        detail = " ".join(f"{k}={json.dumps(v)}" for k, v in call.detail.items())
        note = f"  ({call.note})" if call.note else ""
        lines.append(f"  {call.pass_key}: {call.call} {detail}".rstrip() + note)
    return "\n".join(lines)
