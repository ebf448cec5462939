"""Enqueue end to end: client -> real server -> Maildir."""

from __future__ import annotations

import time
import uuid
from typing import Any

import grpc
import pytest
from flyteidl.admin import common_pb2
from flyteidl.core import execution_pb2, identifier_pb2

from flytenotify import ConflictError, NotificationClient
from flytenotify_server import Server, parts, read_mail, recipients, subject_contains, wait_for_mail

FAILED = execution_pb2.WorkflowExecution.FAILED
SUCCEEDED = execution_pb2.WorkflowExecution.SUCCEEDED


def test_enqueue_lands_in_maildir(client: NotificationClient, server: Server, execution_name: str) -> None:
    pager_duty = common_pb2.Notification(
        phases=[FAILED], pager_duty=common_pb2.PagerDutyNotification(recipients_email=["svc@acme.pagerduty.com"])
    )
    result = client.enqueue(
        f"flytesnacks/development/{execution_name}",
        "FAILED",
        [
            {"phases": ["FAILED", "TIMED_OUT"], "email": {"recipients_email": ["oncall@example.com", "lead@example.com"]}},
            {"phases": ["failed"], "slack": {"recipientsEmail": ["alerts@acme.slack.com"]}},
            pager_duty,
            {"phases": ["SUCCEEDED"], "email": {"recipients_email": ["happy@example.com"]}},
        ],
        launch_plan={"project": "flytesnacks", "domain": "development", "name": "daily_lp", "version": "v7"},
        error={"code": "USER:Oops", "message": "division by zero"},
    )

    assert len(result.delivery_ids) == 3
    assert len(set(result.delivery_ids)) == 3
    assert result.unmatched == 1
    assert result.duplicate is False
    assert uuid.UUID(result.request_id).version == 4

    mails = wait_for_mail(server.maildir, subject_contains(execution_name), 3)
    assert sorted(sorted(recipients(m)) for m in mails) == [
        ["alerts@acme.slack.com"],
        ["lead@example.com", "oncall@example.com"],
        ["svc@acme.pagerduty.com"],
    ]
    for mail in mails:
        body = parts(mail)
        assert set(body) == {"text/plain", "text/html"}
        assert execution_name in body["text/plain"]
        assert "division by zero" in body["text/plain"]
        assert "daily_lp" in body["text/plain"]
    # The notification that named only SUCCEEDED produced no mail.
    time.sleep(1.5)
    assert len([m for m in read_mail(server.maildir) if execution_name in str(m["Subject"])]) == 3


def test_retry_with_same_request_id_is_idempotent(client: NotificationClient, server: Server, execution_name: str) -> None:
    args: tuple[Any, ...] = (
        f"p/d/{execution_name}",
        FAILED,
        [{"phases": [FAILED], "email": {"recipients_email": ["once@example.com"]}}],
    )
    first = client.enqueue(*args)
    again = client.enqueue(*args, request_id=first.request_id)

    assert again.duplicate is True
    assert again.delivery_ids == first.delivery_ids
    assert again.request_id == first.request_id
    assert again.unmatched == first.unmatched == 0

    wait_for_mail(server.maildir, subject_contains(execution_name), 1)
    time.sleep(1.5)  # a second delivery would have been sent by now
    assert len([m for m in read_mail(server.maildir) if execution_name in str(m["Subject"])]) == 1


def test_reused_request_id_with_other_content_conflicts(client: NotificationClient, execution_name: str) -> None:
    request_id = f"req-{execution_name}"
    notification = {"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}}
    client.enqueue(f"p/d/{execution_name}", "FAILED", [notification], request_id=request_id)
    with pytest.raises(ConflictError) as caught:
        client.enqueue(f"p/d/{execution_name}-other", "FAILED", [notification], request_id=request_id)
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert caught.value.request_id == request_id


def test_every_input_form_means_the_same(client: NotificationClient, execution_name: str) -> None:
    """Strings, dicts, flyteidl protos and flytekit objects produce the same request: the
    rendered previews are identical."""
    flytekit = pytest.importorskip("flytekit")
    phase_forms = [FAILED, "FAILED", "failed", flytekit.WorkflowExecutionPhase.FAILED]
    id_forms = [
        f"proj/dev/{execution_name}",
        {"project": "proj", "domain": "dev", "name": execution_name},
        identifier_pb2.WorkflowExecutionIdentifier(project="proj", domain="dev", name=execution_name),
    ]
    notification_forms = [
        flytekit.Email(phases=[flytekit.WorkflowExecutionPhase.FAILED], recipients_email=["x@example.com"]),
        common_pb2.Notification(phases=[FAILED], email=common_pb2.EmailNotification(recipients_email=["x@example.com"])),
        {"phases": ["failed"], "email": {"recipients_email": ["x@example.com"]}},
    ]
    previews = {
        client.preview(execution_id, phase, [notification])
        for execution_id in id_forms
        for phase in phase_forms
        for notification in notification_forms
    }
    assert len(previews) == 1
    (preview,) = previews
    assert preview.messages[0].recipients == ("x@example.com",)
    assert f"proj/dev/{execution_name}" in preview.messages[0].subject


class _RecordMetadata(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.seen += list(details.metadata or ())
        return continuation(details, request)


def test_token_is_sent_as_bearer_metadata(server: Server, execution_name: str) -> None:
    recorder = _RecordMetadata()
    with NotificationClient(server.target, token="s3cret", interceptors=[recorder]) as client:
        client.preview(f"p/d/{execution_name}", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}}])
    assert ("authorization", "Bearer s3cret") in recorder.seen
