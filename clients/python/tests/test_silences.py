"""Silences through the client, sync and async, against the real server: a delivery the silence
matches is recorded SILENCED with the silence's id in its history and never sent; expiring the
silence keeps it listed with include_expired. Each test's matcher names its own execution, so
the session's shared server sends everything else as before."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from flytenotify import (
    AsyncNotificationClient,
    DeliveryEventKind,
    DeliveryState,
    InvalidArgumentError,
    NotFoundError,
    NotificationClient,
    SilenceState,
)
from flytenotify_server import Server


def test_a_silenced_delivery_is_recorded_not_sent(client: NotificationClient, execution_name: str) -> None:
    silence = client.create_silence(
        f"eq(name,{execution_name})",
        comment="warehouse maintenance",
        duration=timedelta(minutes=10),
        created_by="oncall@example.com",
    )
    assert silence.state is SilenceState.ACTIVE
    assert silence.matcher == f"eq(name,{execution_name})"
    assert silence.ends_at - silence.starts_at == timedelta(minutes=10)
    assert silence.id in [s.id for s in client.list_silences()]

    result = client.enqueue(
        f"p/d/{execution_name}", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": ["quiet@example.com"]}}]
    )
    deadline = time.monotonic() + 20
    while True:
        details = client.get_delivery(result.delivery_ids[0])
        if details.delivery.state is DeliveryState.SILENCED or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert details.delivery.state is DeliveryState.SILENCED, details
    assert [(e.kind, e.detail) for e in details.history] == [(DeliveryEventKind.SILENCED, silence.id)]
    listed = [d.id for d in client.list_pending(filters=f"eq(state,silenced)+eq(name,{execution_name})")]
    assert listed == list(result.delivery_ids)
    assert result.delivery_ids[0] not in [d.id for d in client.list_pending(filters=f"eq(name,{execution_name})")]

    expired = client.expire_silence(silence)
    assert expired.state is SilenceState.EXPIRED
    assert silence.id not in [s.id for s in client.list_silences()]
    assert silence.id in [s.id for s in client.list_silences(include_expired=True)]
    # Dropped, not deliver_after: it stays silenced.
    assert client.get_delivery(result.delivery_ids[0]).delivery.state is DeliveryState.SILENCED


def test_bad_silences_name_the_field(client: NotificationClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.create_silence("eq(state,dead)", comment="x", duration=timedelta(hours=1))
    assert [v.field for v in caught.value.field_violations] == ["silence.matcher"]
    with pytest.raises(InvalidArgumentError) as caught:
        client.create_silence("eq(project,x)", comment="x", ends_at=datetime.now(timezone.utc) - timedelta(hours=1))
    assert [v.field for v in caught.value.field_violations] == ["silence.ends_at"]
    with pytest.raises(NotFoundError):
        client.expire_silence("no-such-silence")
    with pytest.raises(TypeError):
        client.create_silence("eq(project,x)", comment="x")
    with pytest.raises(ValueError):
        client.create_silence("eq(project,x)", comment="x", ends_at=datetime(2099, 1, 1))


def test_async_silences(server: Server, execution_name: str) -> None:
    async def main() -> None:
        async with AsyncNotificationClient(server.target) as client:
            silence = await client.create_silence(
                f"eq(name,{execution_name})",
                comment="async",
                starts_at=datetime.now(timezone.utc) + timedelta(hours=1),
                duration=timedelta(hours=1),
                deliver_after=True,
            )
            assert silence.state is SilenceState.PENDING and silence.deliver_after
            assert silence.id in [s.id for s in await client.list_silences()]
            expired = await client.expire_silence(silence.id)
            assert expired.state is SilenceState.EXPIRED
            assert silence.id in [s.id for s in await client.list_silences(include_expired=True)]

    asyncio.run(main())
