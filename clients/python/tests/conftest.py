"""Fixtures: the real flyte-notify binary, started per test session, and clients for it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flytenotify import NotificationClient
from flytenotify_server import Server, SmtpSink, find_binary


@pytest.fixture(scope="session")
def flyte_notify_bin() -> Path:
    try:
        return find_binary()
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default configuration: every email is written to <data dir>/maildir."""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("maildir-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def closed_port() -> Iterator[int]:
    """A port that refuses connections for the whole session: bound, never listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture(scope="session")
def pending_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory, closed_port: int) -> Iterator[Server]:
    """Sends go over SMTP to a closed port, so every delivery fails and waits (30 s and more)
    for its next attempt: what is enqueued here stays in ListPending for the whole session."""
    config = f"""
notifications:
  emailer:
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: "{closed_port}"
flyteNotify:
  retry: {{baseDelay: 30s, maxDelay: 60s, maxAttempts: 100}}
"""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("pending-server"), config)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def dead_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory, smtp_sink: SmtpSink) -> Iterator[Server]:
    """Sends over SMTP to `smtp_sink` with a single attempt: mail to an address the sink refuses
    dies at once, and comes through when redriven after the sink accepts it again."""
    config = f"""
notifications:
  emailer:
    sender: flyte@example.com
    emailServerConfig:
      serviceName: smtp
      smtpServer: 127.0.0.1
      smtpPort: "{smtp_sink.port}"
flyteNotify:
  retry: {{baseDelay: 100ms, maxDelay: 1s, maxAttempts: 1}}
"""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("dead-server"), config)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def webhook_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default configuration plus one webhook destination, "ops-alerts" (no allow-list, so
    webhooks naming a URL are still refused)."""
    data_dir = tmp_path_factory.mktemp("webhook-server")
    url_file = data_dir / "ops-alerts-url"
    url_file.write_text("https://hooks.example.com/flyte\n")
    config = f"""
flyteNotify:
  webhooks:
    destinations:
      - name: ops-alerts
        urlFile: {url_file}
"""
    srv = Server(flyte_notify_bin, data_dir, config)
    yield srv
    srv.stop()


@pytest.fixture
def client(server: Server) -> Iterator[NotificationClient]:
    with NotificationClient(server.target) as c:
        yield c


@pytest.fixture
def execution_name() -> str:
    """A fresh execution name, so tests sharing a server find only their own mail and deliveries."""
    return "e" + uuid.uuid4().hex[:16]


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    # On failure, show the server's log: most failures here are explained by it.
    if call.excinfo is None or call.when != "call":
        return
    for name in ("server", "pending_server", "dead_server", "webhook_server", "flyte2_server"):
        srv = getattr(item, "funcargs", {}).get(name)
        if isinstance(srv, Server):
            item.add_report_section("call", f"{name} log", srv.log_text())
