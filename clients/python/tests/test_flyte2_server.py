"""Flyte 2 against the real server: flyte.notify objects (and the SDK's committed bytes) sent with
enqueue_run_event and enqueue_action_paused arrive at a Maildir and at a local HTTP peer, with the
run's variables substituted and escaped for each body's content type."""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flyteidl2.common import phase_pb2
from flyteidl2.task import run_pb2

from flytenotify import AsyncNotificationClient, EnqueueResult, InvalidArgumentError, NotificationClient
from flytenotify.v1 import notification_service_pb2 as api
from flytenotify_server import Server, parts, wait_for_mail

pytestmark = pytest.mark.flyte2_server

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "flyte2"
# Needs escaping in every body type: quotes and a backslash for JSON, <, > and & for HTML.
ERROR = 'ValueError: expected "a" < b & c > d\n  at C:\\jobs\\train.py'


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpPeer:
    """A webhook receiver on 127.0.0.1 that keeps every request and answers 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def _keep(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # Header names are case-insensitive: kept lowercased.
                headers = {k.lower(): v for k, v in self.headers.items()}
                peer.received.append(Received(self.command, self.path, headers, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_PATCH = _keep  # noqa: N815 (http.server's names)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def wait_for(self, path_prefix: str, count: int = 1, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.received if r.path.startswith(path_prefix)]
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) >= count, f"expected {count} requests to {path_prefix}, got {self.received}"
                return found
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def peer() -> Iterator[HttpPeer]:
    p = HttpPeer()
    yield p
    p.close()


@pytest.fixture(scope="module")
def flyte2_server(flyte_notify_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Mail to its Maildir; webhooks may call the loopback peer."""
    config = """
flyteNotify:
  webhooks:
    allowedHosts: ["127.0.0.1"]
"""
    srv = Server(flyte_notify_bin, tmp_path_factory.mktemp("flyte2-server"), config)
    yield srv
    srv.stop()


@pytest.fixture
def client(flyte2_server: Server) -> Iterator[NotificationClient]:
    with NotificationClient(flyte2_server.target) as c:
        yield c


@pytest.fixture
def run_name() -> str:
    return "r" + uuid.uuid4().hex[:12]


def only_mail(server: Server, run_name: str) -> EmailMessage:
    (message,) = wait_for_mail(server.maildir, lambda m: run_name in str(m["Subject"]), 1)
    return message


def test_flyte_notify_objects_go_straight_in(client: NotificationClient, flyte2_server: Server, peer: HttpPeer, run_name: str) -> None:
    pytest.importorskip("flyte")
    from flyte.models import ActionPhase
    from flyte.notify import Email, Webhook

    hook_path = f"/hooks/{run_name}"
    notifiers = (
        Email(
            on_phase=ActionPhase.FAILED,
            recipients=("oncall@example.com",),
            cc=("lead@example.com",),
            bcc=("audit@example.com",),
            subject="[{{.Run.Project}}/{{.Run.Domain}}] {{.Run.Name}} {{.Phase}}",
            body="Run {{.Run.Name}} is {{.Phase}}: {{.Error}}",
            html_body="<p>Run <b>{{.Run.Name}}</b> is {{.Phase}}</p><pre>{{.Error}}</pre>",
        ),
        Webhook(
            on_phase=(ActionPhase.FAILED, ActionPhase.TIMED_OUT),
            url=peer.url + hook_path,
            method="PUT",
            headers={"X-Team": "ml"},
            body={"run": "{{.Run.Name}}", "where": "{{.Run.Project}}/{{.Run.Domain}}", "phase": "{{.Phase}}", "error": "{{.Error}}"},
        ),
        # Not for this phase: no delivery.
        Webhook(on_phase=ActionPhase.SUCCEEDED, url=peer.url + hook_path + "/succeeded"),
    )
    result = client.enqueue_run_event(
        ("flytesnacks", "development", run_name), ActionPhase.FAILED, notifiers, error=ERROR
    )
    assert len(result.delivery_ids) == 2
    assert result.unmatched == 1
    assert not result.duplicate

    message = only_mail(flyte2_server, run_name)
    assert str(message["Subject"]).startswith(f"[flytesnacks/development] {run_name} ")
    assert re.search(r"failed", str(message["Subject"]), re.IGNORECASE)
    assert {a.addr_spec for a in message["To"].addresses} == {"oncall@example.com"}
    assert {a.addr_spec for a in message["Cc"].addresses} == {"lead@example.com"}
    # A Maildir has no envelope, so its copy keeps the Bcc line; over SMTP the Bcc address goes
    # in RCPT TO only (tests/email_copies.rs checks that against aiosmtpd).
    assert {a.addr_spec for a in message["Bcc"].addresses} == {"audit@example.com"}
    # Mail lines end in CRLF on the wire.
    bodies = {kind: text.replace("\r\n", "\n") for kind, text in parts(message).items()}
    assert f"Run {run_name} is " in bodies["text/plain"]
    assert ERROR in bodies["text/plain"]  # plain text: the value as it is
    page = bodies["text/html"]
    assert f"<b>{run_name}</b>" in page  # the template's own markup is kept
    pre = re.search(r"<pre>(.*?)</pre>", page, re.DOTALL)
    assert pre is not None, page
    assert "<" not in pre.group(1) and html.unescape(pre.group(1)) == ERROR  # the value is escaped

    (request,) = peer.wait_for(hook_path)
    assert request.method == "PUT"
    assert request.headers.get("x-team") == "ml"
    body = json.loads(request.body)  # the error's quotes and backslash did not break the JSON
    assert body["run"] == run_name
    assert body["where"] == "flytesnacks/development"
    assert body["error"] == ERROR
    assert body["phase"].lower() == "failed"
    time.sleep(0.5)
    assert [r.path for r in peer.received if r.path.startswith(hook_path)] == [hook_path]


