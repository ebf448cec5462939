"""webhooks= on enqueue and preview. The server validates webhooks and records them; what it
answers shows that each field arrived where it belongs. (Rendering and sending them is not
asserted here: the server's webhook sender is still being wired.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest
from flyteidl.core import execution_pb2
from google.protobuf import duration_pb2

from flytenotify import AsyncNotificationClient, InvalidArgumentError, NotificationClient, NotifyError, Webhook
from flytenotify.v1 import notification_service_pb2 as api
from flytenotify_server import Server

EMAIL = {"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}


def fields(error: NotifyError) -> list[str]:
    return [v.field for v in error.field_violations]


@pytest.mark.parametrize("method", ["enqueue", "preview"])
def test_a_webhook_url_without_an_allow_list_is_refused(client: NotificationClient, method: str, execution_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        getattr(client, method)(
            f"p/d/{execution_name}", "FAILED", webhooks=[Webhook("https://hooks.example.com/flyte", phases=["FAILED"])]
        )
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(caught.value) == ["webhooks[0].url"]
    assert "allowedHosts" in caught.value.field_violations[0].description


def test_webhook_violations_follow_the_notifications_and_name_each_field(
    client: NotificationClient, execution_name: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.enqueue(
            f"p/d/{execution_name}",
            "FAILED",
            [EMAIL],
            webhooks=[
                Webhook(destination="ops-alerts", phases=["FAILED"]),  # not configured on this server
                Webhook(
                    destination="x",
                    url="https://hooks.example.com/flyte",
                    phases=["RUNNING"],
                    method="trace",
                    timeout=timedelta(seconds=61),
                    body_template='{"execution": "{{ nme }}"}',
                ),
                Webhook(url="https://hooks.example.com/flyte"),  # no phases
            ],
        )
    # Sorted: which of one webhook's problems the server lists first is not the point.
    assert sorted(fields(caught.value)) == [
        "webhooks[0].destination",
        "webhooks[1].body_template",
        "webhooks[1].destination",
        "webhooks[1].method",
        "webhooks[1].phases[0]",
        "webhooks[1].timeout",
        "webhooks[2].phases",
        "webhooks[2].url",
    ]


def test_every_webhook_form_means_the_same(client: NotificationClient, execution_name: str) -> None:
    """A Webhook, the generated message and a dict in protobuf's JSON form give the server the
    same request: it refuses each with the same violations."""
    forms = [
        Webhook(destination="nowhere", phases=["timed_out"], method="PATCH", timeout=timedelta(seconds=90)),
        api.WebhookNotification(
            destination="nowhere",
            phases=[execution_pb2.WorkflowExecution.TIMED_OUT],
            method=api.HTTP_METHOD_PATCH,
            timeout=duration_pb2.Duration(seconds=90),
        ),
        {"destination": "nowhere", "phases": ["TIMED_OUT"], "method": "HTTP_METHOD_PATCH", "timeout": "90s"},
        {"destination": "nowhere", "phases": ["TIMED_OUT"], "method": "patch", "timeout": timedelta(minutes=1.5)},
    ]
    answers = set()
    for form in forms:
        with pytest.raises(InvalidArgumentError) as caught:
            client.preview(f"p/d/{execution_name}", "TIMED_OUT", webhooks=[form])
        answers.add(tuple(caught.value.field_violations))
    assert len(answers) == 1
    (answer,) = answers
    assert [v.field for v in answer] == ["webhooks[0].destination", "webhooks[0].timeout"]


def test_a_webhook_to_a_configured_destination_is_recorded_after_the_notifications(
    webhook_server: Server, execution_name: str
) -> None:
    with NotificationClient(webhook_server.target) as client:
        result = client.enqueue(
            f"flytesnacks/development/{execution_name}",
            "FAILED",
            [EMAIL, {"phases": ["SUCCEEDED"], "email": {"recipients_email": ["happy@example.com"]}}],
            webhooks=[
                Webhook(
                    destination="ops-alerts",
                    phases=["FAILED", "TIMED_OUT"],
                    method="PUT",
                    headers={"X-Team": "ml-platform"},
                    body_template='{"text": "{{ project }}/{{ domain }}/{{ name }} {{ phase }}"}',
                    timeout=timedelta(seconds=5),
                ),
                Webhook(destination="ops-alerts", phases=["SUCCEEDED"]),
            ],
        )
        assert len(result.delivery_ids) == 2
        assert result.unmatched == 2  # one notification and one webhook named other phases
        email, webhook = (client.get_delivery(i).delivery for i in result.delivery_ids)
    assert email.channel == "email"
    assert webhook.channel == "webhook"
    assert webhook.recipients == ("ops-alerts",)
    assert webhook.execution_id.name == execution_name
    assert webhook.phase == "FAILED"


def test_enqueue_with_only_webhooks(webhook_server: Server, execution_name: str) -> None:
    with NotificationClient(webhook_server.target) as client:
        result = client.enqueue(f"p/d/{execution_name}", "ABORTED", webhooks=[{"destination": "ops-alerts", "phases": ["aborted"]}])
        assert len(result.delivery_ids) == 1
        again = client.enqueue(
            f"p/d/{execution_name}",
            "ABORTED",
            webhooks=[{"destination": "ops-alerts", "phases": ["aborted"]}],
            request_id=result.request_id,
        )
    assert again.duplicate and again.delivery_ids == result.delivery_ids


def test_neither_notifications_nor_webhooks_is_refused(client: NotificationClient, execution_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.enqueue(f"p/d/{execution_name}", "FAILED")
    assert fields(caught.value) == ["notifications"]


def test_async_webhooks(webhook_server: Server, execution_name: str) -> None:
    async def main() -> tuple[str, ...]:
        async with AsyncNotificationClient(webhook_server.target) as client:
            with pytest.raises(InvalidArgumentError) as caught:
                await client.preview(f"p/d/{execution_name}", "FAILED", webhooks=[Webhook("https://hooks.example.com/x", phases=["FAILED"])])
            assert fields(caught.value) == ["webhooks[0].url"]
            result = await client.enqueue(
                f"p/d/{execution_name}", "FAILED", webhooks=[Webhook(destination="ops-alerts", phases=["FAILED"])]
            )
            return result.delivery_ids

    assert len(asyncio.run(main())) == 1
