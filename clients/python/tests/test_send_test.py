"""send_test: one message marked as a test, through the path a real failure takes, recorded like
any delivery."""

from __future__ import annotations

import asyncio
import time

import pytest
from flyteidl.admin import common_pb2
from flyteidl.core import execution_pb2

from flytenotify import (
    AsyncNotificationClient,
    DeliveryDetails,
    DeliveryState,
    InvalidArgumentError,
    NotificationClient,
    SendTestResult,
    Webhook,
)
from flytenotify.v1 import notification_service_pb2 as api
from flytenotify_server import Server, parts, recipients, subject_contains, wait_for_mail


def wait_until_sent(client: NotificationClient, delivery_id: str, timeout: float = 20) -> DeliveryDetails:
    deadline = time.monotonic() + timeout
    while True:
        details = client.get_delivery(delivery_id)
        if details.delivery.state is not DeliveryState.PENDING or time.monotonic() > deadline:
            return details
        time.sleep(0.1)


def assert_test_mail_arrives(
    client: NotificationClient, server: Server, result: SendTestResult, to: set[str], channel: str = "email"
) -> None:
    """Without a Slack or PagerDuty route, every channel's message is an email (as FlyteAdmin's)."""
    details = wait_until_sent(client, result.delivery_id)
    delivery = details.delivery
    assert delivery.state is DeliveryState.DELIVERED, details
    assert delivery.channel == channel
    assert set(delivery.recipients) == to
    assert delivery.request_id == result.request_id
    # The test execution is named so that the mail says "test" where a reader looks first.
    assert (delivery.execution_id.project, delivery.execution_id.domain) == ("flyte-notify", "test")
    name = delivery.execution_id.name
    assert "send-test" in name

    (mail,) = wait_for_mail(server.maildir, subject_contains(name), 1)
    assert "send-test" in str(mail["Subject"])
    assert recipients(mail) == to
    text = parts(mail)["text/plain"]
    assert "send-test" in text
    assert "This is a test message" in text


def test_send_test_emails_the_recipients(client: NotificationClient, server: Server) -> None:
    result = client.send_test({"email": {"recipients_email": ["oncall@example.com", "lead@example.com"]}})
    assert result.delivery_id
    assert result.request_id
    assert_test_mail_arrives(client, server, result, {"oncall@example.com", "lead@example.com"})


def test_send_test_takes_a_proto_notification_and_ignores_its_phases(client: NotificationClient, server: Server) -> None:
    notification = common_pb2.Notification(
        phases=[execution_pb2.WorkflowExecution.SUCCEEDED],
        email=common_pb2.EmailNotification(recipients_email=["proto@example.com"]),
    )
    assert_test_mail_arrives(client, server, client.send_test(notification), {"proto@example.com"})


def test_send_test_takes_flytekit_objects(client: NotificationClient, server: Server) -> None:
    flytekit = pytest.importorskip("flytekit")
    phases = [flytekit.WorkflowExecutionPhase.FAILED]
    for make, address, channel in [
        (flytekit.Email, "fk-email@example.com", "email"),
        (flytekit.Slack, "fk-slack@acme.slack.com", "slack"),
        (flytekit.PagerDuty, "fk-pd@acme.pagerduty.com", "pagerduty"),
    ]:
        result = client.send_test(make(phases=phases, recipients_email=[address]))
        assert_test_mail_arrives(client, server, result, {address}, channel)


def test_each_send_test_is_its_own_delivery(client: NotificationClient) -> None:
    target = {"email": {"recipients_email": ["twice@example.com"]}}
    first, second = client.send_test(target), client.send_test(target)
    assert first.delivery_id != second.delivery_id
    assert first.request_id != second.request_id


@pytest.mark.parametrize(
    ("target", "field"),
    [
        pytest.param({"email": {"recipients_email": ["not an address"]}}, "notification.email.recipients_email[0]", id="email"),
        pytest.param({"slack": {"recipients_email": []}}, "notification.slack.recipients_email", id="slack-empty"),
        pytest.param({}, "notification.type", id="no-channel"),
        pytest.param(Webhook("https://hooks.example.com/flyte"), "webhook.url", id="webhook-url-not-allowed"),
        pytest.param(Webhook(destination="nowhere"), "webhook.destination", id="webhook-unknown-destination"),
        pytest.param({"destination": "ops-alerts", "method": "TRACE"}, "webhook.method", id="webhook-dict-trace"),
    ],
)
def test_send_test_errors_name_the_target_field(client: NotificationClient, target: object, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.send_test(target)  # type: ignore[arg-type]
    assert field in [v.field for v in caught.value.field_violations], caught.value


def test_send_test_to_a_webhook_destination_is_recorded(webhook_server: Server) -> None:
    with NotificationClient(webhook_server.target) as client:
        for target in (
            Webhook(destination="ops-alerts"),
            api.WebhookNotification(destination="ops-alerts"),
            {"destination": "ops-alerts", "method": "put"},
        ):
            result = client.send_test(target)  # type: ignore[arg-type]
            delivery = client.get_delivery(result.delivery_id).delivery
            assert delivery.channel == "webhook"
            assert delivery.recipients == ("ops-alerts",)
            assert delivery.execution_id.project == "flyte-notify"


def test_async_send_test(server: Server) -> None:
    async def main() -> tuple[SendTestResult, DeliveryDetails]:
        async with AsyncNotificationClient(server.target) as client:
            result = await client.send_test({"pager_duty": {"recipients_email": ["aio-pd@acme.pagerduty.com"]}})
            return result, await client.get_delivery(result.delivery_id)

    result, details = asyncio.run(main())
    assert details.delivery.id == result.delivery_id
    assert details.delivery.recipients == ("aio-pd@acme.pagerduty.com",)
    with NotificationClient(server.target) as client:
        assert_test_mail_arrives(client, server, result, {"aio-pd@acme.pagerduty.com"}, "pagerduty")
