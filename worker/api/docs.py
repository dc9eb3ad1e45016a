"""GET /docs: Swagger UI served from an installed package (no CDN: works offline), and an
OpenAPI text for users, with the code's internal notes taken out."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_URL = "/docs"
ASSETS_URL = "/docs/assets"
# Swagger UI's bundle and stylesheet as shipped in the fastapi-offline wheel.
ASSETS = files("fastapi_offline") / "static"

# Notes for maintainers in docstrings: section references into vendor references ("(§3.6)")
# and paragraphs that point into the source tree.
_SECTION_REF = re.compile(r"\s*\(§[^)]*\)|\s*§\s?[\d.]*\d")
_INTERNAL = re.compile(r"worker/|\.py\b")


def install_docs(app: FastAPI) -> None:
    """Serve /docs from local assets and a cleaned OpenAPI document at /openapi.json."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(ASSETS)), name="docs-assets")

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = clean(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def clean(node: Any) -> Any:
    """The OpenAPI document with internal notes removed from every description."""
    if isinstance(node, dict):
        return {
            k: (
                clean_text(v)
                if k in ("description", "summary") and isinstance(v, str)
                else clean(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [clean(item) for item in node]
    return node


def clean_text(text: str) -> str:
    """A description without section references or paragraphs about source files."""
    text = _SECTION_REF.sub("", text)
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if not _INTERNAL.search(p)]
    return "\n\n".join(p.strip() for p in paragraphs if p.strip())
