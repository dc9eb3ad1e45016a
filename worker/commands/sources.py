"""`passsync sources list|test`: what each source maps, and a captured request checked offline.

`test` runs exactly the receiver's checks (credentials, timestamp, signature on the raw
bytes, decoding, routes, mapping) on a request saved to a file, and prints the canonical
events, scans and ignored items it would record, or the reason it would be refused (exit 1).
Nothing is stored. Secrets come from the environment, as for the receiver.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from worker.config import ConfigError, Settings, SourceSettings, load_settings
from worker.inbound.schema import CanonicalEvent, EventBatch
from worker.inbound.signatures import SecretFormatError, SignatureError, WebhookVerifier
from worker.inbound.sources.adapter import (
    Mapped,
    RefusedError,
    RequestParts,
    SourceAdapter,
    SpecError,
)
from worker.inbound.sources.presets import RAW_PRESETS, spec_for
from worker.inbound.sources.spec import AdapterSpec, RouteSpec

sources_app = typer.Typer(
    rich_markup_mode=None,
    help="Webhook sources: what each maps; check a captured request offline.",
    no_args_is_help=True,
)


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@sources_app.command("list")
def list_command(
    kinds: Annotated[bool, typer.Option("--kinds", help="Every kind's preset instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The configured sources (or with --kinds every preset): auth, target, what maps to what."""
    rows = _preset_rows() if kinds else _source_rows(_settings())
    if as_json:
        sys.stdout.write(json.dumps({"sources": rows}, indent=2) + "\n")
        return
    table = Table(
        "source", "kind", "auth", "secret", "target", "sender type -> canonical", title="sources"
    )
    for row in rows:
        routes = "\n".join(f"{r['on']} -> {r['to']}" for r in row["routes"])
        secret = row.get("secret", "")
        table.add_row(row["name"], row["kind"], row["auth"], secret, row["target"], routes)
    Console(width=200).print(table)


@sources_app.command("test")
def test_command(
    source: Annotated[str, typer.Argument(help="A source name from the settings.")],
    request_file: Annotated[
        Path,
        typer.Argument(
            metavar="REQUEST_FILE",
            help="The raw HTTP request (request line, headers, blank line, body), or JSON "
            '{"method", "url", "headers", "body"}.',
        ),
    ],
    now: Annotated[
        float | None,
        typer.Option(help="Unix time to check timestamps against (default: now)."),
    ] = None,
) -> None:
    """Verify and map a captured request like the receiver; exit 1 with the reason if refused."""
    settings = _settings()
    config = settings.sources.get(source)
    if config is None:
        typer.echo(f"unknown source {source!r}; configured: {sorted(settings.sources)}", err=True)
        raise typer.Exit(2)
    try:
        captured = read_request(request_file.read_bytes())
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read {request_file}: {exc}", err=True)
        raise typer.Exit(2) from None
    at = time.time() if now is None else now
    try:
        if config.kind == "standard":
            result = _standard(settings, config, captured, at)
        else:
            result = _adapter(_build(source, config), captured, at)
    except SignatureError as exc:
        _refused(401, exc.reason)
    except RefusedError as exc:
        _refused(exc.status, exc.reason)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


def read_request(raw: bytes) -> CapturedRequest:
    """A captured request from raw HTTP/1.1 text or the JSON form; ValueError if neither."""
    if raw.lstrip().startswith(b"{"):
        data = json.loads(raw)
        body = data.get("body", "")
        return CapturedRequest(
            method=str(data.get("method", "POST")),
            url=str(data["url"]),
            headers={str(k): str(v) for k, v in dict(data.get("headers", {})).items()},
            body=body.encode() if isinstance(body, str) else bytes(body),
        )
    # The signature covers the body's bytes as sent: they are taken from the capture as is.
    ends = sorted((raw.find(m), m) for m in (b"\r\n\r\n", b"\n\n") if raw.find(m) >= 0)
    head, body = raw, b""
    if ends:
        at, marker = ends[0]
        head, body = raw[:at], raw[at + len(marker) :]
    lines = head.decode("latin-1").splitlines()
    if not lines or len(lines[0].split()) < 2:
        raise ValueError("no request line (METHOD /path HTTP/1.1)")
    method, target = lines[0].split()[:2]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise ValueError(f"not a header line: {line[:40]!r}")
        headers[name.strip()] = value.strip()
    lookup = {k.lower(): v for k, v in headers.items()}
    length = lookup.get("content-length", "")
    if length.isdigit():
        body = body[: int(length)]  # e.g. the newline an editor adds at the end of the file
    url = target if "://" in target else f"https://{lookup.get('host', 'localhost')}{target}"
    return CapturedRequest(method=method, url=url, headers=headers, body=body)


