"""Python client for flyte-notify.

The notification, identifier and phase types are flyteidl's own, so flytekit's objects
(flytekit.Email, Slack, PagerDuty, WorkflowExecutionPhase) pass straight through:

    from flytekit import Email, WorkflowExecutionPhase
    from flytenotify import NotificationClient

    with NotificationClient("127.0.0.1:8091") as client:
        result = client.enqueue(
            "flytesnacks/development/a1b2c3",
            WorkflowExecutionPhase.FAILED,
            [Email(phases=[WorkflowExecutionPhase.FAILED], recipients_email=["oncall@example.com"])],
        )

Flyte 2 runs take the flyte SDK's own notifiers (flyte.notify), serialized by the SDK:

    client.enqueue_run_event(("flytesnacks", "development", "r1"), ActionPhase.FAILED,
                             flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=["a@example.com"]))
"""

from flytenotify.aio import AsyncNotificationClient
from flytenotify.client import NotificationClient
from flytenotify.errors import (
    ConflictError,
    DeadlineExceededError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    NotifyError,
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
)
from flytenotify.results import (
    Delivery,
    DeliveryConfig,
    DeliveryDetails,
    DeliveryEvent,
    DeliveryEventKind,
    DeliveryState,
    DiscardResult,
    EnqueueResult,
    PreviewResult,
    RedriveResult,
    RenderedMessage,
    SendTestResult,
    Expectation,
    ExpectationState,
    NamedRuleSet,
    Silence,
    SilenceState,
    SkippedDelivery,
)
from flytenotify.webhook import Webhook

__version__ = "0.1.0"

__all__ = [
    "AsyncNotificationClient",
    "ConflictError",
    "DeadlineExceededError",
    "Delivery",
    "DeliveryConfig",
    "DeliveryDetails",
    "DeliveryEvent",
    "DeliveryEventKind",
    "DeliveryState",
    "DiscardResult",
    "EnqueueResult",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NamedRuleSet",
    "NotFoundError",
    "NotificationClient",
    "NotifyError",
    "PermissionDeniedError",
    "PreviewResult",
    "RedriveResult",
    "RenderedMessage",
    "SendTestResult",
    "Expectation",
    "ExpectationState",
    "Silence",
    "SilenceState",
    "SkippedDelivery",
    "UnauthenticatedError",
    "UnavailableError",
    "Webhook",
]
