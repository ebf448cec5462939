"""What the client returns: small frozen dataclasses, so callers need not know the wire messages."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

from flyteidl.core import execution_pb2, identifier_pb2
from flyteidl2.task import run_pb2
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
    """"email", "slack", "pagerduty" or "webhook"."""
    recipients: tuple[str, ...]
    sender: str
    subject: str
    html_body: str
    text_body: str
    notification_index: int
    """Index of the notification that produced this message; of the webhook in `webhooks` when
    channel is "webhook"."""
    body: str = ""
    """Native Slack, PagerDuty and webhook messages: the request body exactly as sent, less secrets
    (a routing key, a signature). Empty for email."""
    destination: str = ""
    """Where it goes, without secrets: "email", a route's recipient, a webhook's host and path."""
    method: str = ""
    """Webhooks: the HTTP method, e.g. "POST"."""
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    """Webhooks: the headers sent, read-only (signature headers are made at send time)."""

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
            body=message.body,
            destination=message.destination,
            method=message.method,
            headers=MappingProxyType(dict(sorted(message.headers.items()))),
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
    """Failed permanently or ran out of attempts. `redrive` sends it again; `discard` sets it aside."""
    DELIVERED = api.DELIVERY_STATE_DELIVERED
    """Sent. Only `get_delivery` shows these; `list_pending` does not."""
    DISCARDED = api.DELIVERY_STATE_DISCARDED
    """Dead, then discarded by an operator. Only `get_delivery` shows these."""
    SILENCED = api.DELIVERY_STATE_SILENCED
    """Not sent: a silence matched it when it was due. `list_pending` shows these only with
    filters="eq(state,silenced)". Pending again when a deliver_after silence ends."""
    DISARMED = api.DELIVERY_STATE_DISARMED
    """A deadline's alert whose execution reached a terminal phase first: never sent. Only
    `get_delivery` shows these."""
    GROUPED = api.DELIVERY_STATE_GROUPED
    """Waiting in its group for the digest named by `digest_id`; delivered with it."""
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
    """None when the delivery is dead, delivered or discarded."""
    last_error: str
    created_at: datetime
    request_id: str
    digest_id: str = ""
    """A grouped member's digest: the delivery that sends it with its group. Empty otherwise."""

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
            digest_id=d.digest_id,
        )


@dataclass(frozen=True)
class SendTestResult:
    delivery_id: str
    """The test message's delivery: follow it with get_delivery."""
    request_id: str
    """The request_id the server recorded it under (it names the test execution)."""

    @classmethod
    def from_proto(cls, response: api.SendTestResponse) -> SendTestResult:
        return cls(delivery_id=response.delivery_id, request_id=response.request_id)


@dataclass(frozen=True)
class SkippedDelivery:
    """A selected delivery that redrive or discard left alone, and why."""

    delivery_id: str
    reason: str
    """E.g. "not found" or "not dead: it is pending"."""


@dataclass(frozen=True)
class _Acted:
    delivery_ids: tuple[str, ...]
    """The deliveries that changed state."""
    skipped: tuple[SkippedDelivery, ...]
    """Named deliveries that were not dead (or not found) and so were left alone."""
    more: bool
    """With filters: more dead deliveries matched than the limit; call again for the rest."""


@dataclass(frozen=True)
class RedriveResult(_Acted):
    """`delivery_ids` are pending again, due now, with a fresh attempt budget."""

    @classmethod
    def from_proto(cls, response: api.RedriveResponse) -> RedriveResult:
        return cls(
            delivery_ids=tuple(response.delivery_ids),
            skipped=tuple(SkippedDelivery(s.delivery_id, s.reason) for s in response.skipped),
            more=response.more,
        )


@dataclass(frozen=True)
class DiscardResult(_Acted):
    """`delivery_ids` are discarded: out of list_pending, still shown by get_delivery."""

    @classmethod
    def from_proto(cls, response: api.DiscardResponse) -> DiscardResult:
        return cls(
            delivery_ids=tuple(response.delivery_ids),
            skipped=tuple(SkippedDelivery(s.delivery_id, s.reason) for s in response.skipped),
            more=response.more,
        )


class DeliveryEventKind(enum.Enum):
    FAILED = api.DeliveryEvent.KIND_FAILED
    """A send failed; it will be tried again."""
    DEAD = api.DeliveryEvent.KIND_DEAD
    """A send failed for good, or the last attempt did."""
    DELIVERED = api.DeliveryEvent.KIND_DELIVERED
    REDRIVEN = api.DeliveryEvent.KIND_REDRIVEN
    DISCARDED = api.DeliveryEvent.KIND_DISCARDED
    SILENCED = api.DeliveryEvent.KIND_SILENCED
    """Not sent: the silence whose id is the event's detail matched it."""
    UNSILENCED = api.DeliveryEvent.KIND_UNSILENCED
    """Its deliver_after silence ended: pending again."""
    DISARMED = api.DeliveryEvent.KIND_DISARMED
    """A deadline's alert, disarmed by a terminal phase of its execution."""
    UNSPECIFIED = api.DeliveryEvent.KIND_UNSPECIFIED


