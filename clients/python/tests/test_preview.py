"""Preview renders what Enqueue would send, and sends nothing."""

from __future__ import annotations

import time

from flytenotify import NotificationClient
from flytenotify_server import Server, read_mail


def test_preview_renders_each_matching_notification(client: NotificationClient, server: Server, execution_name: str) -> None:
    result = client.preview(
        {"project": "flytesnacks", "domain": "production", "name": execution_name},
        "timed_out",
        [
            {"phases": ["SUCCEEDED"], "email": {"recipients_email": ["nobody@example.com"]}},
            {"phases": ["TIMED_OUT"], "slack": {"recipients_email": ["chan@acme.slack.com"]}},
            {"phases": ["TIMED_OUT", "FAILED"], "email": {"recipients_email": ["a@example.com", "b@example.com"]}},
        ],
        workflow={"project": "flytesnacks", "domain": "production", "name": "wf.main", "version": "abc"},
        error="ran out of time",
    )

    assert result.unmatched == 1
    assert [(m.notification_index, m.channel, m.recipients) for m in result.messages] == [
        (1, "slack", ("chan@acme.slack.com",)),
        (2, "email", ("a@example.com", "b@example.com")),
    ]
    for message in result.messages:
        assert f"flytesnacks/production/{execution_name}" in message.subject
        assert "timed_out" in message.subject
        assert execution_name in message.text_body and execution_name in message.html_body
        assert "wf.main" in message.text_body
        assert "ran out of time" in message.text_body
        assert message.sender

    time.sleep(1.5)  # the worker polls every second; anything recorded would be sent by now
    assert not [m for m in read_mail(server.maildir) if execution_name in str(m["Subject"])]
    assert next(iter(client.list_pending(filters=f"eq(name,{execution_name})")), None) is None