def test_the_sdks_bytes_repointed_at_a_local_peer_deliver(client: NotificationClient, peer: HttpPeer, run_name: str) -> None:
    """The committed fixture (made by flyte's serializer) decoded, its URL re-pointed: no flyte
    needed to send it."""
    rules = run_pb2.InlineRuleList.FromString((FIXTURES / "slack_blocks.binpb").read_bytes())
    hook_path = f"/slack/{run_name}"
    rules.rules[0].delivery_template.webhook.url = peer.url + hook_path
    client.enqueue_run_event(("flytesnacks", "development", run_name), phase_pb2.ACTION_PHASE_FAILED, rules, error=ERROR)
    (request,) = peer.wait_for(hook_path)
    assert request.method == "POST"
    header, section = json.loads(request.body)["blocks"]
    assert run_name in header["text"]["text"]
    assert section["text"]["text"] == f"*flytesnacks/development*\n```{ERROR}```"


def test_the_same_request_id_is_a_duplicate(client: NotificationClient, peer: HttpPeer, run_name: str) -> None:
    """A retry with the same request_id is answered from the ledger. The webhook has two headers:
    the server's fingerprint of the request must not depend on the order it keeps a map in."""
    rules = run_pb2.InlineRuleList.FromString((FIXTURES / "webhook_put.binpb").read_bytes())
    rules.rules[0].delivery_template.webhook.url = f"{peer.url}/dup/{run_name}"
    assert len(rules.rules[0].delivery_template.webhook.headers) == 2
    first = client.enqueue_run_event(("p", "d", run_name), "FAILED", rules, error="x")
    for _ in range(5):
        again = client.enqueue_run_event(("p", "d", run_name), "FAILED", rules, error="x", request_id=first.request_id)
        assert again.duplicate
        assert again.delivery_ids == first.delivery_ids


def test_an_unknown_named_rule_is_refused_with_its_name(client: NotificationClient, run_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.enqueue_run_event(
            ("flytesnacks", "development", run_name), "FAILED", api.Flyte2Rules(notification_rule_name="no-such-rule")
        )
    assert "no-such-rule" in str(caught.value)


def test_an_action_paused_sends_its_prompt(client: NotificationClient, peer: HttpPeer, run_name: str) -> None:
    hook_path = f"/paused/{run_name}"
    rule = run_pb2.InlineRule(on_phases=[phase_pb2.ACTION_PHASE_PAUSED])
    rule.delivery_template.webhook.url = peer.url + hook_path
    rule.delivery_template.webhook.method = 3  # POST
    rule.delivery_template.webhook.body_template = json.dumps({"prompt": "{{.Prompt}}", "run": "{{.Run.Name}}"})
    prompt = 'Deploy "v3" to <production>?'
    result = client.enqueue_action_paused(
        ("flytesnacks", "development", run_name, "approve"), prompt, [rule], prompt_type="approve"
    )
    assert len(result.delivery_ids) == 1
    (request,) = peer.wait_for(hook_path)
    assert json.loads(request.body) == {"prompt": prompt, "run": run_name}


def test_lists_on_a_server_without_named_configs_are_empty(client: NotificationClient) -> None:
    assert client.list_delivery_configs() == []
    assert client.list_rules(project="flytesnacks", domain="development") == []


def test_the_async_client(flyte2_server: Server, peer: HttpPeer, run_name: str) -> None:
    rules = run_pb2.InlineRuleList.FromString((FIXTURES / "teams_message.binpb").read_bytes())
    hook_path = f"/teams/{run_name}"
    rules.rules[0].delivery_template.webhook.url = peer.url + hook_path

    async def go() -> tuple[EnqueueResult, list[Any]]:
        async with AsyncNotificationClient(flyte2_server.target) as aclient:
            result = await aclient.enqueue_run_event(
                ("flytesnacks", "development", run_name), "SUCCEEDED", rules, duration=timedelta(seconds=42)
            )
            return result, await aclient.list_rules()

    result, named = asyncio.run(go())
    assert len(result.delivery_ids) == 1
    assert named == []
    (request,) = peer.wait_for(hook_path)
    assert json.loads(request.body)["title"].startswith(f"flytesnacks/development: {run_name} ")
