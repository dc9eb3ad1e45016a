"""/docs works offline: Swagger UI's assets come from this server, and the OpenAPI text has
no internal notes (issue 18, item 12)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient


def test_docs_page_loads_its_assets_from_this_server(client: TestClient) -> None:
    # When the docs page is opened
    page = client.get("/docs")
    # Then it names no other host, and every script and stylesheet it names is served here
    assert page.status_code == 200
    assert not re.search(r"""(?:src|href)=["']https?://""", page.text)
    assets = re.findall(r"""(?:src|href)=["'](/docs/assets/[^"']+)["']""", page.text)
    assert sorted(a.rsplit("/", 1)[1] for a in assets) == [
        "favicon.png",
        "swagger-ui-bundle.js",
        "swagger-ui.css",
    ]
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 1000, asset
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text


def test_openapi_text_has_no_internal_notes(client: TestClient) -> None:
    text = json.dumps(client.get("/openapi.json").json())
    assert "worker/" not in text and ".py" not in text and "§" not in text
    webhook = client.get("/openapi.json").json()["paths"]["/webhooks/{source}"]["post"]
    assert webhook["description"] == (
        'One canonical event or {"events": [...]}, signed with the source\'s secret.'
    )


def test_redoc_is_not_served_from_a_cdn(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
