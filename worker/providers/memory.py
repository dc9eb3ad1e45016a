"""An in-memory provider with the port's semantics (no platform's), for domain tests and
benchmarks.

It keeps the uniqueness guard on external (user-provided) ids, merges updates, answers 404
for deleted passes, counts every call, and can fail on purpose: `fail_next` raises an error
before the call takes effect, `fail_after_next` applies the call and then raises (a lost
answer).
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from worker.providers.errors import AlreadyExistsError, NotFoundError, ProviderError
from worker.providers.port import ProviderPass, ProviderTemplate, TemplateField


@dataclass
class StoredPass:
    pass_id: str
    user_provided_id: str
    template_id: str
    fields: dict[str, Any]
    voided: bool = False
    deleted: bool = False


@dataclass
class MemoryProvider:
    name: str = "memory"
    templates: dict[str, str] = field(
        default_factory=lambda: {"tpl-loyalty": "Loyalty Card", "tpl-welcome": "Welcome Discount"}
    )
    # Template id -> the field names its passes take (`template_fields`); none listed: none.
    fields: dict[str, list[str]] = field(default_factory=dict)
    passes: dict[str, StoredPass] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    pushes: list[tuple[str, str]] = field(default_factory=list)
    # (identifier, template_id) of every get_pass: what a lookup was told
    lookups: list[tuple[str, str | None]] = field(default_factory=list)
    fail_next: dict[str, list[ProviderError]] = field(default_factory=dict)
    fail_after_next: dict[str, list[ProviderError]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _enter(self, action: str) -> None:
        self.calls[action] += 1
        queued = self.fail_next.get(action)
        if queued:
            raise queued.pop(0)

    def _leave(self, action: str) -> None:
        queued = self.fail_after_next.get(action)
        if queued:
            raise queued.pop(0)

    def _view(self, stored: StoredPass) -> ProviderPass:
        return ProviderPass(
            pass_id=stored.pass_id,
            user_provided_id=stored.user_provided_id,
            template_id=stored.template_id,
            voided=stored.voided,
            fields=dict(stored.fields),
            download_page=f"https://example.test/p/{stored.pass_id}",
            iphone_uri=f"https://example.test/p/{stored.pass_id}.pkpass",
            android_uri=f"https://example.test/g/{stored.pass_id}",
        )

    def live(self) -> list[StoredPass]:
        return [p for p in self.passes.values() if not p.deleted]

    def create_pass(
        self, *, template_id: str, user_provided_id: str, fields: dict[str, Any]
    ) -> ProviderPass:
        with self._lock:
            self._enter("create")
            if template_id not in self.templates:
                raise NotFoundError(f"template {template_id} not found", status=404)
            if any(p.user_provided_id == user_provided_id for p in self.live()):
                raise AlreadyExistsError("userProvidedId is already used", status=400)
            stored = StoredPass(
                f"pass-{next(self._ids)}", user_provided_id, template_id, dict(fields)
            )
            self.passes[stored.pass_id] = stored
            self._leave("create")
            return self._view(stored)

    def update_pass(self, pass_id: str, fields: dict[str, Any]) -> ProviderPass:
        with self._lock:
            self._enter("update")
            stored = self._live_by_id(pass_id)
            stored.fields.update(fields)
            self._leave("update")
            return self._view(stored)

    def close(self) -> None:
        """Nothing to release (the real clients close their HTTP pools)."""

    def get_pass(self, identifier: str, *, template_id: str | None = None) -> ProviderPass:
        with self._lock:
            self._enter("get")
            self.lookups.append((identifier, template_id))
            for stored in self.live():
                if identifier in (stored.pass_id, stored.user_provided_id):
                    return self._view(stored)
            raise NotFoundError(f"pass {identifier} not found", status=404)

    def list_templates(self) -> list[ProviderTemplate]:
        with self._lock:
            self._enter("list_templates")
            return [ProviderTemplate(template_id=k, name=v) for k, v in self.templates.items()]

    def template_fields(self, template_id: str) -> list[TemplateField]:
        with self._lock:
            self._enter("template_fields")
            return [TemplateField(name=name) for name in self.fields.get(template_id, [])]

    def set_voided(self, pass_id: str, voided: bool) -> ProviderPass:
        with self._lock:
            self._enter("void" if voided else "unvoid")
            stored = self._live_by_id(pass_id)
            stored.voided = voided
            self._leave("void" if voided else "unvoid")
            return self._view(stored)

    def delete_pass(self, pass_id: str) -> None:
        with self._lock:
            self._enter("delete")
            self._live_by_id(pass_id).deleted = True
            self._leave("delete")

    def send_push(self, pass_id: str, message: str) -> None:
        with self._lock:
            self._enter("push")
            self._live_by_id(pass_id)
            self.pushes.append((pass_id, message))
            self._leave("push")

    def _live_by_id(self, pass_id: str) -> StoredPass:
        stored = self.passes.get(pass_id)
        if stored is None or stored.deleted:
            raise NotFoundError(f"pass {pass_id} not found", status=404)
        return stored

    def delete_externally(self, pass_id: str) -> None:
        with self._lock:
            self.passes[pass_id].deleted = True
