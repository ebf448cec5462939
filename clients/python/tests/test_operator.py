"""What an operator does about dead deliveries: get_delivery shows one and its history, redrive
sends it again once the cause is fixed, discard sets it aside. The server sends over SMTP to a
sink that refuses the addresses a test names (a permanent 550), with a single attempt, so a
delivery to such an address dies at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest

from flytenotify import (
    AsyncNotificationClient,
    DeliveryDetails,
    DeliveryEventKind,
    DeliveryState,
    DiscardResult,
    InvalidArgumentError,
    NotFoundError,
    NotificationClient,
    RedriveResult,
    SkippedDelivery,
)
from flytenotify_server import Server, SmtpSink, subject_contains


def wait_for_state(client: NotificationClient, delivery_id: str, state: DeliveryState, timeout: float = 20) -> DeliveryDetails:
    deadline = time.monotonic() + timeout
    while True:
        details = client.get_delivery(delivery_id)
        if details.delivery.state is state or time.monotonic() > deadline:
            assert details.delivery.state is state, details
            return details
        time.sleep(0.1)


def kinds(details: DeliveryDetails) -> list[DeliveryEventKind]:
    return [e.kind for e in details.history]


def enqueue_dead(client: NotificationClient, sink: SmtpSink, execution_name: str, count: int = 1) -> list[str]:
    """`count` deliveries of one execution, each to its own refused address, once they are dead."""
    addresses = [f"{execution_name}-{i}@example.com" for i in range(count)]
    for address in addresses:
        sink.refuse(address)
    result = client.enqueue(
        f"ops/dev/{execution_name}",
        "FAILED",
        [{"phases": ["FAILED"], "email": {"recipients_email": [address]}} for address in addresses],
    )
    for delivery_id in result.delivery_ids:
        wait_for_state(client, delivery_id, DeliveryState.DEAD)
    return list(result.delivery_ids)


@pytest.fixture
def ops(dead_server: Server) -> Iterator[NotificationClient]:
    with NotificationClient(dead_server.target) as c:
        yield c


def test_get_delivery_shows_a_dead_delivery_and_why(ops: NotificationClient, smtp_sink: SmtpSink, execution_name: str) -> None:
    (delivery_id,) = enqueue_dead(ops, smtp_sink, execution_name)

    details = ops.get_delivery(delivery_id)
    d = details.delivery
    assert (d.id, d.channel, d.recipients, d.phase) == (delivery_id, "email", (f"{execution_name}-0@example.com",), "FAILED")
    assert (d.execution_id.project, d.execution_id.domain, d.execution_id.name) == ("ops", "dev", execution_name)
    assert d.state is DeliveryState.DEAD
    assert d.attempts == 1
    assert d.next_attempt_at is None
    assert "550" in d.last_error
    assert kinds(details) == [DeliveryEventKind.DEAD]
    (event,) = details.history
    assert event.attempts == 1 and "550" in event.detail
    assert event.at >= d.created_at
    # A Delivery from list_pending names it as well as its id does.
    (listed,) = ops.list_pending(filters=f"eq(name,{execution_name})+eq(state,dead)")
    assert ops.get_delivery(listed) == details


def test_get_delivery_of_an_unknown_id_raises_not_found(client: NotificationClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.get_delivery("01a00000-0000-7000-8000-000000000000")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert "01a00000-0000-7000-8000-000000000000" in caught.value.message


def test_redrive_by_id_delivers_once_the_cause_is_fixed(
    ops: NotificationClient, smtp_sink: SmtpSink, execution_name: str
) -> None:
    (dead,) = enqueue_dead(ops, smtp_sink, execution_name)
    delivered = ops.enqueue(
        f"ops/dev/{execution_name}-ok", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": ["fine@example.com"]}}]
    ).delivery_ids[0]
    wait_for_state(ops, delivered, DeliveryState.DELIVERED)
    smtp_sink.accept(f"{execution_name}-0@example.com")  # the cause is fixed

    result = ops.redrive([dead, delivered, "01a00000-0000-7000-8000-000000000000"], note="relay fixed, INC-1234")

    assert result == RedriveResult(
        delivery_ids=(dead,),
        skipped=(
            SkippedDelivery(delivered, "not dead: it is delivered"),
            SkippedDelivery("01a00000-0000-7000-8000-000000000000", "not found"),
        ),
        more=False,
    )
    details = wait_for_state(ops, dead, DeliveryState.DELIVERED)
    assert kinds(details) == [DeliveryEventKind.DEAD, DeliveryEventKind.REDRIVEN, DeliveryEventKind.DELIVERED]
    assert details.history[1].detail == "relay fixed, INC-1234"
    (mail,) = smtp_sink.wait_for(subject_contains(f"ops/dev/{execution_name} "), 1)
    assert mail["To"].addresses[0].addr_spec == f"{execution_name}-0@example.com"


def test_redrive_by_filter_walks_the_matches_in_batches(
    ops: NotificationClient, smtp_sink: SmtpSink, execution_name: str
) -> None:
    ids = enqueue_dead(ops, smtp_sink, execution_name, count=3)
    for i in range(3):
        smtp_sink.accept(f"{execution_name}-{i}@example.com")

    redriven: list[str] = []
    batches = []
    while True:
        result = ops.redrive(filters=f"eq(name,{execution_name})", limit=2)
        redriven += result.delivery_ids
        batches.append(len(result.delivery_ids))
        if not result.more:
            break
        assert len(batches) < 5, "redrive kept answering more=True"

    assert batches == [2, 1]
    assert redriven == ids  # oldest first
    for delivery_id in ids:
        wait_for_state(ops, delivery_id, DeliveryState.DELIVERED)
    # Nothing dead is left to match.
    assert ops.redrive(filters=f"eq(name,{execution_name})") == RedriveResult((), (), False)


def test_discard_sets_a_dead_delivery_aside_and_keeps_its_history(
    ops: NotificationClient, smtp_sink: SmtpSink, execution_name: str
) -> None:
    (dead,) = enqueue_dead(ops, smtp_sink, execution_name)

    result = ops.discard([dead], note="address retired")

    assert result == DiscardResult(delivery_ids=(dead,), skipped=(), more=False)
    assert list(ops.list_pending(filters=f"eq(name,{execution_name})")) == []
    details = ops.get_delivery(dead)
    assert details.delivery.state is DeliveryState.DISCARDED
    assert kinds(details) == [DeliveryEventKind.DEAD, DeliveryEventKind.DISCARDED]
    assert details.history[1].detail == "address retired"
    # Only dead deliveries move: a discarded one is neither discarded again nor redriven.
    again = ops.discard([dead])
    assert again.delivery_ids == () and again.skipped == (SkippedDelivery(dead, "not dead: it is discarded"),)
    assert ops.redrive([dead]).skipped == (SkippedDelivery(dead, "not dead: it is discarded"),)


def test_discard_by_filter(ops: NotificationClient, smtp_sink: SmtpSink, execution_name: str) -> None:
    ids = enqueue_dead(ops, smtp_sink, execution_name, count=2)
    result = ops.discard(filters=f"eq(name,{execution_name})+eq(channel,email)", note="cleanup")
    assert sorted(result.delivery_ids) == sorted(ids)
    assert result.more is False
    for delivery_id in ids:
        assert ops.get_delivery(delivery_id).delivery.state is DeliveryState.DISCARDED


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        pytest.param({}, ["delivery_ids"], id="neither-ids-nor-filters"),
        pytest.param({"ids": ["x"], "filters": "eq(name,n)"}, ["filters"], id="ids-and-filters"),
        pytest.param({"ids": ["x"], "limit": 5}, ["limit"], id="limit-with-ids"),
        pytest.param({"filters": "eq(name,n)", "limit": 10_001}, ["limit"], id="limit-too-large"),
        pytest.param({"ids": [""]}, ["delivery_ids[0]"], id="empty-id"),
        pytest.param({"filters": "eq(colour,red)"}, ["filters"], id="unknown-filter-key"),
        pytest.param({"ids": ["x"], "note": "n" * 1025}, ["note"], id="note-too-long"),
    ],
)
@pytest.mark.parametrize("method", ["redrive", "discard"])
def test_selections_the_server_refuses_name_the_field(
    client: NotificationClient, method: str, kwargs: dict[str, object], fields: list[str]
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        getattr(client, method)(**kwargs)
    assert [v.field for v in caught.value.field_violations] == fields


def test_async_operator_calls(dead_server: Server, smtp_sink: SmtpSink, execution_name: str) -> None:
    with NotificationClient(dead_server.target) as sync:
        first, second = enqueue_dead(sync, smtp_sink, execution_name, count=2)

    async def main() -> tuple[DeliveryDetails, RedriveResult, DiscardResult]:
        async with AsyncNotificationClient(dead_server.target) as client:
            details = await client.get_delivery(first)
            redriven = await client.redrive([first], note="async redrive")
            discarded = await client.discard(filters=f"eq(name,{execution_name})")
            with pytest.raises(NotFoundError):
                await client.get_delivery("01a00000-0000-7000-8000-000000000000")
            return details, redriven, discarded

    details, redriven, discarded = asyncio.run(main())
    assert details.delivery.state is DeliveryState.DEAD
    assert redriven.delivery_ids == (first,)
    # The redriven one is pending or being sent (and dies again: its address is still refused),
    # so the filter finds at least the other one.
    assert second in discarded.delivery_ids
