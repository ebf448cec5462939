"""Failures map to NotifyError subclasses carrying the gRPC code and the field violations."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from flyteidl.admin import common_pb2
from flyteidl.core import execution_pb2

from flytenotify import (
    AsyncNotificationClient,
    InvalidArgumentError,
    NotificationClient,
    NotifyError,
    UnavailableError,
    Webhook,
)

FAILED = execution_pb2.WorkflowExecution.FAILED


def fields(error: NotifyError) -> list[str]:
    return [v.field for v in error.field_violations]


def test_invalid_request_names_every_offending_field(client: NotificationClient, execution_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.enqueue(
            f"p/d/{execution_name}",
            "RUNNING",
            [
                {"phases": ["FAILED"], "email": {"recipients_email": ["not an address"]}},
                {"phases": ["FAILED"], "slack": {"recipients_email": []}},
            ],
            request_id=f"bad-{execution_name}",
        )
    error = caught.value
    assert isinstance(error, NotifyError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.request_id == f"bad-{execution_name}"
    assert fields(error) == [
        "execution.phase",
        "notifications[0].email.recipients_email[0]",
        "notifications[1].slack.recipients_email",
    ]
    assert "not an email address" in error.field_violations[1].description
    assert "notifications[0].email.recipients_email[0]" in str(error)
    # The raw gRPC error stays reachable for debugging.
    assert isinstance(error.__cause__, grpc.RpcError)


def test_empty_recipient_is_reported(client: NotificationClient, execution_name: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        client.preview(f"p/d/{execution_name}", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": [""]}}])
    assert [(v.field, v.description) for v in caught.value.field_violations] == [
        ("notifications[0].email.recipients_email[0]", "missing recipient")
    ]
    assert caught.value.request_id is None  # preview records nothing, so there is nothing to retry


def test_bad_list_filter_raises_when_iterated(client: NotificationClient) -> None:
    pages = client.list_pending(filters="eq(colour,red)")
    with pytest.raises(InvalidArgumentError) as caught:
        next(iter(pages))
    assert fields(caught.value) == ["filters"]


def test_unreachable_server_raises_unavailable(closed_port: int) -> None:
    with NotificationClient(f"127.0.0.1:{closed_port}", timeout=5) as client:
        with pytest.raises(UnavailableError) as caught:
            client.enqueue("p/d/n", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}}])
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    # Generated, so the caller can retry without risking a second send.
    assert caught.value.request_id


@pytest.mark.parametrize(
    ("call", "exception", "text"),
    [
        (lambda c: c.enqueue("p/d", "FAILED", []), ValueError, "project/domain/name"),
        (lambda c: c.enqueue("p/d/n", "EXPLODED", []), ValueError, "unknown phase"),
        (lambda c: c.enqueue("p/d/n", True, []), TypeError, "phase"),
        (lambda c: c.enqueue("p/d/n", "FAILED", {"phases": ["FAILED"]}), TypeError, "a list of notifications"),
        (lambda c: c.enqueue("p/d/n", "FAILED", [{"phases": ["FAILED"], "emial": {}}]), ValueError, "notifications[0]"),
        (lambda c: c.enqueue("p/d/n", "FAILED", [42]), TypeError, "notifications[0]"),
        (lambda c: c.preview("p/d/n", "FAILED", [{"phases": "FAILED"}]), TypeError, "notifications[0].phases"),
    ],
)
def test_inputs_that_cannot_be_encoded_fail_before_any_call(closed_port: int, call: object, exception: type, text: str) -> None:
    # Pointed at a closed port: reaching the network would raise UnavailableError instead.
    with NotificationClient(f"127.0.0.1:{closed_port}") as client:
        with pytest.raises(exception, match=None) as caught:
            call(client)  # type: ignore[operator]
    assert text in str(caught.value)


def test_a_hundred_bad_recipients_give_readable_capped_field_errors(
    client: NotificationClient, execution_name: str
) -> None:
    # grpcio (C-core) refuses more than 8 KiB of response metadata with RESOURCE_EXHAUSTED, which
    # would hide every field error; the server caps what it sends so that this arrives whole.
    recipients = [f"not an address {i} " + "x" * 200 for i in range(100)]
    with pytest.raises(InvalidArgumentError) as caught:
        client.enqueue(
            f"p/d/{execution_name}",
            "FAILED",
            [{"phases": ["FAILED"], "email": {"recipients_email": recipients}}],
        )
    error = caught.value
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fields(error)[:20] == [f"notifications[0].email.recipients_email[{i}]" for i in range(20)]
    assert fields(error)[20] == "request"
    assert error.field_violations[20].description.startswith("80 more problems")
    assert "not an email address" in error.field_violations[0].description


class RecordingInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Records every call the client starts, so a test can assert that none did."""

    def __init__(self) -> None:
        self.methods: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self.methods.append(details.method)
        return continuation(details, request)


