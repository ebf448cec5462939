"""Acceptance for native Slack: the bytes of flytekit's own `Slack(...).to_flyte_idl()` sent in an
Enqueue reach the Slack route the server's config names for that recipient, as one Block Kit
message with the error excerpt and the console link, and nothing is emailed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from flytenotify.v1 import notification_service_pb2 as api
from flytenotify.v1 import notification_service_pb2_grpc as api_grpc
from flytenotify_server import Server, read_mail

ROUTED = "ml-alerts@acme.slack.com"
HOOK_PATH = "/services/T0001/B0002/pyTestHookSecret"
CONSOLE = "https://flyte.example.com/console"


class SlackHook:
    """A Slack incoming webhook on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hook.received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def slack_hook() -> Iterator[SlackHook]:
    hook = SlackHook()
    yield hook
    hook.close()


def test_flytekit_slack_bytes_go_to_the_native_route(flyte_notify_bin: Path, tmp_path: Path, slack_hook: SlackHook) -> None:
    flytekit = pytest.importorskip("flytekit")
    url_file = tmp_path / "slack-url"
    url_file.write_text(f"http://127.0.0.1:{slack_hook.port}{HOOK_PATH}\n")
    config = f"""
flyteNotify:
  consoleUrl: {CONSOLE}
  slack:
    routes:
      - recipients: ["{ROUTED}"]
        webhookUrlFile: {url_file}
"""
    server = Server(flyte_notify_bin, tmp_path / "data", config)
    try:
        slack = flytekit.Slack(phases=[flytekit.WorkflowExecutionPhase.FAILED], recipients_email=[ROUTED])
        # The very bytes flytekit produces, as FlyteAdmin would store and forward them.
        wire = slack.to_flyte_idl().SerializeToString()
        request = api.EnqueueRequest(
            request_id="py-native-slack",
            execution=api.ExecutionContext(
                execution_id={"project": "flytesnacks", "domain": "development", "name": "exec-py-slack"},
                phase=flytekit.WorkflowExecutionPhase.FAILED,
                error={"code": "USER:ValueError", "message": "loss went to NaN"},
            ),
        )
        request.notifications.add().ParseFromString(wire)
        with grpc.insecure_channel(server.target) as channel:
            answer = api_grpc.NotificationServiceStub(channel).Enqueue(request, timeout=10)
        assert len(answer.delivery_ids) == 1

        deadline = time.monotonic() + 20
        while not slack_hook.received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything more that was going to come would have come
        assert len(slack_hook.received) == 1, server.log_text()
        path, body = slack_hook.received[0]
        assert path == HOOK_PATH
        assert "exec-py-slack" in body["text"]
        blocks = json.dumps(body["blocks"])
        assert "loss went to NaN" in blocks
        assert f"{CONSOLE}/projects/flytesnacks/domains/development/executions/exec-py-slack" in blocks
        assert read_mail(server.maildir) == []
    finally:
        server.stop()
