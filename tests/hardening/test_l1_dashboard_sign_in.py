"""L1: the dashboard cookie is a random, expiring, read-only session; login links work once."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.hardening.conftest import READ, READ_TOKEN, WRITE_TOKEN
from worker.api import login
from worker.api.dashboard import COOKIE


def link(name: str = "viewer", secret: str = READ_TOKEN, ttl: int = 600) -> str:
    code = login.make_code("link", name, login.signing_key(secret), ttl=ttl)
    return f"{login.LOGIN_PATH}?code={code}"


def test_the_token_in_the_url_no_longer_opens_the_dashboard(client: TestClient) -> None:
    first = client.get("/dashboard", params={"token": READ_TOKEN})
    again = client.get("/dashboard", params={"token": READ_TOKEN})
    assert (first.status_code, again.status_code) == (401, 401)
    assert COOKIE not in client.cookies


def test_a_login_link_works_once_and_sets_a_session_that_is_not_the_token(
    client: TestClient,
) -> None:
    url = link()
    # When the link is opened
    first = client.get(url, follow_redirects=False)
    # Then it signs in: a session cookie, HttpOnly, expiring, holding no token
    assert first.status_code == 303
    assert first.headers["location"] == "/dashboard"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Max-Age=43200" in cookie and "SameSite=strict" in cookie
    assert "Secure" not in cookie  # plain HTTP
    session = client.cookies[COOKIE]
    assert READ_TOKEN not in session and READ_TOKEN not in url
    assert client.get("/dashboard").status_code == 200
    # And the same link a second time is refused
    client.cookies.clear()
    assert client.get(url, follow_redirects=False).status_code == 401


def test_over_https_the_session_cookie_is_secure(app: FastAPI) -> None:
    with TestClient(app, base_url="https://passsync.example") as client:
        answer = client.get(link(), follow_redirects=False)
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


def test_a_session_opens_the_dashboard_only(client: TestClient) -> None:
    client.get(link())
    session = client.cookies[COOKIE]
    # not the admin API, neither as a cookie nor as a bearer token
    assert client.get("/api/events").status_code == 401
    assert client.get(
        "/api/events", headers={"Authorization": f"Bearer {session}"}
    ).status_code == (401)


def test_expired_forged_or_foreign_codes_are_refused(client: TestClient) -> None:
    key = login.signing_key(READ_TOKEN)
    expired = login.make_code("link", "viewer", key, ttl=60, now=time.time() - 3600)
    session_as_link = login.make_code("session", "viewer", key, ttl=600)
    forged = login.make_code("link", "viewer", login.signing_key("guessed"), ttl=600)
    unknown_token = login.make_code("link", "nobody", key, ttl=600)
    for code in (expired, session_as_link, forged, unknown_token, "x.y.z", ""):
        answer = client.get(login.LOGIN_PATH, params={"code": code}, follow_redirects=False)
        assert answer.status_code == 401, code
    client.cookies.set(COOKIE, session_as_link[:-2] + "AA", path="/dashboard")
    assert client.get("/dashboard").status_code == 401


def test_an_expired_session_is_refused(client: TestClient) -> None:
    key = login.signing_key(READ_TOKEN)
    old = login.make_code("session", "viewer", key, ttl=60, now=time.time() - 3600)
    client.cookies.set(COOKIE, old, path="/dashboard")
    assert client.get("/dashboard").status_code == 401


def test_the_api_makes_a_link_for_a_read_token(client: TestClient) -> None:
    made = client.get("/api/dashboard/link", headers=READ)
    assert made.status_code == 200
    assert made.json()["expires_in"] == 600
    assert client.get(made.json()["path"]).status_code == 200
    write_link = link("operator", WRITE_TOKEN)
    assert client.get(write_link).status_code == 200  # a read+write token reads too