@pytest.fixture
def offline(closed_port: int) -> Iterator[tuple[NotificationClient, list[str]]]:
    """A client for a port that refuses connections, and the methods it has called."""
    recorder = RecordingInterceptor()
    with NotificationClient(f"127.0.0.1:{closed_port}", timeout=5, interceptors=[recorder]) as client:
        yield client, recorder.methods


RECIPIENT = "oncall@example.com"


def test_recording_interceptor_sees_calls(offline: tuple[NotificationClient, list[str]]) -> None:
    # The control for the tests below: an encodable request does reach the channel.
    client, calls = offline
    with pytest.raises(UnavailableError):
        client.preview("p/d/n", "FAILED", [{"phases": ["FAILED"], "email": {"recipients_email": [RECIPIENT]}}])
    assert calls == ["/flytenotify.v1.NotificationService/Preview"]


@pytest.mark.parametrize("method", ["enqueue", "preview"])
@pytest.mark.parametrize(
    ("notifications", "text"),
    [
        pytest.param(
            [{"phases": ["FAILED"], "email": {"recipients_email": RECIPIENT}}],
            f"notifications[0].email.recipients_email: expected a list of strings, got str {RECIPIENT!r}; "
            f"pass a list, e.g. [{RECIPIENT!r}]",
            id="email-str",
        ),
        pytest.param(
            [
                {"phases": ["FAILED"], "email": {"recipients_email": [RECIPIENT]}},
                {"phases": ["FAILED"], "slack": {"recipients_email": RECIPIENT}},
            ],
            "notifications[1].slack.recipients_email: expected a list of strings, got str",
            id="slack-str",
        ),
        pytest.param(
            [{"phases": ["FAILED"], "pager_duty": {"recipients_email": RECIPIENT.encode()}}],
            "notifications[0].pager_duty.recipients_email: expected a list of strings, got bytes",
            id="pager_duty-bytes",
        ),
        pytest.param(
            [{"phases": ["FAILED"], "pagerDuty": {"recipientsEmail": RECIPIENT}}],
            "notifications[0].pager_duty.recipients_email: expected a list of strings, got str",
            id="json-names-str",
        ),
        pytest.param(
            [{"phases": ["FAILED"], "email": {"recipients_email": {RECIPIENT: True}}}],
            "notifications[0].email.recipients_email: expected a list of strings, got dict",
            id="email-dict",
        ),
        pytest.param(
            [{"phases": "FAILED", "email": {"recipients_email": [RECIPIENT]}}],
            "notifications[0].phases: expected a list of phases, got str 'FAILED'; pass a list, e.g. ['FAILED']",
            id="phases-str",
        ),
        pytest.param(
            RECIPIENT,
            f"notifications: expected a list of notifications, got str {RECIPIENT!r}; pass a list",
            id="notifications-str",
        ),
        pytest.param(b"FAILED", "notifications: expected a list of notifications, got bytes", id="notifications-bytes"),
        pytest.param(None, "notifications: expected a list of notifications, got NoneType", id="notifications-none"),
        pytest.param(
            {"phases": ["FAILED"], "email": {"recipients_email": [RECIPIENT]}},
            "notifications: expected a list of notifications, got a single one (dict); pass it in a list",
            id="notifications-single-dict",
        ),
        pytest.param(
            common_pb2.Notification(phases=[FAILED], email=common_pb2.EmailNotification(recipients_email=[RECIPIENT])),
            "notifications: expected a list of notifications, got a single one (Notification)",
            id="notifications-single-proto",
        ),
    ],
)
def test_a_string_for_a_list_raises_type_error_before_any_call(
    offline: tuple[NotificationClient, list[str]], method: str, notifications: object, text: str
) -> None:
    # Sent as is, "oncall@example.com" would become 18 one-character recipients.
    client, calls = offline
    with pytest.raises(TypeError) as caught:
        getattr(client, method)("p/d/n", "FAILED", notifications)
    assert text in str(caught.value)
    assert calls == []


