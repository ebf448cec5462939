"""list_pending walks every page, oldest first, while deliveries keep arriving. The server sends
to a closed SMTP port, so nothing leaves the pending list during the test."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable
from typing import Any, TypeVar

import grpc

from flytenotify import DeliveryState, NotificationClient
from flytenotify_server import Server

PAGE_SIZE = 10
T = TypeVar("T")


def take(items: Iterable[T], limit: int = 1000) -> list[T]:
    """All of `items`, failing rather than hanging if a broken client never stops."""
    taken = list(itertools.islice(items, limit + 1))
    assert len(taken) <= limit, "list_pending did not stop"
    return taken


class _CountListPending(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if details.method.endswith("/ListPending"):
            self.calls += 1
        return continuation(details, request)


def enqueue_batch(client: NotificationClient, execution_name: str, batch: int, size: int) -> list[str]:
    """One request with `size` matching notifications; returns its delivery ids in order."""
    notifications = [
        {"phases": ["FAILED"], "email": {"recipients_email": [f"b{batch}-n{i}@example.com"]}} for i in range(size)
    ]
    result = client.enqueue(f"walk/dev/{execution_name}", "FAILED", notifications)
    assert len(result.delivery_ids) == size
    return list(result.delivery_ids)


def test_pages_are_walked_once_each_oldest_first_while_new_ones_arrive(pending_server: Server, execution_name: str) -> None:
    counter = _CountListPending()
    with NotificationClient(pending_server.target, interceptors=[counter]) as client:
        expected: list[str] = []
        for batch in range(5):
            expected += enqueue_batch(client, execution_name, batch, 5)

        seen = []
        arrivals = 0
        for delivery in client.list_pending(filters=f"eq(name,{execution_name})", page_size=PAGE_SIZE):
            seen.append(delivery)
            if len(seen) > 100:  # a client that lost its place would loop forever
                break
            # New deliveries while on the first and on the second page: they belong at the end.
            if len(seen) in (3, 13):
                arrivals += 1
                expected += enqueue_batch(client, execution_name, 100 + arrivals, 4)

    ids = [d.id for d in seen]
    assert len(ids) == len(set(ids)), "a delivery was returned twice"
    assert ids == expected  # all of them, each once, in the order they were accepted
    assert len(expected) == 33
    assert counter.calls == 4  # 10 + 10 + 10 + 3
    assert all(a.created_at <= b.created_at for a, b in zip(seen, seen[1:]))
    for d in seen:
        assert d.state in (DeliveryState.PENDING, DeliveryState.RETRYING)
        assert d.execution_id.name == execution_name
        assert d.phase == "FAILED"
        assert d.channel == "email"
        assert d.request_id


def test_other_executions_are_filtered_out(pending_server: Server, execution_name: str) -> None:
    with NotificationClient(pending_server.target) as client:
        mine = enqueue_batch(client, execution_name, 0, 2)
        enqueue_batch(client, execution_name + "x", 0, 2)
        listed = [d.id for d in take(client.list_pending(filters=f"eq(name,{execution_name})", page_size=1))]
    assert listed == mine


def test_failed_sends_are_retried_not_dropped(pending_server: Server, execution_name: str) -> None:
    """After a failed attempt a delivery stays listed, retrying, with the error and a next attempt."""
    with NotificationClient(pending_server.target) as client:
        (delivery_id,) = enqueue_batch(client, execution_name, 0, 1)
        deadline = time.monotonic() + 20
        while True:
            (delivery,) = take(client.list_pending(filters=f"eq(name,{execution_name})"))
            if delivery.state is DeliveryState.RETRYING or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert delivery.id == delivery_id
    assert delivery.state is DeliveryState.RETRYING
    assert delivery.attempts >= 1
    assert delivery.last_error
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > delivery.created_at
