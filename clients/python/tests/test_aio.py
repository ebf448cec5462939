"""The asyncio client against the real server."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from flytenotify import AsyncNotificationClient, DeliveryState, InvalidArgumentError
from flytenotify_server import Server, subject_contains, wait_for_mail


def test_async_enqueue_delivers(server: Server, execution_name: str) -> None:
    async def main() -> tuple[str, ...]:
        async with AsyncNotificationClient(server.target) as client:
            result = await client.enqueue(
                f"p/d/{execution_name}", "ABORTED", [{"phases": ["ABORTED"], "email": {"recipients_email": ["aio@example.com"]}}]
            )
            again = await client.enqueue(
                f"p/d/{execution_name}",
                "ABORTED",
                [{"phases": ["ABORTED"], "email": {"recipients_email": ["aio@example.com"]}}],
                request_id=result.request_id,
            )
            assert again.duplicate and again.delivery_ids == result.delivery_ids
            return result.delivery_ids

    assert len(asyncio.run(main())) == 1
    wait_for_mail(server.maildir, subject_contains(execution_name), 1)


def test_async_errors_carry_field_violations(server: Server, execution_name: str) -> None:
    async def main() -> None:
        async with AsyncNotificationClient(server.target) as client:
            await client.preview(f"p/d/{execution_name}", "FAILED", [{"phases": ["FAILED"], "pager_duty": {"recipients_email": [" "]}}])

    with pytest.raises(InvalidArgumentError) as caught:
        asyncio.run(main())
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["notifications[0].pager_duty.recipients_email[0]"]


def test_async_list_pending_walks_pages(pending_server: Server, execution_name: str) -> None:
    async def main() -> tuple[list[str], list[str]]:
        async with AsyncNotificationClient(pending_server.target) as client:
            result = await client.enqueue(
                f"p/d/{execution_name}",
                "SUCCEEDED",
                [{"phases": ["SUCCEEDED"], "email": {"recipients_email": [f"n{i}@example.com"]}} for i in range(5)],
            )
            listed = []
            async for d in client.list_pending(filters=f"eq(name,{execution_name})", page_size=2):
                listed.append(d)
                assert len(listed) <= 100, "list_pending did not stop"
            assert all(d.state in (DeliveryState.PENDING, DeliveryState.RETRYING) for d in listed)
            return list(result.delivery_ids), [d.id for d in listed]

    enqueued, listed = asyncio.run(main())
    assert listed == enqueued
