"""No URL query string, password or token in a log line, whoever wrote the line.

Query strings carry secrets (a callback URL's `?token=`, a paging cursor, customer ids), and
URLs with userinfo carry passwords. `RedactFilter`, on the root handler, rewrites every
record that passes through it, ours and third-party ones alike (httpx logs each request's
full URL at INFO, uvicorn's access log each request's path and query), so raising a
library's log level for debugging never prints them either.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[redacted]"

# A URL (scheme://...) or an absolute path, then a query string: the query goes.
_QUERY = re.compile(r"""((?:\b[a-zA-Z][a-zA-Z0-9+.-]*://|(?<![\w/])/)[^\s?#"'<>]*)\?[^\s#"'<>]*""")
# user:password@ in a URL: the password goes.
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@\"']*):[^\s/@\"']*@")


def redact_text(text: str) -> str:
    """`text` with every URL's query string and password replaced by [redacted]."""
    if "?" not in text and "@" not in text:
        return text
    text = _QUERY.sub(rf"\1?{REDACTED}", text)
    return _USERINFO.sub(rf"\1:{REDACTED}@", text)


def redact_url(url: str) -> str:
    """A URL fit to show: no query string, no fragment, no password."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{REDACTED}@", 1)
    query = REDACTED if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class RedactFilter(logging.Filter):
    """Rewrites a record's message (and structlog's event dict) without URL secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):  # a structlog event dict, rendered later
            record.msg = {k: _redact_value(v) for k, v in record.msg.items()}
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def _redact_value(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else value


def install(handler: logging.Handler) -> None:
    """Redact every record `handler` emits (idempotent)."""
    if not any(isinstance(f, RedactFilter) for f in handler.filters):
        handler.addFilter(RedactFilter())
