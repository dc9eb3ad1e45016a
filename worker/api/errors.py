"""Error answers: one body shape per kind, the handlers that produce them, and their OpenAPI.

Every error is `{"detail": "<reason>"}`, except 422, which is always
`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}` (never the offending input: it may
be personal data). A body that is not JSON answers 400, not 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Errors of JSON decoding, as FastAPI reports them when it parses a body itself.
_UNPARSABLE = frozenset({"json_invalid"})
# Routes that answer without the database or the receiver queue.
UNFAILING_PATHS = frozenset({"/healthz"})


class ErrorOut(BaseModel):
    """Any error but 422."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: what is wrong with which part of the request."""

    detail: list[FieldError]


DESCRIPTIONS = {
    400: "The body is not a JSON object (or not JSON at all), or the URL holds a NUL",
    401: "No valid credentials",
    403: "The token lacks the scope this route needs",
    404: "Unknown resource",
    405: "This method is not allowed here (the Allow header lists the ones that are)",
    409: "The resource is in a state that does not allow this",
    413: "The body is larger than the limit",
    422: "The request does not validate",
    503: "The database or the receiver is unavailable; retry after Retry-After seconds",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error codes (for a route's decorator)."""
    return {
        code: {
            "model": ValidationErrorOut if code == 422 else ErrorOut,
            "description": DESCRIPTIONS[code],
        }
        for code in codes
    }


def install(app: FastAPI) -> None:
    """The handlers giving every 400/422 the shapes above."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def document(app: FastAPI) -> None:
    """Declare, in the OpenAPI document, the error codes each operation can answer.

    Derived from the document itself (admin prefix, parameters, body, method), so a route
    added later is covered without naming it here; a route's own `responses=` wins.
    """
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _declare_errors(original())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _declare_errors(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ValidationErrorOut):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            declared = {int(code) for code in answers if code.isdigit() and int(code) >= 400}
            for code in sorted(declared | set(_codes(path, method, operation))):
                name = "ValidationErrorOut" if code == 422 else "ErrorOut"
                answer = answers.setdefault(str(code), {})
                if "description" not in answer or _is_default_422(code, answer):
                    answer["description"] = DESCRIPTIONS.get(code, "Error")
                # Every error is JSON, whatever the route's success media type.
                answer["content"] = {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}
                }


def _is_default_422(code: int, answer: dict[str, Any]) -> bool:
    text = str(answer)
    return code == 422 and "HTTPValidationError" in text


def _codes(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    codes: list[int] = []
    parameters = operation.get("parameters", [])
    body = "requestBody" in operation
    if path.startswith("/api/") or path == "/api":
        codes += [401, 403]
    if any(p.get("in") == "path" for p in parameters):
        codes.append(404)
    if parameters or body:
        codes.append(422)
    if method.upper() not in SAFE_METHODS:
        codes.append(413)
    if body or parameters:
        codes.append(400)  # a body that is not JSON; a NUL character in the URL
    if path not in UNFAILING_PATHS:
        codes.append(503)
    return codes


async def _invalid_request(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") in _UNPARSABLE for error in errors):
        return JSONResponse(
            {"detail": "body is not valid JSON"}, status_code=status.HTTP_400_BAD_REQUEST
        )
    detail = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in errors
    ]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail: Any = exc.detail
    if exc.status_code == status.HTTP_422_UNPROCESSABLE_CONTENT and not isinstance(detail, list):
        detail = [{"loc": [], "msg": str(detail), "type": "value_error"}]
    headers = dict(exc.headers or {})
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=headers)
