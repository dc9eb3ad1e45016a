"""The service probe of the test fixtures: it checks where a test will really connect."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import need_service, service_address


def test_a_url_names_the_host_and_port_to_probe() -> None:
    assert service_address("redis://10.1.2.3:6391/15") == ("10.1.2.3", 6391)
    assert service_address("redis://127.0.0.1/15") == ("127.0.0.1", 6379)
    assert service_address("postgresql+psycopg://postgres@db.internal/test") == (
        "db.internal",
        5432,
    )
    assert service_address("amqp://guest:guest@127.0.0.1:5673//") == ("127.0.0.1", 5673)
    assert service_address("amqp://guest:guest@rabbit//") == ("rabbit", 5672)


def test_the_probe_finds_a_service_on_the_port_its_url_names() -> None:
    # Given a service listening on a port other than the default one
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        # Then a test given that URL runs (it is not skipped for the default port)
        need_service("Redis", f"redis://127.0.0.1:{port}/15")


def test_nothing_on_the_urls_port_skips_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a URL whose port has no listener
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/15"
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PASSSYNC_REQUIRE_SERVICES", raising=False)
    # Then a developer's run skips, naming that port
    with pytest.raises(pytest.skip.Exception, match=f"127.0.0.1:{port}"):
        need_service("Redis", url)
    # And a run that requires services fails instead
    monkeypatch.setenv("PASSSYNC_REQUIRE_SERVICES", "1")
    with pytest.raises(pytest.fail.Exception, match="required in CI"):
        need_service("Redis", url)
