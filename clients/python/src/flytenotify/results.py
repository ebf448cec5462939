"""What the client returns: small frozen dataclasses, so callers need not know the wire messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from flyteidl.core import execution_pb2, identifier_pb2
from google.protobuf import timestamp_pb2

from flytenotify.v1 import notification_service_pb2 as api

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    # Exact and timezone-aware on every supported protobuf (ToDatetime's tzinfo argument is newer).
    return _EPOCH + timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


@dataclass(frozen=True)
class EnqueueResult:
    delivery_ids: tuple[str, ...]
    """One id per delivery, in the order of the notifications that matched the phase."""
    unmatched: int
    """Notifications whose phases did not include the execution's phase."""
    request_id: str
    """The idempotency key the deliveries are recorded under."""
    duplicate: bool
    """True when this request_id had been recorded before: nothing new was sent."""

    @classmethod
    def from_proto(cls, response: api.EnqueueResponse) -> EnqueueResult:
        return cls(
            delivery_ids=tuple(response.delivery_ids),
            unmatched=response.unmatched_notifications,
            request_id=response.request_id,
            duplicate=response.duplicate,
        )


@dataclass(frozen=True)
class RenderedMessage:
    channel: str
    """"email", "slack" or "pagerduty"."""
    recipients: tuple[str, ...]
    sender: str
    subject: str
    html_body: str
    text_body: str
    notification_index: int
    """Index of the notification that produced this message."""

    @classmethod
    def from_proto(cls, message: api.RenderedMessage) -> RenderedMessage:
        return cls(
            channel=message.channel,
            recipients=tuple(message.recipients),
            sender=message.sender,
            subject=message.subject,
            html_body=message.html_body,
            text_body=message.text_body,
            notification_index=message.notification_index,
        )


@dataclass(frozen=True)
class PreviewResult:
    messages: tuple[RenderedMessage, ...]
    unmatched: int

    @classmethod
    def from_proto(cls, response: api.PreviewResponse) -> PreviewResult:
        return cls(
            messages=tuple(RenderedMessage.from_proto(m) for m in response.messages),
            unmatched=response.unmatched_notifications,
        )


class DeliveryState(enum.Enum):
    PENDING = api.DELIVERY_STATE_PENDING
    """Accepted, not yet tried (or being tried now)."""
    RETRYING = api.DELIVERY_STATE_RETRYING
    """Failed with a retryable error; tried again at next_attempt_at."""
    DEAD = api.DELIVERY_STATE_DEAD
    """Failed permanently or ran out of attempts."""
    UNSPECIFIED = api.DELIVERY_STATE_UNSPECIFIED


@dataclass(frozen=True)
class Delivery:
    id: str
    execution_id: identifier_pb2.WorkflowExecutionIdentifier
    channel: str
    recipients: tuple[str, ...]
    phase: str
    """The phase name, e.g. "FAILED"."""
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    """None when the delivery is dead."""
    last_error: str
    created_at: datetime
    request_id: str

    @classmethod
    def from_proto(cls, d: api.Delivery) -> Delivery:
        phase = execution_pb2.WorkflowExecution.Phase
        try:
            state = DeliveryState(d.state)
        except ValueError:  # a state added to the server after this client
            state = DeliveryState.UNSPECIFIED
        return cls(
            id=d.id,
            execution_id=d.execution_id,
            channel=d.channel,
            recipients=tuple(d.recipients),
            phase=phase.Name(d.phase) if d.phase in phase.values() else str(d.phase),
            state=state,
            attempts=d.attempts,
            next_attempt_at=_datetime(d.next_attempt_at) if d.HasField("next_attempt_at") else None,
            last_error=d.last_error,
            created_at=_datetime(d.created_at),
            request_id=d.request_id,
        )
