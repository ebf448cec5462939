"""Stuck-run deadlines: a RUNNING event with `deadline` arms one "still running after ..." alert,
and a terminal event of the same execution that comes first disarms it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from flytenotify import (
    AsyncNotificationClient,
    DeliveryEventKind,
    DeliveryState,
    InvalidArgumentError,
    NotificationClient,
)
from flytenotify_server import Server, read_mail, subject_contains, wait_for_mail


def test_a_run_past_its_deadline_gets_one_alert(client: NotificationClient, server: Server, execution_name: str) -> None:
    result = client.enqueue(
        f"ops/dev/{execution_name}",
        "RUNNING",
        [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}],
        deadline=timedelta(seconds=2),
    )
    assert len(result.delivery_ids) == 1
    assert client.get_delivery(result.delivery_ids[0]).delivery.state is DeliveryState.PENDING
    alerts = wait_for_mail(server.maildir, subject_contains(f"{execution_name} still running after 2s"), 1)
    assert len(alerts) == 1


def test_a_terminal_phase_first_disarms_the_alert(client: NotificationClient, server: Server, execution_name: str) -> None:
    notification = {"phases": ["SUCCEEDED"], "email": {"recipients_email": ["team@example.com"]}}
    armed = client.enqueue(f"ops/dev/{execution_name}", "RUNNING", [notification], deadline=timedelta(seconds=2))
    client.enqueue(f"ops/dev/{execution_name}", "SUCCEEDED", [notification])
    details = client.get_delivery(armed.delivery_ids[0])
    assert details.delivery.state is DeliveryState.DISARMED
    assert [e.kind for e in details.history] == [DeliveryEventKind.DISARMED]
    time.sleep(3)
    assert not [m for m in read_mail(server.maildir) if f"{execution_name} still running" in str(m["Subject"])]


def test_a_running_event_without_a_deadline_names_the_field(client: NotificationClient, execution_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as raised:
        client.enqueue(f"ops/dev/{execution_name}", "RUNNING", [{"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}}])
    assert "execution.phase" in {v.field for v in raised.value.field_violations}


def test_async_deadline(server: Server, execution_name: str) -> None:
    async def go() -> str:
        async with AsyncNotificationClient(server.target) as client:
            result = await client.enqueue(
                f"ops/dev/{execution_name}",
                "QUEUED",
                [{"phases": ["FAILED"], "email": {"recipients_email": ["oncall@example.com"]}}],
                deadline=timedelta(seconds=1),
            )
            return result.delivery_ids[0]

    asyncio.run(go())
    wait_for_mail(server.maildir, subject_contains(f"{execution_name} still queued after 1s"), 1)