FLYTEKIT_STRINGS = [
    pytest.param(
        lambda fk: [fk.Email(phases=[fk.WorkflowExecutionPhase.FAILED], recipients_email=RECIPIENT)],
        f"notifications[0].email.recipients_email: expected a list of strings, got str {RECIPIENT!r}",
        id="Email",
    ),
    pytest.param(
        lambda fk: [
            fk.Email(phases=[fk.WorkflowExecutionPhase.FAILED], recipients_email=[RECIPIENT]),
            fk.Slack(phases=[fk.WorkflowExecutionPhase.FAILED], recipients_email=RECIPIENT),
        ],
        f"notifications[1].slack.recipients_email: expected a list of strings, got str {RECIPIENT!r}",
        id="Slack",
    ),
    pytest.param(
        lambda fk: [fk.PagerDuty(phases=[fk.WorkflowExecutionPhase.FAILED], recipients_email=RECIPIENT)],
        f"notifications[0].pager_duty.recipients_email: expected a list of strings, got str {RECIPIENT!r}",
        id="PagerDuty",
    ),
    pytest.param(
        # flytekit's model class does not check phases (flytekit.Email's own check would assert).
        lambda fk: [
            fk.models.common.Notification(phases="FAILED", email=fk.models.common.EmailNotification([RECIPIENT]))
        ],
        "notifications[0].phases: expected a list of phases, got str 'FAILED'",
        id="model-phases",
    ),
    pytest.param(
        lambda fk: fk.Email(phases=[fk.WorkflowExecutionPhase.FAILED], recipients_email=[RECIPIENT]),
        "notifications: expected a list of notifications, got a single one (Email)",
        id="single-Email",
    ),
]


@pytest.mark.parametrize("method", ["enqueue", "preview"])
@pytest.mark.parametrize(("make", "text"), FLYTEKIT_STRINGS)
def test_flytekit_objects_holding_a_string_raise_type_error_before_any_call(
    offline: tuple[NotificationClient, list[str]], method: str, make: Callable[[Any], object], text: str
) -> None:
    flytekit = pytest.importorskip("flytekit")
    import flytekit.models.common  # noqa: F401  (the model classes, for the lambdas)

    client, calls = offline
    with pytest.raises(TypeError) as caught:
        getattr(client, method)("p/d/n", "FAILED", make(flytekit))
    assert text in str(caught.value)
    assert calls == []


def test_async_client_raises_type_error_before_any_call(closed_port: int) -> None:
    async def main(method: str) -> None:
        # Pointed at a closed port: reaching the network would raise UnavailableError instead.
        async with AsyncNotificationClient(f"127.0.0.1:{closed_port}", timeout=5) as client:
            await getattr(client, method)("p/d/n", "FAILED", [{"phases": ["FAILED"], "slack": {"recipients_email": RECIPIENT}}])

    for method in ("enqueue", "preview"):
        with pytest.raises(TypeError, match=r"notifications\[0\]\.slack\.recipients_email: expected a list of strings"):
            asyncio.run(main(method))


WEBHOOK = Webhook("https://hooks.example.com/flyte", phases=["FAILED"])


