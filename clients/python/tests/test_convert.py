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
