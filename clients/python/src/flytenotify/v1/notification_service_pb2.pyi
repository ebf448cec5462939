# Generated from proto/flytenotify/v1 by grpcio-tools==1.62.3; do not edit. Regenerate with clients/python/scripts/generate.sh.
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from flyteidl.admin import common_pb2 as _common_pb2
from flyteidl.core import execution_pb2 as _execution_pb2
from flyteidl.core import identifier_pb2 as _identifier_pb2
from flyteidl2.common import identifier_pb2 as _identifier_pb2_1
from flyteidl2.common import phase_pb2 as _phase_pb2
from flyteidl2.task import run_pb2 as _run_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HttpMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HTTP_METHOD_UNSPECIFIED: _ClassVar[HttpMethod]
    HTTP_METHOD_GET: _ClassVar[HttpMethod]
    HTTP_METHOD_HEAD: _ClassVar[HttpMethod]
    HTTP_METHOD_POST: _ClassVar[HttpMethod]
    HTTP_METHOD_PUT: _ClassVar[HttpMethod]
    HTTP_METHOD_DELETE: _ClassVar[HttpMethod]
    HTTP_METHOD_CONNECT: _ClassVar[HttpMethod]
    HTTP_METHOD_OPTIONS: _ClassVar[HttpMethod]
    HTTP_METHOD_TRACE: _ClassVar[HttpMethod]
    HTTP_METHOD_PATCH: _ClassVar[HttpMethod]

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_PENDING: _ClassVar[DeliveryState]
    DELIVERY_STATE_RETRYING: _ClassVar[DeliveryState]
    DELIVERY_STATE_DEAD: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DISCARDED: _ClassVar[DeliveryState]
    DELIVERY_STATE_SILENCED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DISARMED: _ClassVar[DeliveryState]
    DELIVERY_STATE_GROUPED: _ClassVar[DeliveryState]
HTTP_METHOD_UNSPECIFIED: HttpMethod
HTTP_METHOD_GET: HttpMethod
HTTP_METHOD_HEAD: HttpMethod
HTTP_METHOD_POST: HttpMethod
HTTP_METHOD_PUT: HttpMethod
HTTP_METHOD_DELETE: HttpMethod
HTTP_METHOD_CONNECT: HttpMethod
HTTP_METHOD_OPTIONS: HttpMethod
HTTP_METHOD_TRACE: HttpMethod
HTTP_METHOD_PATCH: HttpMethod
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_PENDING: DeliveryState
DELIVERY_STATE_RETRYING: DeliveryState
DELIVERY_STATE_DEAD: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_DISCARDED: DeliveryState
DELIVERY_STATE_SILENCED: DeliveryState
DELIVERY_STATE_DISARMED: DeliveryState
DELIVERY_STATE_GROUPED: DeliveryState

class ExecutionContext(_message.Message):
    __slots__ = ("execution_id", "launch_plan", "workflow", "phase", "error", "occurred_at", "still_running_after", "expectation")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_PLAN_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    STILL_RUNNING_AFTER_FIELD_NUMBER: _ClassVar[int]
    EXPECTATION_FIELD_NUMBER: _ClassVar[int]
    execution_id: _identifier_pb2.WorkflowExecutionIdentifier
    launch_plan: _identifier_pb2.Identifier
    workflow: _identifier_pb2.Identifier
    phase: _execution_pb2.WorkflowExecution.Phase
    error: _execution_pb2.ExecutionError
    occurred_at: _timestamp_pb2.Timestamp
    still_running_after: _duration_pb2.Duration
    expectation: ExpectationAlert
    def __init__(self, execution_id: _Optional[_Union[_identifier_pb2.WorkflowExecutionIdentifier, _Mapping]] = ..., launch_plan: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., workflow: _Optional[_Union[_identifier_pb2.Identifier, _Mapping]] = ..., phase: _Optional[_Union[_execution_pb2.WorkflowExecution.Phase, str]] = ..., error: _Optional[_Union[_execution_pb2.ExecutionError, _Mapping]] = ..., occurred_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., still_running_after: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., expectation: _Optional[_Union[ExpectationAlert, _Mapping]] = ...) -> None: ...

class ExpectationAlert(_message.Message):
    __slots__ = ("launch_plan", "every", "grace", "last_success_at", "watched_since", "recovered")
    LAUNCH_PLAN_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    WATCHED_SINCE_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    launch_plan: str
    every: _duration_pb2.Duration
    grace: _duration_pb2.Duration
    last_success_at: _timestamp_pb2.Timestamp
    watched_since: _timestamp_pb2.Timestamp
    recovered: bool
    def __init__(self, launch_plan: _Optional[str] = ..., every: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., grace: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., last_success_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., watched_since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., recovered: bool = ...) -> None: ...