@pytest.mark.parametrize("method", ["enqueue", "preview"])
@pytest.mark.parametrize(
    ("webhooks", "exception", "text"),
    [
        pytest.param(
            "https://hooks.example.com/flyte",
            TypeError,
            "webhooks: expected a list of webhooks, got str 'https://hooks.example.com/flyte'; "
            "pass e.g. [Webhook(url='https://hooks.example.com/flyte', phases=['FAILED'])]",
            id="webhooks-str",
        ),
        pytest.param(WEBHOOK, TypeError, "webhooks: expected a list of webhooks, got a single one (Webhook)", id="single-Webhook"),
        pytest.param(
            {"url": "https://hooks.example.com/flyte"},
            TypeError,
            "webhooks: expected a list of webhooks, got a single one (dict)",
            id="single-dict",
        ),
        pytest.param(
            ["https://hooks.example.com/flyte"],
            TypeError,
            "webhooks[0]: expected a webhook, got str 'https://hooks.example.com/flyte'; pass e.g. Webhook(",
            id="url-in-list",
        ),
        pytest.param([WEBHOOK, 42], TypeError, "webhooks[1]: expected a flytenotify.Webhook", id="int"),
        pytest.param(
            [Webhook("https://h.example.com/x", phases="FAILED")],  # type: ignore[arg-type]
            TypeError,
            "webhooks[0].phases: expected a list of phases, got str 'FAILED'; pass a list, e.g. ['FAILED']",
            id="phases-str",
        ),
        pytest.param(
            [{"url": "https://h.example.com/x", "phases": "FAILED"}],
            TypeError,
            "webhooks[0].phases: expected a list of phases, got str 'FAILED'",
            id="dict-phases-str",
        ),
        pytest.param([Webhook(phases=["FAILED", "EXPLODED"])], ValueError, "webhooks[0].phases[1]: unknown phase 'EXPLODED'", id="phase-name"),
        pytest.param([Webhook(phases=["FAILED"], method="FETCH")], ValueError, "webhooks[0].method: unknown HTTP method 'FETCH'", id="method"),
        pytest.param([Webhook(phases=["FAILED"], method=True)], TypeError, "webhooks[0].method", id="method-bool"),
        pytest.param(
            [Webhook(phases=["FAILED"], headers=[("X-A", "1")])],  # type: ignore[arg-type]
            TypeError,
            "webhooks[0].headers: expected a dict of header names to values, got list",
            id="headers-list",
        ),
        pytest.param(
            [Webhook(phases=["FAILED"], headers={"X-Retries": 3})],  # type: ignore[dict-item]
            TypeError,
            "webhooks[0].headers['X-Retries']: expected a str, got int 3",
            id="header-int",
        ),
        pytest.param(
            [Webhook(phases=["FAILED"], timeout=5)],  # type: ignore[arg-type]
            TypeError,
            "webhooks[0].timeout: expected a datetime.timedelta, got int 5",
            id="timeout-seconds",
        ),
        pytest.param(
            [{"destination": "d", "phases": ["FAILED"], "timeout": "soon"}],
            ValueError,
            "webhooks[0].timeout",
            id="dict-timeout",
        ),
        pytest.param([Webhook(url=None, phases=["FAILED"])], TypeError, "webhooks[0].url: expected a str", id="url-none"),  # type: ignore[arg-type]
        pytest.param([{"url": "u", "phases": ["FAILED"], "verb": "POST"}], ValueError, "webhooks[0]", id="dict-unknown-field"),
    ],
)
def test_webhooks_that_cannot_be_encoded_fail_before_any_call(
    offline: tuple[NotificationClient, list[str]], method: str, webhooks: object, exception: type, text: str
) -> None:
    client, calls = offline
    with pytest.raises(exception) as caught:
        getattr(client, method)("p/d/n", "FAILED", [], webhooks=webhooks)
    assert text in str(caught.value)
    assert calls == []


def test_a_webhook_among_the_notifications_is_pointed_to_webhooks(offline: tuple[NotificationClient, list[str]]) -> None:
    client, calls = offline
    with pytest.raises(TypeError, match=r"notifications\[0\]: got a webhook \(Webhook\); pass webhooks in webhooks="):
        client.enqueue("p/d/n", "FAILED", [WEBHOOK])
    assert calls == []


