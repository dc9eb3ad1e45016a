"""Subscribe passsync to the provider's callbacks idempotently: list first, add what is missing."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlencode

# (event, target_url) pairs the provider already holds, and a call that adds one.
ListHooks = Callable[[], Iterable[tuple[str | None, str | None]]]
AddHook = Callable[[str, str], object]


def callback_url(public_url: str, token: str, event: str) -> str:
    """The URL one event is delivered to: the token authenticates, the event names it."""
    separator = "&" if "?" in public_url else "?"
    return public_url + separator + urlencode({"token": token, "event": event})


def ensure_subscriptions(
    list_hooks: ListHooks, add_hook: AddHook, public_url: str, token: str, events: list[str]
) -> list[str]:
    """Subscribe each event whose URL is not subscribed yet; returns the events added.

    Passcreator's subscribe is not idempotent (a repeat makes a twin hook), so this lists
    the hooks first and never subscribes an (event, URL) pair twice.
    """
    present = {(event, url) for event, url in list_hooks()}
    added: list[str] = []
    for event in events:
        url = callback_url(public_url, token, event)
        if (event, url) not in present:
            add_hook(event, url)
            added.append(event)
    return added
