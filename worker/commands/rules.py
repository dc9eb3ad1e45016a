"""`passsync rules check|explain`: validate the rules, and dry-run them on one event."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from worker.audit import AuditRecorder
from worker.config import ENV_PREFIX, ConfigError, Settings, UsageRule, load_settings
from worker.db import Database
from worker.inbound.schema import CanonicalEvent
from worker.providers import registry
from worker.providers.credentials import CredentialStatus, is_refused_key
from worker.providers.errors import ProviderError
from worker.providers.port import TemplateField
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
        bool,
        typer.Option(
            "--provider",
            help="Also look the templates and every field the rules set up at the provider.",
        ),
    ] = False,
) -> None:
    """Validate the rules: syntax, event fields, pass keys and (--provider) that each template
    exists and takes every field a rule (or a visit's counter) sets."""
    try:
        settings, rules = _load(file)
    except RulesError as exc:
        _fail(exc.problems)
        return
    except ConfigError as exc:
        _fail([str(exc)])
        return
    if provider:
        _fail_on_provider_problems(settings, rules)
    names = ", ".join(rule.name for rule in rules.rules) or "none"
    typer.echo(f"{len(rules.rules)} rules OK: {names}")


def _fail_on_provider_problems(settings: Settings, rules: RuleSet) -> None:
    try:
        found = provider_check(settings, rules)
    except ProviderError as exc:
        _fail([f"could not read the provider's templates: {exc.message}"])
        return
    for line in found.unchecked:
        typer.echo(line, err=True)
    if found.problems:
        _fail(found.problems)


# A wrong field's line names at most this many of the template's fields.
SHOWN_FIELDS = 12


@dataclass(frozen=True)
class ProviderCheck:
    """What the provider says of the rules: one line per problem, and what was not checked."""

    templates: list[str] = field(default_factory=list)  # templates the account lacks
    fields: list[str] = field(default_factory=list)  # fields a template does not take
    unchecked: list[str] = field(default_factory=list)  # accounts whose fields nobody lists

    @property
    def problems(self) -> list[str]:
        return self.templates + self.fields


def provider_check(
    settings: Settings, rules: RuleSet, on_attempt: Callable[[Any], None] | None = None
) -> ProviderCheck:
    """Each account is asked for its own templates (one list) and, where its platform lists
    them, each used template's fields (one call per template). ProviderError when the
    provider cannot be read."""
    result = ProviderCheck()
    many = len(settings.providers) > 1
    for account, used in rules.templates_by_account().items():
        suffix = f" (account {account!r})" if many else ""
        kind = registry.account(settings, account).kind
        client = build_provider(settings, account, on_attempt=on_attempt)
        try:
            listed = client.list_templates()
            found = missing_templates(rules, listed, account=account)
            result.templates.extend(line + suffix for line in found)
            if kind.template_fields is None:
                result.unchecked.append(
                    f"fields not checked{suffix}: {kind.title} does not list template fields"
                )
                continue
            ids = {t.name: t.template_id for t in listed}
            for name in sorted(set(used) & set(ids)):
                accepted = kind.template_fields(client, ids[name])
                lines = unknown_fields(
                    rules,
                    settings.usage.rules,
                    account=account,
                    template=name,
                    accepted=accepted,
                    takes_unlisted=kind.takes_unlisted_field,
                )
                result.fields.extend(line + suffix for line in lines)
        finally:
            client.close()
    return result


def unknown_fields(
    rules: RuleSet,
    usage: list[UsageRule],
    *,
    account: str,
    template: str,
    accepted: list[TemplateField],
    takes_unlisted: Callable[[str], bool],
) -> list[str]:
    """One line per field an upsert (or a visit's counter) on `template` sets that the
    template does not take, by name or by the platform's field id."""
    known = {f.name for f in accepted} | {f.id for f in accepted if f.id}
    own = sorted(f.name for f in accepted if f.type != "pass")  # not the pass's own keys
    shown = ", ".join(own[:SHOWN_FIELDS]) + (", ..." if len(own) > SHOWN_FIELDS else "")
    shown = shown or "none"

    def wrong(name: str) -> bool:
        return name not in known and not takes_unlisted(name)

    lines = []
    for rule in rules.rules:
        for action in rule.actions:
            if action.template != template or rules.account_of(action.pass_key) != account:
                continue
            lines += [
                f"rule {rule.name!r}: field {name!r} is not a field of template "
                f"{template!r} (its fields: {shown})"
                for name, _ in action.fields
                if wrong(name)
            ]
    for use in usage:
        if use.mode != "visit" or rules.templates.get(use.pass_key) != template:
            continue
        if rules.account_of(use.pass_key) != account:
            continue
        lines += [
            f"usage rule {use.pass_key!r} (visit): field {name!r} is not a field of template "
            f"{template!r} (its fields: {shown})"
            for name in (use.visits_field, use.points_field)
            if name and wrong(name)
        ]
    return lines


def check_templates_at_start(settings: Settings) -> None:
    """At worker start: a template the account lacks, or a field a template does not take,
    stops it (RulesError, one line each) before any event dead-letters on it; an unreachable
    provider is only logged, since the events wait and retry until it answers."""
    rules = compile_rules(settings.sync, registry.capabilities(settings))
    database = Database(settings.database_url, pool_size=1)
    # Audited like every provider call (actor: system); written at once, no transaction open.
    recorder = AuditRecorder(database, provider=registry.account(settings).name)
    try:
        found = provider_check(settings, rules, recorder.on_attempt)
    except ProviderError as exc:
        if is_refused_key(exc):
            name = registry.account(settings).name
            raise ConfigError(
                f"{CredentialStatus.REFUSED.value} (account {name!r}): check "
                f"PASSSYNC_PROVIDERS__{name.upper()}__API_KEY"
            ) from None
        log.warning("could not check the rules' templates and fields at start: %s", exc.message)
        return
    finally:
        database.dispose()
    for line in found.unchecked:
        log.info("%s", line)
    if found.problems:
        raise RulesError(found.problems)


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