@pytest.mark.parametrize(
    ("call", "exception", "text"),
    [
        pytest.param(
            lambda c: c.send_test("oncall@example.com"),
            TypeError,
            "target: expected a notification or a webhook, got str 'oncall@example.com'",
            id="send_test-str",
        ),
        pytest.param(
            lambda c: c.send_test([{"email": {"recipients_email": ["a@example.com"]}}]),
            TypeError,
            "target: expected one notification or webhook, got a list",
            id="send_test-list",
        ),
        pytest.param(lambda c: c.send_test(42), TypeError, "target: expected a notification", id="send_test-int"),
        pytest.param(
            lambda c: c.send_test({"email": {"recipients_email": "oncall@example.com"}}),
            TypeError,
            "notification.email.recipients_email: expected a list of strings, got str 'oncall@example.com'",
            id="send_test-recipients-str",
        ),
        pytest.param(
            lambda c: c.send_test(Webhook(destination="d", headers={"X": 1})),
            TypeError,
            "webhook.headers['X']: expected a str",
            id="send_test-webhook-header",
        ),
        pytest.param(
            lambda c: c.redrive("01a21c1e-543a-77e8-a5cb-bdfce67ebad1"),
            TypeError,
            "ids: expected a list of delivery ids, got str '01a21c1e-543a-77e8-a5cb-bdfce67ebad1'; "
            "pass a list, e.g. ['01a21c1e-543a-77e8-a5cb-bdfce67ebad1']",
            id="redrive-id-str",
        ),
        pytest.param(lambda c: c.discard(["a", 7]), TypeError, "ids[1]: expected a delivery id (str) or a Delivery, got int", id="discard-id-int"),
        pytest.param(lambda c: c.redrive(filters="eq(state,dead)", limit=0), ValueError, "limit: expected a positive number", id="limit-0"),
        pytest.param(lambda c: c.discard(filters="eq(state,dead)", limit=-1), ValueError, "limit", id="limit-negative"),
        pytest.param(lambda c: c.redrive(filters="eq(state,dead)", limit="10"), TypeError, "limit: expected an int", id="limit-str"),
        pytest.param(lambda c: c.redrive(filters=["eq(state,dead)"]), TypeError, "filters: expected a str", id="filters-list"),
        pytest.param(lambda c: c.discard(["a"], note=None), TypeError, "note: expected a str", id="note-none"),
        pytest.param(lambda c: c.get_delivery(42), TypeError, "delivery_id: expected a delivery id (str) or a Delivery", id="get_delivery-int"),
        pytest.param(lambda c: c.get_delivery(["a"]), TypeError, "delivery_id: expected a delivery id", id="get_delivery-list"),
    ],
)
def test_operator_and_send_test_inputs_that_cannot_be_encoded_fail_before_any_call(
    offline: tuple[NotificationClient, list[str]], call: Callable[[NotificationClient], object], exception: type, text: str
) -> None:
    client, calls = offline
    with pytest.raises(exception) as caught:
        call(client)
    assert text in str(caught.value)
    assert calls == []


def test_async_client_checks_the_new_calls_before_any_call(closed_port: int) -> None:
    async def main(call: Callable[[AsyncNotificationClient], Any]) -> None:
        async with AsyncNotificationClient(f"127.0.0.1:{closed_port}", timeout=5) as client:
            await call(client)

    cases: list[tuple[Callable[[AsyncNotificationClient], Any], str]] = [
        (lambda c: c.enqueue("p/d/n", "FAILED", webhooks=[Webhook(phases="FAILED")]), r"webhooks\[0\]\.phases: expected a list"),
        (lambda c: c.preview("p/d/n", "FAILED", webhooks="https://x"), "webhooks: expected a list of webhooks"),
        (lambda c: c.send_test("a@example.com"), "target: expected a notification or a webhook"),
        (lambda c: c.redrive("some-id"), "ids: expected a list of delivery ids"),
        (lambda c: c.discard(["a", 1]), r"ids\[1\]"),
        (lambda c: c.get_delivery(None), "delivery_id: expected a delivery id"),
    ]
    for call, pattern in cases:
        with pytest.raises(TypeError, match=pattern):
            asyncio.run(main(call))
