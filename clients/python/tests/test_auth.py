"""The client's `token=` against a server that requires bearer tokens (flyteNotify.auth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flytenotify import NotificationClient, PermissionDeniedError, UnauthenticatedError
from flytenotify_server import Server

EMAIL = [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}]


@pytest.fixture(scope="module")
def auth_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("auth-server")
    tokens = data_dir / "tokens"
    tokens.write_text("python-client-token\n")
    srv = Server(flyte_notify_bin, data_dir, f"flyteNotify:\n  auth: {{ tokensFile: {tokens} }}\n")
    yield srv
    srv.stop()


def test_the_token_is_sent_and_accepted(auth_server: Server) -> None:
    with NotificationClient(auth_server.target, token="python-client-token") as client:
        result = client.enqueue("p/d/auth-ok", "FAILED", EMAIL)
    assert len(result.delivery_ids) == 1


def test_no_token_and_a_wrong_token_are_refused(auth_server: Server) -> None:
    with NotificationClient(auth_server.target) as client:
        with pytest.raises(UnauthenticatedError):
            client.enqueue("p/d/auth-none", "FAILED", EMAIL)
    with NotificationClient(auth_server.target, token="not-the-token") as client:
        with pytest.raises(PermissionDeniedError) as caught:
            client.enqueue("p/d/auth-bad", "FAILED", EMAIL)
    assert "not-the-token" not in str(caught.value)