@dataclass(frozen=True)
class DeliveryEvent:
    """One thing that happened to a delivery after it was accepted."""

    at: datetime
    kind: DeliveryEventKind
    attempts: int
    """Attempts recorded at that moment."""
    detail: str
    """The error of a failed send, or the operator's note of a redrive or discard."""

    @classmethod
    def from_proto(cls, event: api.DeliveryEvent) -> DeliveryEvent:
        try:
            kind = DeliveryEventKind(event.kind)
        except ValueError:  # a kind added to the server after this client
            kind = DeliveryEventKind.UNSPECIFIED
        return cls(at=_datetime(event.at), kind=kind, attempts=event.attempts, detail=event.detail)


@dataclass(frozen=True)
class DeliveryDetails:
    """One delivery in any state, with its history."""

    delivery: Delivery
    history: tuple[DeliveryEvent, ...]
    """Oldest first; empty while nothing has happened since it was accepted."""

    @classmethod
    def from_proto(cls, response: api.GetDeliveryResponse) -> DeliveryDetails:
        return cls(
            delivery=Delivery.from_proto(response.delivery),
            history=tuple(DeliveryEvent.from_proto(e) for e in response.history),
        )


class SilenceState(enum.Enum):
    PENDING = api.Silence.STATE_PENDING
    """Starts later."""
    ACTIVE = api.Silence.STATE_ACTIVE
    EXPIRED = api.Silence.STATE_EXPIRED
    """Ended or expired; listed with include_expired for 7 days."""
    UNSPECIFIED = api.Silence.STATE_UNSPECIFIED


@dataclass(frozen=True)
class Silence:
    """A matcher (list_pending's filter syntax) and a time window: matching deliveries that are due
    meanwhile are not sent but recorded SILENCED."""

    id: str
    matcher: str
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    deliver_after: bool
    """When it ends, what it held is sent instead of dropped."""
    state: SilenceState
    created_at: datetime

    @classmethod
    def from_proto(cls, s: api.Silence) -> Silence:
        try:
            state = SilenceState(s.state)
        except ValueError:  # a state added to the server after this client
            state = SilenceState.UNSPECIFIED
        return cls(
            id=s.id,
            matcher=s.matcher,
            starts_at=_datetime(s.starts_at),
            ends_at=_datetime(s.ends_at),
            created_by=s.created_by,
            comment=s.comment,
            deliver_after=s.deliver_after,
            state=state,
            created_at=_datetime(s.created_at),
        )


class ExpectationState(enum.Enum):
    OK = api.Expectation.STATE_OK
    """Succeeding on schedule."""
    MISSED = api.Expectation.STATE_MISSED
    """No success within every + grace: the alert went out; the next success recovers it."""
    UNSPECIFIED = api.Expectation.STATE_UNSPECIFIED


@dataclass(frozen=True)
class Expectation:
    """A launch plan that must succeed every so often (flyteNotify.expectations), as the server
    sees it now."""

    launch_plan: str
    """project/domain/name"""
    every: timedelta
    grace: timedelta
    last_success_at: datetime | None
    """None: no success seen since watched_since."""
    watched_since: datetime | None
    next_due_at: datetime | None
    """When the alert goes out if no success comes first; None while missed."""
    state: ExpectationState
    recipients: tuple[str, ...]

    @classmethod
    def from_proto(cls, e: api.Expectation) -> Expectation:
        try:
            state = ExpectationState(e.state)
        except ValueError:  # a state added to the server after this client
            state = ExpectationState.UNSPECIFIED
        return cls(
            launch_plan=e.launch_plan,
            every=e.every.ToTimedelta(),
            grace=e.grace.ToTimedelta(),
            last_success_at=_datetime(e.last_success_at) if e.HasField("last_success_at") else None,
            watched_since=_datetime(e.watched_since) if e.HasField("watched_since") else None,
            next_due_at=_datetime(e.next_due_at) if e.HasField("next_due_at") else None,
            state=state,
            recipients=tuple(e.recipients),
        )


@dataclass(frozen=True)
class DeliveryConfig:
    """A named delivery config (flyteNotify.deliveryConfigs), as flyte.notify.NamedDelivery names
    it; its secrets are never sent."""

    name: str
    project: str
    """Empty: every project can use it."""
    domain: str
    """Empty: every domain can use it."""
    channel: str
    """"email", "webhook", "slack" or "teams"."""
    destinations: tuple[str, ...]
    """Email addresses, or a webhook's host and path."""

    @classmethod
    def from_proto(cls, c: api.DeliveryConfig) -> DeliveryConfig:
        return cls(
            name=c.name, project=c.project, domain=c.domain, channel=c.channel, destinations=tuple(c.destinations)
        )


@dataclass(frozen=True)
class NamedRuleSet:
    """A named rule set (flyteNotify.rules), as flyte.notify.NamedRule names it."""

    name: str
    project: str
    domain: str
    rules: tuple[run_pb2.InlineRule, ...]
    """Each names a delivery config (delivery_config_name)."""

    @classmethod
    def from_proto(cls, r: api.NamedRuleSet) -> NamedRuleSet:
        return cls(name=r.name, project=r.project, domain=r.domain, rules=tuple(r.rules))