class EnqueueRequest(_message.Message):
    __slots__ = ("request_id", "execution", "notifications", "webhooks", "deadline")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    execution: ExecutionContext
    notifications: _containers.RepeatedCompositeFieldContainer[_common_pb2.Notification]
    webhooks: _containers.RepeatedCompositeFieldContainer[WebhookNotification]
    deadline: _duration_pb2.Duration
    def __init__(self, request_id: _Optional[str] = ..., execution: _Optional[_Union[ExecutionContext, _Mapping]] = ..., notifications: _Optional[_Iterable[_Union[_common_pb2.Notification, _Mapping]]] = ..., webhooks: _Optional[_Iterable[_Union[WebhookNotification, _Mapping]]] = ..., deadline: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WebhookNotification(_message.Message):
    __slots__ = ("url", "method", "headers", "body_template", "phases", "destination", "timeout")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    URL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    PHASES_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    url: str
    method: HttpMethod
    headers: _containers.ScalarMap[str, str]
    body_template: str
    phases: _containers.RepeatedScalarFieldContainer[_execution_pb2.WorkflowExecution.Phase]
    destination: str
    timeout: _duration_pb2.Duration
    def __init__(self, url: _Optional[str] = ..., method: _Optional[_Union[HttpMethod, str]] = ..., headers: _Optional[_Mapping[str, str]] = ..., body_template: _Optional[str] = ..., phases: _Optional[_Iterable[_Union[_execution_pb2.WorkflowExecution.Phase, str]]] = ..., destination: _Optional[str] = ..., timeout: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EnqueueResponse(_message.Message):
    __slots__ = ("delivery_ids", "unmatched_notifications", "request_id", "duplicate")
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    unmatched_notifications: int
    request_id: str
    duplicate: bool
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ..., unmatched_notifications: _Optional[int] = ..., request_id: _Optional[str] = ..., duplicate: bool = ...) -> None: ...

class PreviewRequest(_message.Message):
    __slots__ = ("execution", "notifications", "webhooks", "run_event", "action_paused")
    EXECUTION_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    RUN_EVENT_FIELD_NUMBER: _ClassVar[int]
    ACTION_PAUSED_FIELD_NUMBER: _ClassVar[int]
    execution: ExecutionContext
    notifications: _containers.RepeatedCompositeFieldContainer[_common_pb2.Notification]
    webhooks: _containers.RepeatedCompositeFieldContainer[WebhookNotification]
    run_event: EnqueueRunEventRequest
    action_paused: EnqueueActionPausedRequest
    def __init__(self, execution: _Optional[_Union[ExecutionContext, _Mapping]] = ..., notifications: _Optional[_Iterable[_Union[_common_pb2.Notification, _Mapping]]] = ..., webhooks: _Optional[_Iterable[_Union[WebhookNotification, _Mapping]]] = ..., run_event: _Optional[_Union[EnqueueRunEventRequest, _Mapping]] = ..., action_paused: _Optional[_Union[EnqueueActionPausedRequest, _Mapping]] = ...) -> None: ...

class RenderedMessage(_message.Message):
    __slots__ = ("channel", "recipients", "sender", "subject", "html_body", "text_body", "notification_index", "body", "destination", "method", "headers")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    HTML_BODY_FIELD_NUMBER: _ClassVar[int]
    TEXT_BODY_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_INDEX_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    sender: str
    subject: str
    html_body: str
    text_body: str
    notification_index: int
    body: str
    destination: str
    method: str
    headers: _containers.ScalarMap[str, str]
    def __init__(self, channel: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., sender: _Optional[str] = ..., subject: _Optional[str] = ..., html_body: _Optional[str] = ..., text_body: _Optional[str] = ..., notification_index: _Optional[int] = ..., body: _Optional[str] = ..., destination: _Optional[str] = ..., method: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class PreviewResponse(_message.Message):
    __slots__ = ("messages", "unmatched_notifications")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[RenderedMessage]
    unmatched_notifications: int
    def __init__(self, messages: _Optional[_Iterable[_Union[RenderedMessage, _Mapping]]] = ..., unmatched_notifications: _Optional[int] = ...) -> None: ...

class PreviewDigestRequest(_message.Message):
    __slots__ = ("executions", "notification", "webhook")
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    executions: _containers.RepeatedCompositeFieldContainer[ExecutionContext]
    notification: _common_pb2.Notification
    webhook: WebhookNotification
    def __init__(self, executions: _Optional[_Iterable[_Union[ExecutionContext, _Mapping]]] = ..., notification: _Optional[_Union[_common_pb2.Notification, _Mapping]] = ..., webhook: _Optional[_Union[WebhookNotification, _Mapping]] = ...) -> None: ...

class PreviewDigestResponse(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[RenderedMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[RenderedMessage, _Mapping]]] = ...) -> None: ...

class ListPendingRequest(_message.Message):
    __slots__ = ("limit", "token", "filters")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    limit: int
    token: str
    filters: str
    def __init__(self, limit: _Optional[int] = ..., token: _Optional[str] = ..., filters: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("id", "execution_id", "channel", "recipients", "phase", "state", "attempts", "next_attempt_at", "last_error", "created_at", "request_id", "digest_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    execution_id: _identifier_pb2.WorkflowExecutionIdentifier
    channel: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    phase: _execution_pb2.WorkflowExecution.Phase
    state: DeliveryState
    attempts: int
    next_attempt_at: _timestamp_pb2.Timestamp
    last_error: str
    created_at: _timestamp_pb2.Timestamp
    request_id: str
    digest_id: str
    def __init__(self, id: _Optional[str] = ..., execution_id: _Optional[_Union[_identifier_pb2.WorkflowExecutionIdentifier, _Mapping]] = ..., channel: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., phase: _Optional[_Union[_execution_pb2.WorkflowExecution.Phase, str]] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., attempts: _Optional[int] = ..., next_attempt_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ..., digest_id: _Optional[str] = ...) -> None: ...

class ListPendingResponse(_message.Message):
    __slots__ = ("deliveries", "token")
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    token: str
    def __init__(self, deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., token: _Optional[str] = ...) -> None: ...

class RedriveRequest(_message.Message):
    __slots__ = ("delivery_ids", "filters", "limit", "note")
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: str
    limit: int
    note: str
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[str] = ..., limit: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class RedriveResponse(_message.Message):
    __slots__ = ("delivery_ids", "skipped", "more")
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedDelivery]
    more: bool
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[_Union[SkippedDelivery, _Mapping]]] = ..., more: bool = ...) -> None: ...

