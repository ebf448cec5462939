"""Input conversion that the server cannot observe directly."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from flyteidl.core import identifier_pb2

from flytenotify import convert


def context(**kwargs: object) -> object:
    defaults: dict[str, object] = {"launch_plan": None, "workflow": None, "error": None, "occurred_at": None}
    return convert.execution_context("p/d/n", "FAILED", **{**defaults, **kwargs})  # type: ignore[arg-type]


def test_occurred_at_is_converted_exactly() -> None:
    at = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2)))
    stamp = context(occurred_at=at).occurred_at  # type: ignore[attr-defined]
    assert stamp.seconds == int(datetime(2025, 3, 4, 3, 6, 7, tzinfo=timezone.utc).timestamp())
    assert stamp.nanos == 891011000


def test_naive_occurred_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        context(occurred_at=datetime(2025, 1, 1))


def test_identifier_kind_is_filled_in_unless_given() -> None:
    ctx = context(
        launch_plan={"project": "p", "domain": "d", "name": "lp", "version": "1"},
        workflow={"resource_type": "TASK", "project": "p", "domain": "d", "name": "t", "version": "1"},
    )
    assert ctx.launch_plan.resource_type == identifier_pb2.LAUNCH_PLAN  # type: ignore[attr-defined]
    assert ctx.workflow.resource_type == identifier_pb2.TASK  # type: ignore[attr-defined]


def test_flytekit_model_objects_are_accepted() -> None:
    pytest.importorskip("flytekit")
    from flytekit.models.core.execution import ExecutionError
    from flytekit.models.core.identifier import WorkflowExecutionIdentifier

    ctx = convert.execution_context(
        WorkflowExecutionIdentifier("p", "d", "n"),
        "failed",
        launch_plan=None,
        workflow=None,
        error=ExecutionError(code="E1", message="boom", error_uri="", kind=ExecutionError.ErrorKind.USER),
        occurred_at=None,
    )
    assert (ctx.execution_id.project, ctx.execution_id.domain, ctx.execution_id.name) == ("p", "d", "n")
    assert (ctx.error.code, ctx.error.message) == ("E1", "boom")


def test_lists_and_protos_pass_the_string_check() -> None:
    from flyteidl.admin import common_pb2
    from flyteidl.core import execution_pb2

    failed = execution_pb2.WorkflowExecution.FAILED
    converted = convert.notifications(
        (
            {"phases": ("failed",), "email": {"recipients_email": ["a@example.com", "b@example.com"]}},
            {"phases": ["FAILED"], "pagerDuty": {"recipientsEmail": ["c@example.com"]}},
            common_pb2.Notification(phases=[failed], slack=common_pb2.SlackNotification(recipients_email=["d@example.com"])),
        )
    )
    assert [list(n.phases) for n in converted] == [[failed]] * 3
    assert list(converted[0].email.recipients_email) == ["a@example.com", "b@example.com"]
    assert list(converted[1].pager_duty.recipients_email) == ["c@example.com"]
    assert list(converted[2].slack.recipients_email) == ["d@example.com"]


def test_flytekit_recipients_in_a_tuple_are_accepted() -> None:
    flytekit = pytest.importorskip("flytekit")
    email = flytekit.Email(phases=[flytekit.WorkflowExecutionPhase.FAILED], recipients_email=("a@example.com",))
    assert list(convert.notifications([email])[0].email.recipients_email) == ["a@example.com"]


def test_webhook_fields_are_converted_exactly() -> None:
    from flyteidl.core import execution_pb2

    from flytenotify import Webhook
    from flytenotify.v1 import notification_service_pb2 as api

    (proto,) = convert.webhooks(
        [
            Webhook(
                "https://hooks.example.com/flyte?team=ml",
                phases=["failed", execution_pb2.WorkflowExecution.TIMED_OUT],
                method="put",
                headers={"X-Team": "ml", "Content-Type": "text/plain"},
                body_template="{{ project }}/{{ domain }}/{{ name }}: {{ phase }}",
                timeout=timedelta(seconds=2, microseconds=500_001),
            )
        ]
    )
    assert proto.url == "https://hooks.example.com/flyte?team=ml"
    assert list(proto.phases) == [execution_pb2.WorkflowExecution.FAILED, execution_pb2.WorkflowExecution.TIMED_OUT]
    assert proto.method == api.HTTP_METHOD_PUT
    assert dict(proto.headers) == {"X-Team": "ml", "Content-Type": "text/plain"}
    assert proto.body_template == "{{ project }}/{{ domain }}/{{ name }}: {{ phase }}"
    assert (proto.timeout.seconds, proto.timeout.nanos) == (2, 500_001_000)
    assert proto.destination == ""


def test_webhook_defaults() -> None:
    from flytenotify import Webhook
    from flytenotify.v1 import notification_service_pb2 as api

    (proto,) = convert.webhooks([Webhook(destination="ops-alerts", phases=["FAILED"])])
    assert proto.method == api.HTTP_METHOD_POST
    assert not proto.HasField("timeout")  # the server's sendTimeout
    assert (proto.url, proto.body_template, dict(proto.headers)) == ("", "", {})


def test_webhook_forms_give_the_same_message() -> None:
    from flytenotify import Webhook
    from flytenotify.v1 import notification_service_pb2 as api

    webhook = Webhook(destination="d", phases=["ABORTED"], method="DELETE", headers={"A": "b"}, timeout=timedelta(seconds=3))
    (expected,) = convert.webhooks([webhook])
    forms: list[object] = [
        expected,
        {"destination": "d", "phases": ["aborted"], "method": "delete", "headers": {"A": "b"}, "timeout": "3s"},
        {"destination": "d", "phases": ["ABORTED"], "method": "HTTP_METHOD_DELETE", "headers": {"A": "b"}, "timeout": timedelta(seconds=3)},
        {"destination": "d", "phases": ["ABORTED"], "method": api.HTTP_METHOD_DELETE, "headers": {"A": "b"}, "timeout": "3s"},
    ]
    assert convert.webhooks(forms) == [expected] * len(forms)  # type: ignore[arg-type]


def test_negative_timeouts_keep_one_sign_for_the_server_to_refuse() -> None:
    stamp = convert.duration(timedelta(milliseconds=-1500), "timeout")
    assert (stamp.seconds, stamp.nanos) == (-1, -500_000_000)


def test_send_test_picks_the_oneof_by_type() -> None:
    from flytenotify import Webhook

    assert convert.send_test_request({"email": {"recipients_email": ["a@example.com"]}}).WhichOneof("target") == "notification"
    assert convert.send_test_request({"slack": {"recipientsEmail": ["a@example.com"]}}).WhichOneof("target") == "notification"
    assert convert.send_test_request(Webhook(destination="d")).WhichOneof("target") == "webhook"
    assert convert.send_test_request({"url": "https://h.example.com"}).WhichOneof("target") == "webhook"
    assert convert.send_test_request({"destination": "d"}).WhichOneof("target") == "webhook"


def test_rendered_message_headers_are_read_only_and_results_stay_hashable() -> None:
    from flytenotify import PreviewResult
    from flytenotify.v1 import notification_service_pb2 as api

    response = api.PreviewResponse(
        messages=[api.RenderedMessage(channel="webhook", method="POST", body="{}", destination="h.example.com/x", headers={"b": "2", "a": "1"})]
    )
    result = PreviewResult.from_proto(response)
    (message,) = result.messages
    assert dict(message.headers) == {"a": "1", "b": "2"}
    assert (message.channel, message.method, message.body, message.destination) == ("webhook", "POST", "{}", "h.example.com/x")
    with pytest.raises(TypeError):
        message.headers["c"] = "3"  # type: ignore[index]
    assert result == PreviewResult.from_proto(response)
    assert len({result, PreviewResult.from_proto(response)}) == 1


def test_states_and_event_kinds_from_a_newer_server_are_unspecified() -> None:
    from flytenotify import DeliveryEventKind, DeliveryState
    from flytenotify.results import Delivery, DeliveryEvent
    from flytenotify.v1 import notification_service_pb2 as api

    assert Delivery.from_proto(api.Delivery(state=99)).state is DeliveryState.UNSPECIFIED  # type: ignore[arg-type]
    assert Delivery.from_proto(api.Delivery(state=api.DELIVERY_STATE_DISCARDED)).state is DeliveryState.DISCARDED
    assert DeliveryEvent.from_proto(api.DeliveryEvent(kind=99)).kind is DeliveryEventKind.UNSPECIFIED  # type: ignore[arg-type]
