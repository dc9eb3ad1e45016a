"""Schemathesis over /openapi.json with a write token: no 5xx, and every answer as documented.

Every operation of the document (routes added later included) gets positive and negative
generated requests; checks: not_a_server_error, status_code_conformance,
content_type_conformance, response_schema_conformance. At least 1,000 cases in all.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.hardening.conftest import WRITE

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 45
# The streamed campaign import takes NDJSON: generated strings go on the wire as text.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")
MIN_CASES = 1_000


def _runner(strategy: Any, count: list[int]) -> Any:
    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        count[0] += 1
        case.call_and_validate(headers=dict(WRITE), checks=CHECKS)

    return run


def test_every_operation_answers_as_documented(app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    cases: dict[str, int] = {}
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
        count = [0]
        try:
            _runner(strategy, count)()
        except Exception as exc:  # every operation runs; the failures are reported together
            failures[operation.label] = f"{type(exc).__name__}: {exc}"[:3000]
        cases[operation.label] = count[0]
    assert failures == {}
    assert len(cases) >= 20, sorted(cases)
    assert sum(cases.values()) >= MIN_CASES, cases