def _parts(captured: CapturedRequest) -> RequestParts:
    query = dict(parse_qsl(urlsplit(captured.url).query, keep_blank_values=True))
    return RequestParts(captured.method, captured.url, captured.headers, query)


def _adapter(adapter: SourceAdapter, captured: CapturedRequest, now: float) -> dict[str, Any]:
    parts = _parts(captured)
    checked = adapter.check_headers(parts, now=now)
    adapter.verify_body(checked, parts, captured.body)
    mapped = adapter.map_request(checked, parts, captured.body)
    status, content_type, _ = adapter.answer()
    return _result(mapped, status, content_type)


def _result(mapped: Mapped, status: int, content_type: str) -> dict[str, Any]:
    return {
        "answer": {"status": status, "content_type": content_type, "ping": mapped.ping},
        "events": [e.model_dump(mode="json") for e in mapped.events],
        "scans": [s.model_dump(mode="json") for s in mapped.scans],
        "ignored": [
            {"id": i.event_id, "sender_type": i.sender_type, "reason": i.reason}
            for i in mapped.ignored
        ],
    }


def _standard(
    settings: Settings, config: SourceSettings, captured: CapturedRequest, now: float
) -> dict[str, Any]:
    try:
        verifier = WebhookVerifier.for_source(
            config, tolerance_seconds=settings.api.signature_tolerance_seconds
        )
    except SecretFormatError as exc:
        raise SignatureError(str(exc)) from None
    verifier.verify(captured.headers, captured.body, now=now)
    try:
        data = json.loads(captured.body)
        events: list[CanonicalEvent] = (
            EventBatch.model_validate(data).events
            if isinstance(data, dict) and "events" in data
            else [CanonicalEvent.model_validate(data)]
        )
    except ValueError as exc:  # JSONDecodeError and ValidationError are ValueErrors
        reason = "not a valid event" if isinstance(exc, ValidationError) else "body is not JSON"
        raise RefusedError(422 if isinstance(exc, ValidationError) else 400, reason) from None
    return _result(Mapped(events, [], []), 202, "application/json")


def _refused(status: int, reason: str | list[dict[str, Any]]) -> None:
    shown = reason if isinstance(reason, str) else json.dumps(reason)
    typer.echo(f"refused: {status} {shown}", err=True)
    raise typer.Exit(1)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def _build(name: str, config: SourceSettings) -> SourceAdapter:
    try:
        return SourceAdapter(name, config)
    except (SpecError, SecretFormatError) as exc:
        typer.echo(f"sources.{name}: {exc}", err=True)
        raise typer.Exit(2) from None


# -- list -------------------------------------------------------------------------------------


def _source_rows(settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for name, config in settings.sources.items():
        if config.kind == "standard":
            row = _row(name, "standard", "standard-webhooks", config.target or "events", [])
        else:
            adapter = _build(name, config)
            row = _row(name, config.kind, _auth(adapter.spec), adapter.target, adapter.routes)
        # Whether the environment sets it, never its value.
        has_secret = config.secret is not None and config.secret.get_secret_value().strip()
        row["secret"] = "set" if has_secret else "missing"
        rows.append(row)
    return rows


def _preset_rows() -> list[dict[str, Any]]:
    rows = [_row("", "standard", "standard-webhooks", "events", [])]
    for kind in RAW_PRESETS:
        spec = spec_for(kind)
        rows.append(_row("", kind, _auth(spec), "events", spec.routes))
        if spec.scan_routes:
            rows.append(_row("", kind, _auth(spec), "scans", spec.scan_routes))
    return rows


def _row(
    name: str, kind: str, auth: str, target: str, routes: tuple[RouteSpec, ...] | list[RouteSpec]
) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "auth": auth,
        "target": target,
        "routes": [
            {
                "on": ", ".join(r.on) + (f" when {r.when}" if r.when else ""),
                "to": r.type if r.type else f"ignored ({r.ignore})",
            }
            for r in routes
        ],
    }


def _auth(spec: AdapterSpec) -> str:
    names = []
    for method in spec.verify:
        mac = method.hmac
        if mac is not None:
            version = f" ({mac.version})" if mac.version else ""
            names.append(f"{mac.mode}-{mac.algorithm} {mac.header[0]}{version}")
        else:
            names.append(method.scheme)
    return " | ".join(names) or "(none)"