class DiscardRequest(_message.Message):
    __slots__ = ("delivery_ids", "filters", "limit", "note")
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    filters: str
    limit: int
    note: str
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ..., filters: _Optional[str] = ..., limit: _Optional[int] = ..., note: _Optional[str] = ...) -> None: ...

class DiscardResponse(_message.Message):
    __slots__ = ("delivery_ids", "skipped", "more")
    DELIVERY_IDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    delivery_ids: _containers.RepeatedScalarFieldContainer[str]
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedDelivery]
    more: bool
    def __init__(self, delivery_ids: _Optional[_Iterable[str]] = ..., skipped: _Optional[_Iterable[_Union[SkippedDelivery, _Mapping]]] = ..., more: bool = ...) -> None: ...

class SkippedDelivery(_message.Message):
    __slots__ = ("delivery_id", "reason")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    reason: str
    def __init__(self, delivery_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SendTestRequest(_message.Message):
    __slots__ = ("notification", "webhook", "rule", "run")
    NOTIFICATION_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    notification: _common_pb2.Notification
    webhook: WebhookNotification
    rule: _run_pb2.InlineRule
    run: _identifier_pb2_1.RunIdentifier
    def __init__(self, notification: _Optional[_Union[_common_pb2.Notification, _Mapping]] = ..., webhook: _Optional[_Union[WebhookNotification, _Mapping]] = ..., rule: _Optional[_Union[_run_pb2.InlineRule, _Mapping]] = ..., run: _Optional[_Union[_identifier_pb2_1.RunIdentifier, _Mapping]] = ...) -> None: ...

class SendTestResponse(_message.Message):
    __slots__ = ("delivery_id", "request_id")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    request_id: str
    def __init__(self, delivery_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetDeliveryRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class DeliveryEvent(_message.Message):
    __slots__ = ("at", "kind", "attempts", "detail")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[DeliveryEvent.Kind]
        KIND_FAILED: _ClassVar[DeliveryEvent.Kind]
        KIND_DEAD: _ClassVar[DeliveryEvent.Kind]
        KIND_DELIVERED: _ClassVar[DeliveryEvent.Kind]
        KIND_REDRIVEN: _ClassVar[DeliveryEvent.Kind]
        KIND_DISCARDED: _ClassVar[DeliveryEvent.Kind]
        KIND_SILENCED: _ClassVar[DeliveryEvent.Kind]
        KIND_UNSILENCED: _ClassVar[DeliveryEvent.Kind]
        KIND_DISARMED: _ClassVar[DeliveryEvent.Kind]
    KIND_UNSPECIFIED: DeliveryEvent.Kind
    KIND_FAILED: DeliveryEvent.Kind
    KIND_DEAD: DeliveryEvent.Kind
    KIND_DELIVERED: DeliveryEvent.Kind
    KIND_REDRIVEN: DeliveryEvent.Kind
    KIND_DISCARDED: DeliveryEvent.Kind
    KIND_SILENCED: DeliveryEvent.Kind
    KIND_UNSILENCED: DeliveryEvent.Kind
    KIND_DISARMED: DeliveryEvent.Kind
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    kind: DeliveryEvent.Kind
    attempts: int
    detail: str
    def __init__(self, at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[DeliveryEvent.Kind, str]] = ..., attempts: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class GetDeliveryResponse(_message.Message):
    __slots__ = ("delivery", "history")
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    delivery: Delivery
    history: _containers.RepeatedCompositeFieldContainer[DeliveryEvent]
    def __init__(self, delivery: _Optional[_Union[Delivery, _Mapping]] = ..., history: _Optional[_Iterable[_Union[DeliveryEvent, _Mapping]]] = ...) -> None: ...

class Silence(_message.Message):
    __slots__ = ("id", "matcher", "starts_at", "ends_at", "created_by", "comment", "deliver_after", "state", "created_at")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Silence.State]
        STATE_PENDING: _ClassVar[Silence.State]
        STATE_ACTIVE: _ClassVar[Silence.State]
        STATE_EXPIRED: _ClassVar[Silence.State]
    STATE_UNSPECIFIED: Silence.State
    STATE_PENDING: Silence.State
    STATE_ACTIVE: Silence.State
    STATE_EXPIRED: Silence.State
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCHER_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    DELIVER_AFTER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    matcher: str
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    created_by: str
    comment: str
    deliver_after: bool
    state: Silence.State
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., matcher: _Optional[str] = ..., starts_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., created_by: _Optional[str] = ..., comment: _Optional[str] = ..., deliver_after: bool = ..., state: _Optional[_Union[Silence.State, str]] = ..., created_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateSilenceRequest(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class CreateSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ListSilencesRequest(_message.Message):
    __slots__ = ("include_expired",)
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    include_expired: bool
    def __init__(self, include_expired: bool = ...) -> None: ...

class ListSilencesResponse(_message.Message):
    __slots__ = ("silences",)
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    silences: _containers.RepeatedCompositeFieldContainer[Silence]
    def __init__(self, silences: _Optional[_Iterable[_Union[Silence, _Mapping]]] = ...) -> None: ...

class ExpireSilenceRequest(_message.Message):
    __slots__ = ("silence_id",)
    SILENCE_ID_FIELD_NUMBER: _ClassVar[int]
    silence_id: str
    def __init__(self, silence_id: _Optional[str] = ...) -> None: ...

class ExpireSilenceResponse(_message.Message):
    __slots__ = ("silence",)
    SILENCE_FIELD_NUMBER: _ClassVar[int]
    silence: Silence
    def __init__(self, silence: _Optional[_Union[Silence, _Mapping]] = ...) -> None: ...

class ListExpectationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Expectation(_message.Message):
    __slots__ = ("launch_plan", "every", "grace", "last_success_at", "watched_since", "next_due_at", "state", "recipients")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[Expectation.State]
        STATE_OK: _ClassVar[Expectation.State]
        STATE_MISSED: _ClassVar[Expectation.State]
    STATE_UNSPECIFIED: Expectation.State
    STATE_OK: Expectation.State
    STATE_MISSED: Expectation.State
    LAUNCH_PLAN_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    WATCHED_SINCE_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    launch_plan: str
    every: _duration_pb2.Duration
    grace: _duration_pb2.Duration
    last_success_at: _timestamp_pb2.Timestamp
    watched_since: _timestamp_pb2.Timestamp
    next_due_at: _timestamp_pb2.Timestamp
    state: Expectation.State
    recipients: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, launch_plan: _Optional[str] = ..., every: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., grace: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., last_success_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., watched_since: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., next_due_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[Expectation.State, str]] = ..., recipients: _Optional[_Iterable[str]] = ...) -> None: ...

