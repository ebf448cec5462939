"""The generated code shares flyteidl's message classes: no second descriptor, no conversion."""

from __future__ import annotations

import pytest
from flyteidl.admin import common_pb2
from flyteidl.core import execution_pb2, identifier_pb2

from flytenotify.v1 import notification_service_pb2 as api


def test_generated_messages_use_flyteidl_classes() -> None:
    fields = api.EnqueueRequest.DESCRIPTOR.fields_by_name
    assert fields["notifications"].message_type is common_pb2.Notification.DESCRIPTOR
    context = api.ExecutionContext.DESCRIPTOR.fields_by_name
    assert context["execution_id"].message_type is identifier_pb2.WorkflowExecutionIdentifier.DESCRIPTOR
    assert context["phase"].enum_type is execution_pb2.WorkflowExecution.Phase.DESCRIPTOR
    assert context["error"].message_type is execution_pb2.ExecutionError.DESCRIPTOR


def test_flytekit_protos_go_into_requests_unchanged() -> None:
    flytekit = pytest.importorskip("flytekit")
    slack = flytekit.Slack(phases=[flytekit.WorkflowExecutionPhase.FAILED], recipients_email=["c@acme.slack.com"])
    request = api.EnqueueRequest(notifications=[slack.to_flyte_idl()])
    assert request.notifications[0] == slack.to_flyte_idl()
    assert request.notifications[0].slack.recipients_email == ["c@acme.slack.com"]
