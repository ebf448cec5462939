"""Failures map to NotifyError subclasses carrying the gRPC code and the field violations."""

from __future__ import annotations

import grpc
import pytest

from flytenotify import InvalidArgumentError, NotificationClient, NotifyError, UnavailableError


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