class ListExpectationsResponse(_message.Message):
    __slots__ = ("expectations",)
    EXPECTATIONS_FIELD_NUMBER: _ClassVar[int]
    expectations: _containers.RepeatedCompositeFieldContainer[Expectation]
    def __init__(self, expectations: _Optional[_Iterable[_Union[Expectation, _Mapping]]] = ...) -> None: ...

class Flyte2Rules(_message.Message):
    __slots__ = ("notification_rules", "notification_rule_name")
    NOTIFICATION_RULES_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATION_RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    notification_rules: _run_pb2.InlineRuleList
    notification_rule_name: str
    def __init__(self, notification_rules: _Optional[_Union[_run_pb2.InlineRuleList, _Mapping]] = ..., notification_rule_name: _Optional[str] = ...) -> None: ...

class EnqueueRunEventRequest(_message.Message):
    __slots__ = ("request_id", "run", "phase", "error", "rules", "run_url", "duration", "occurred_at", "task_name", "deadline")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    RUN_URL_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    run: _identifier_pb2_1.RunIdentifier
    phase: _phase_pb2.ActionPhase
    error: str
    rules: Flyte2Rules
    run_url: str
    duration: _duration_pb2.Duration
    occurred_at: _timestamp_pb2.Timestamp
    task_name: str
    deadline: _duration_pb2.Duration
    def __init__(self, request_id: _Optional[str] = ..., run: _Optional[_Union[_identifier_pb2_1.RunIdentifier, _Mapping]] = ..., phase: _Optional[_Union[_phase_pb2.ActionPhase, str]] = ..., error: _Optional[str] = ..., rules: _Optional[_Union[Flyte2Rules, _Mapping]] = ..., run_url: _Optional[str] = ..., duration: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ..., occurred_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., task_name: _Optional[str] = ..., deadline: _Optional[_Union[_duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EnqueueActionPausedRequest(_message.Message):
    __slots__ = ("request_id", "action", "prompt", "description", "prompt_type", "rules", "run_url", "occurred_at", "task_name")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TYPE_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    RUN_URL_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    action: _identifier_pb2_1.ActionIdentifier
    prompt: str
    description: str
    prompt_type: str
    rules: Flyte2Rules
    run_url: str
    occurred_at: _timestamp_pb2.Timestamp
    task_name: str
    def __init__(self, request_id: _Optional[str] = ..., action: _Optional[_Union[_identifier_pb2_1.ActionIdentifier, _Mapping]] = ..., prompt: _Optional[str] = ..., description: _Optional[str] = ..., prompt_type: _Optional[str] = ..., rules: _Optional[_Union[Flyte2Rules, _Mapping]] = ..., run_url: _Optional[str] = ..., occurred_at: _Optional[_Union[_timestamp_pb2.Timestamp, _Mapping]] = ..., task_name: _Optional[str] = ...) -> None: ...

class ListDeliveryConfigsRequest(_message.Message):
    __slots__ = ("project", "domain")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    project: str
    domain: str
    def __init__(self, project: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class DeliveryConfig(_message.Message):
    __slots__ = ("name", "project", "domain", "channel", "destinations")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    DESTINATIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    domain: str
    channel: str
    destinations: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., domain: _Optional[str] = ..., channel: _Optional[str] = ..., destinations: _Optional[_Iterable[str]] = ...) -> None: ...

class ListDeliveryConfigsResponse(_message.Message):
    __slots__ = ("delivery_configs",)
    DELIVERY_CONFIGS_FIELD_NUMBER: _ClassVar[int]
    delivery_configs: _containers.RepeatedCompositeFieldContainer[DeliveryConfig]
    def __init__(self, delivery_configs: _Optional[_Iterable[_Union[DeliveryConfig, _Mapping]]] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ("project", "domain")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    project: str
    domain: str
    def __init__(self, project: _Optional[str] = ..., domain: _Optional[str] = ...) -> None: ...

class NamedRuleSet(_message.Message):
    __slots__ = ("name", "project", "domain", "rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    project: str
    domain: str
    rules: _containers.RepeatedCompositeFieldContainer[_run_pb2.InlineRule]
    def __init__(self, name: _Optional[str] = ..., project: _Optional[str] = ..., domain: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[_run_pb2.InlineRule, _Mapping]]] = ...) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[NamedRuleSet]
    def __init__(self, rules: _Optional[_Iterable[_Union[NamedRuleSet, _Mapping]]] = ...) -> None: ...
