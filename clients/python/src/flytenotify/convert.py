"""Turns what callers already hold (flytekit objects, flyteidl protos, dicts, strings) into the
flyteidl protos that requests carry.

The protos are flyteidl's own classes, so what flytekit builds passes through as is; anything
else is parsed into them, and a bad input fails here, naming its argument, before any call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar, Union, cast

from flyteidl.admin import common_pb2
from flyteidl.core import execution_pb2, identifier_pb2
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from flytenotify.results import Delivery, Silence
from flytenotify.v1 import notification_service_pb2 as api
from flytenotify.webhook import HttpMethodLike, Webhook


class SupportsToFlyteIdl(Protocol):
    """flytekit's model objects: Email, Slack, PagerDuty, Identifier, ExecutionError, ..."""

    def to_flyte_idl(self) -> Any: ...


ExecutionIdLike = Union[identifier_pb2.WorkflowExecutionIdentifier, Mapping[str, Any], str, SupportsToFlyteIdl]
"""A WorkflowExecutionIdentifier proto, a dict of its fields, flytekit's WorkflowExecutionIdentifier,
or "project/domain/name"."""

PhaseLike = Union[int, str]
"""A flyteidl WorkflowExecution.Phase value (flytekit's WorkflowExecutionPhase.FAILED is one), or
its name in any case: "FAILED", "failed", "timed_out"."""

NotificationLike = Union[common_pb2.Notification, Mapping[str, Any], SupportsToFlyteIdl]
"""flytekit.Email/Slack/PagerDuty, a flyteidl.admin.Notification, or its dict form, e.g.
{"phases": ["FAILED"], "email": {"recipients_email": ["a@example.com"]}}."""

WebhookLike = Union[Webhook, api.WebhookNotification, Mapping[str, Any]]
"""flytenotify.Webhook, the generated flytenotify.v1 WebhookNotification, or its dict form, e.g.
{"url": "https://hooks.example.com/x", "phases": ["FAILED"], "method": "put"}."""

DeliveryIdLike = Union[str, Delivery]
"""A delivery id, or a Delivery from list_pending or get_delivery."""

IdentifierLike = Union[identifier_pb2.Identifier, Mapping[str, Any], SupportsToFlyteIdl]
ErrorLike = Union[execution_pb2.ExecutionError, Mapping[str, Any], str, SupportsToFlyteIdl]
"""An ExecutionError proto, its dict form, flytekit's ExecutionError, or just the message."""

M = TypeVar("M", bound=Message)

_PHASE = execution_pb2.WorkflowExecution.Phase
_METHOD_PREFIX = "HTTP_METHOD_"
_METHODS = [n[len(_METHOD_PREFIX) :] for n in api.HttpMethod.keys() if n != "HTTP_METHOD_UNSPECIFIED"]
_STRINGS = (str, bytes, bytearray)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:56]}...{text[-1]}"


def require_list(value: Any, what: str, of: str, *, suggest: bool = True) -> None:
    """Raises TypeError unless `value` can be a repeated field's contents. A string or bytes would
    otherwise become a list of its characters (protobuf iterates whatever it is given), sending
    "oncall@example.com" as 18 recipients; a dict would become a list of its keys. `suggest`: the
    message may propose the string in a list as the fix."""
    if isinstance(value, _STRINGS):
        fix = f"pass a list, e.g. [{_short_repr(value)}]" if suggest else "pass a list"
        raise TypeError(f"{what}: expected a list of {of}, got {type(value).__name__} {_short_repr(value)}; {fix}")
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise TypeError(f"{what}: expected a list of {of}, got {type(value).__name__}; pass a list")


def _is_repeated(field: FieldDescriptor) -> bool:
    # `is_repeated` on newer protobuf (7.x has dropped `label`); `label` on the 4.21 floor.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:
        return bool(getattr(field, "label") == FieldDescriptor.LABEL_REPEATED)
    return bool(repeated() if callable(repeated) else repeated)


def _element_noun(field: FieldDescriptor) -> str:
    if field.enum_type is not None:
        if field.enum_type.full_name == _PHASE.DESCRIPTOR.full_name:
            return "phases"
        return f"{field.enum_type.name} values"
    if field.message_type is not None:
        return f"{field.message_type.name} messages"
    return {FieldDescriptor.TYPE_STRING: "strings", FieldDescriptor.TYPE_BYTES: "bytes"}.get(field.type, "values")


def _is_convertible(value: Any) -> bool:
    """A dict or a to_flyte_idl() object: the inputs whose fields protobuf has not checked yet."""
    return not isinstance(value, Message) and (
        isinstance(value, Mapping) or callable(getattr(value, "to_flyte_idl", None))
    )


def check_lists(value: Any, descriptor: Descriptor, what: str) -> None:
    """Raises TypeError, naming the field, where `value` holds a string (or another non-list)
    in a repeated field of `descriptor`: recipients_email="a@example.com" instead of a list.

    `value` is a dict in protobuf's JSON mapping (keys by field name or JSON name) or an object
    such as flytekit's models, read by attribute: flytekit keeps recipients_email as it was given
    and passes it to the proto constructor, which would split a string into characters. Fields
    that are absent or None are left to the conversion; protos need no check, as their repeated
    fields cannot hold a string."""
    for field in descriptor.fields:
        if isinstance(value, Mapping):
            key = field.name if field.name in value else field.json_name
            item = value.get(key)
        else:
            item = getattr(value, field.name, None)
        if item is None or isinstance(item, Message):
            continue
        path = f"{what}.{field.name}"
        message_type = field.message_type
        if _is_repeated(field) and not (message_type is not None and message_type.GetOptions().map_entry):
            require_list(item, path, _element_noun(field))
            if message_type is not None and isinstance(item, (list, tuple)):  # never consume an iterator
                for i, element in enumerate(item):
                    if _is_convertible(element):
                        check_lists(element, message_type, f"{path}[{i}]")
        elif message_type is not None and _is_convertible(item):
            check_lists(item, message_type, path)


def to_proto(value: Any, cls: type[M], what: str) -> M:
    """`value` as a `cls` message. Accepts an instance, an object with to_flyte_idl(), a message of
    the same proto type from another class, or a dict in protobuf's JSON mapping."""
    if _is_convertible(value):
        check_lists(value, cast(Descriptor, cls.DESCRIPTOR), what)
    if not isinstance(value, Message) and callable(getattr(value, "to_flyte_idl", None)):
        value = value.to_flyte_idl()
    if isinstance(value, cls):
        return value
    if isinstance(value, Message) and value.DESCRIPTOR.full_name == cls.DESCRIPTOR.full_name:
        # The same message type from another generated copy: the wire format is the contract.
        return cls.FromString(value.SerializeToString())
    if isinstance(value, Mapping):
        try:
            return json_format.ParseDict(dict(value), cls())
        except json_format.ParseError as e:
            raise ValueError(f"{what}: {e}") from None
    raise TypeError(
        f"{what}: expected a {cls.DESCRIPTOR.full_name}, a dict or an object with to_flyte_idl(); "
        f"got {type(value).__name__}"
    )


def phase(value: PhaseLike, what: str = "phase") -> int:
    if isinstance(value, bool):  # bool is an int; True would silently mean QUEUED
        raise TypeError(f"{what}: expected a phase, got {value!r}")
    if isinstance(value, int):
        # Unknown numbers go through: the server names them in its error, as it does for any
        # non-terminal phase.
        return int(value)
    if isinstance(value, str):
        name = value.strip().upper()
        if name in _PHASE.keys():
            return int(_PHASE.Value(name))
        raise ValueError(f"{what}: unknown phase {value!r}; expected one of {', '.join(_PHASE.keys())}")
    raise TypeError(f"{what}: expected a phase value or name, got {type(value).__name__}")


def http_method(value: HttpMethodLike, what: str) -> api.HttpMethod:
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected an HTTP method, got {value!r}")
    if isinstance(value, int):
        return cast(api.HttpMethod, int(value))  # unknown numbers go through; the server names them
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith(_METHOD_PREFIX):
            name = _METHOD_PREFIX + name
        if name in api.HttpMethod.keys() and name != "HTTP_METHOD_UNSPECIFIED":
            return cast(api.HttpMethod, api.HttpMethod.Value(name))
        raise ValueError(f"{what}: unknown HTTP method {value!r}; expected one of {', '.join(_METHODS)}")
    raise TypeError(f"{what}: expected an HTTP method name such as 'POST', got {type(value).__name__}")


def duration(value: Any, what: str) -> duration_pb2.Duration:
    if not isinstance(value, timedelta):
        raise TypeError(f"{what}: expected a datetime.timedelta, got {type(value).__name__} {_short_repr(value)}")
    # Exact integer arithmetic; seconds and nanos carry the same sign, as Duration requires.
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = -1 if micros < 0 else 1
    seconds, rest = divmod(abs(micros), 1_000_000)
    return duration_pb2.Duration(seconds=sign * seconds, nanos=sign * rest * 1000)


def execution_id(value: ExecutionIdLike) -> identifier_pb2.WorkflowExecutionIdentifier:
    if isinstance(value, str):
        parts = value.split("/")
        if len(parts) != 3 or not all(parts):
            raise ValueError(
                f"execution_id: expected 'project/domain/name', got {value!r} "
                "(pass a dict or proto to set org)"
            )
        project, domain, name = parts
        return identifier_pb2.WorkflowExecutionIdentifier(project=project, domain=domain, name=name)
    return to_proto(value, identifier_pb2.WorkflowExecutionIdentifier, "execution_id")


def _phases(phases: Any, what: str) -> list[int]:
    require_list(phases, what, "phases")
    return [phase(p, f"{what}[{i}]") for i, p in enumerate(phases)]


def notification(value: NotificationLike, what: str) -> common_pb2.Notification:
    if _is_webhook(value) and not isinstance(value, Mapping):
        raise TypeError(f"{what}: got a webhook ({type(value).__name__}); pass webhooks in webhooks=[...]")
    if isinstance(value, Mapping) and "phases" in value:
        # Let dicts name phases the way the rest of this API does ("failed" as well as "FAILED").
        value = {**value, "phases": _phases(value["phases"], f"{what}.phases")}
    return to_proto(value, common_pb2.Notification, what)


def _single(values: Any, noun: str) -> None:
    """Raises TypeError for one item given where a list of them belongs."""
    if isinstance(values, (Mapping, Message, Webhook)) or hasattr(values, "to_flyte_idl"):
        raise TypeError(
            f"{noun}: expected a list of {noun}, got a single one ({type(values).__name__}); pass it in a list"
        )


def notifications(values: Iterable[NotificationLike]) -> list[common_pb2.Notification]:
    _single(values, "notifications")
    require_list(values, "notifications", "notifications", suggest=False)
    return [notification(v, f"notifications[{i}]") for i, v in enumerate(values)]


def _require_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a str, got {type(value).__name__} {_short_repr(value)}")
    return value


def _headers(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what}: expected a dict of header names to values, got {type(value).__name__}")
    for name, header in value.items():
        _require_str(name, f"{what} name {_short_repr(name)}")
        _require_str(header, f"{what}[{name!r}]")
    return dict(value)


def webhook(value: WebhookLike, what: str) -> api.WebhookNotification:
    if isinstance(value, Webhook):
        proto = api.WebhookNotification(
            url=_require_str(value.url, f"{what}.url"),
            method=http_method(value.method, f"{what}.method"),
            headers=_headers(value.headers, f"{what}.headers"),
            body_template=_require_str(value.body_template, f"{what}.body_template"),
            phases=_phases(value.phases, f"{what}.phases"),
            destination=_require_str(value.destination, f"{what}.destination"),
        )
        if value.timeout is not None:
            proto.timeout.CopyFrom(duration(value.timeout, f"{what}.timeout"))
        return proto
    if isinstance(value, Mapping):
        # protobuf's JSON form, with this API's leniency: phase and method names in any case
        # ("failed", "put"), and a timedelta where JSON wants "5s".
        fields = dict(value)
        timeout = fields.pop("timeout", None)
        if "phases" in fields:
            fields["phases"] = _phases(fields["phases"], f"{what}.phases")
        if "method" in fields:
            fields["method"] = http_method(fields["method"], f"{what}.method")
        if "headers" in fields:
            fields["headers"] = _headers(fields["headers"], f"{what}.headers")
        proto = to_proto(fields, api.WebhookNotification, what)
        if isinstance(timeout, timedelta):
            proto.timeout.CopyFrom(duration(timeout, f"{what}.timeout"))
        elif timeout is not None:
            try:
                json_format.ParseDict({"timeout": timeout}, proto)
            except json_format.ParseError as e:
                raise ValueError(f"{what}.timeout: {e} (pass a timedelta or a string such as '5s')") from None
        return proto
    if isinstance(value, str):
        raise TypeError(
            f"{what}: expected a webhook, got str {_short_repr(value)}; "
            f"pass e.g. Webhook(url={_short_repr(value)}, phases=['FAILED'])"
        )
    if isinstance(value, Message):
        return to_proto(value, api.WebhookNotification, what)
    raise TypeError(
        f"{what}: expected a flytenotify.Webhook, a flytenotify.v1 WebhookNotification or a dict; "
        f"got {type(value).__name__}"
    )


def webhooks(values: Iterable[WebhookLike]) -> list[api.WebhookNotification]:
    _single(values, "webhooks")
    if isinstance(values, str):
        raise TypeError(
            f"webhooks: expected a list of webhooks, got str {_short_repr(values)}; "
            f"pass e.g. [Webhook(url={_short_repr(values)}, phases=['FAILED'])]"
        )
    require_list(values, "webhooks", "webhooks", suggest=False)
    return [webhook(v, f"webhooks[{i}]") for i, v in enumerate(values)]


def _is_webhook(value: Any) -> bool:
    if isinstance(value, (Webhook, api.WebhookNotification)):
        return True
    if isinstance(value, Message):
        return value.DESCRIPTOR.full_name == api.WebhookNotification.DESCRIPTOR.full_name
    # A notification has neither field, so a dict with one of them is a webhook.
    return isinstance(value, Mapping) and any(k in value for k in ("url", "destination"))


def send_test_request(target: NotificationLike | WebhookLike) -> api.SendTestRequest:
    """SendTest's oneof, picked by the target's type; fields are named as the server names them
    ("notification.email...", "webhook.url")."""
    if _is_webhook(target):
        return api.SendTestRequest(webhook=webhook(cast(WebhookLike, target), "webhook"))
    if isinstance(target, _STRINGS):
        raise TypeError(
            f"target: expected a notification or a webhook, got {type(target).__name__} {_short_repr(target)}; "
            "for an email pass e.g. {'email': {'recipients_email': [...]}}"
        )
    if isinstance(target, (list, tuple)):
        raise TypeError(f"target: expected one notification or webhook, got a {type(target).__name__}")
    if not (isinstance(target, (Mapping, Message)) or callable(getattr(target, "to_flyte_idl", None))):
        raise TypeError(
            "target: expected a notification (flytekit Email/Slack/PagerDuty, flyteidl.admin.Notification "
            f"or a dict) or a webhook (Webhook, WebhookNotification); got {type(target).__name__}"
        )
    return api.SendTestRequest(notification=notification(cast(NotificationLike, target), "notification"))


def delivery_id(value: DeliveryIdLike, what: str) -> str:
    if isinstance(value, Delivery):
        return value.id
    if isinstance(value, str):
        return value
    raise TypeError(f"{what}: expected a delivery id (str) or a Delivery, got {type(value).__name__}")


def act_request(
    ids: Iterable[DeliveryIdLike] | None, filters: str, limit: int | None, note: str
) -> dict[str, Any]:
    """The fields Redrive and Discard share. Which of ids and filters to give, and the bounds,
    are the server's to judge; here only what cannot be encoded is refused."""
    delivery_ids: list[str] = []
    if ids is not None:
        if isinstance(ids, Delivery):
            raise TypeError("ids: expected a list of delivery ids, got a single Delivery; pass [delivery]")
        require_list(ids, "ids", "delivery ids")
        delivery_ids = [delivery_id(v, f"ids[{i}]") for i, v in enumerate(ids)]
    _require_str(filters, "filters")
    _require_str(note, "note")
    if limit is None:
        limit = 0  # the server's default
    elif isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit: expected an int, got {type(limit).__name__}")
    elif not 1 <= limit <= 0xFFFFFFFF:
        raise ValueError(f"limit: expected a positive number, got {limit} (omit it for the server's default)")
    return {"delivery_ids": delivery_ids, "filters": filters, "limit": limit, "note": note}


def identifier(value: IdentifierLike, resource_type: int, what: str) -> identifier_pb2.Identifier:
    ident = to_proto(value, identifier_pb2.Identifier, what)
    if ident.resource_type == identifier_pb2.UNSPECIFIED:
        # The argument says which kind it is; fill it in rather than make every caller repeat it.
        copy = identifier_pb2.Identifier()
        copy.CopyFrom(ident)
        copy.resource_type = resource_type
        return copy
    return ident


def execution_error(value: ErrorLike) -> execution_pb2.ExecutionError:
    if isinstance(value, str):
        return execution_pb2.ExecutionError(message=value)
    return to_proto(value, execution_pb2.ExecutionError, "error")


def execution_context(
    execution_id_: ExecutionIdLike,
    phase_: PhaseLike,
    *,
    launch_plan: IdentifierLike | None,
    workflow: IdentifierLike | None,
    error: ErrorLike | None,
    occurred_at: datetime | None,
) -> api.ExecutionContext:
    context = api.ExecutionContext(execution_id=execution_id(execution_id_), phase=phase(phase_))
    if launch_plan is not None:
        context.launch_plan.CopyFrom(identifier(launch_plan, identifier_pb2.LAUNCH_PLAN, "launch_plan"))
    if workflow is not None:
        context.workflow.CopyFrom(identifier(workflow, identifier_pb2.WORKFLOW, "workflow"))
    if error is not None:
        context.error.CopyFrom(execution_error(error))
    if occurred_at is not None:
        if occurred_at.tzinfo is None:
            # A naive datetime would be read as UTC by protobuf, silently shifting local times.
            raise ValueError("occurred_at: pass a timezone-aware datetime")
        # Exact integer arithmetic; Timestamp.FromDatetime's handling of tzinfo differs across
        # the protobuf versions this package supports.
        delta = occurred_at - _EPOCH
        context.occurred_at.CopyFrom(
            timestamp_pb2.Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)
        )
    return context


def enqueue_request(
    request_id: str,
    execution: api.ExecutionContext,
    notifications_: Iterable[NotificationLike],
    webhooks_: Iterable[WebhookLike] = (),
    deadline: timedelta | None = None,
) -> api.EnqueueRequest:
    request = api.EnqueueRequest(
        request_id=request_id,
        execution=execution,
        notifications=notifications(notifications_),
        webhooks=webhooks(webhooks_),
    )
    if deadline is not None:
        request.deadline.CopyFrom(duration(deadline, "deadline"))
    return request


def preview_request(
    execution: api.ExecutionContext,
    notifications_: Iterable[NotificationLike],
    webhooks_: Iterable[WebhookLike] = (),
) -> api.PreviewRequest:
    return api.PreviewRequest(
        execution=execution, notifications=notifications(notifications_), webhooks=webhooks(webhooks_)
    )


ExecutionLike = Union[api.ExecutionContext, Mapping[str, Any]]
"""An ExecutionContext, or a dict of execution_context's arguments: {"execution_id": ...,
"phase": ..., and optionally "launch_plan", "workflow", "error", "occurred_at"}."""

_EXECUTION_KEYS = ("launch_plan", "workflow", "error", "occurred_at")


def executions(values: Iterable[ExecutionLike], what: str = "executions") -> list[api.ExecutionContext]:
    out = []
    for i, value in enumerate(values):
        if isinstance(value, api.ExecutionContext):
            out.append(value)
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"{what}[{i}]: expected an ExecutionContext or a dict, got {type(value).__name__}")
        unknown = set(value) - {"execution_id", "phase", *_EXECUTION_KEYS}
        if unknown:
            raise TypeError(f"{what}[{i}]: unknown keys {sorted(unknown)}")
        if "execution_id" not in value or "phase" not in value:
            raise TypeError(f"{what}[{i}]: execution_id and phase are required")
        out.append(
            execution_context(
                value["execution_id"], value["phase"], **{k: value.get(k) for k in _EXECUTION_KEYS}
            )
        )
    return out


def preview_digest_request(
    executions_: Iterable[ExecutionLike], target: NotificationLike | WebhookLike
) -> api.PreviewDigestRequest:
    """PreviewDigest's request: the executions, and one target picked by its type as send_test
    picks it (fields named "notification..." or "webhook...")."""
    one = send_test_request(target)
    request = api.PreviewDigestRequest(executions=executions(executions_))
    if one.HasField("webhook"):
        request.webhook.CopyFrom(one.webhook)
    else:
        request.notification.CopyFrom(one.notification)
    return request


def timestamp(value: Any, what: str) -> timestamp_pb2.Timestamp:
    if not isinstance(value, datetime):
        raise TypeError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise ValueError(f"{what}: expected a timezone-aware datetime, e.g. datetime.now(timezone.utc)")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(timezone.utc).replace(tzinfo=None))
    return stamp


def silence_request(
    matcher: str,
    comment: str,
    ends_at: datetime | None,
    duration: timedelta | None,
    starts_at: datetime | None,
    created_by: str,
    deliver_after: bool,
) -> api.CreateSilenceRequest:
    """CreateSilence's request. Exactly one of ends_at and duration (counted from starts_at, or
    from now); whether the matcher and the times make sense is the server's to judge."""
    _require_str(matcher, "matcher")
    _require_str(comment, "comment")
    _require_str(created_by, "created_by")
    if (ends_at is None) == (duration is None):
        raise TypeError("give exactly one of ends_at and duration")
    if duration is not None:
        if not isinstance(duration, timedelta):
            raise TypeError(f"duration: expected a timedelta, got {type(duration).__name__}")
        # The window is exactly `duration`: a start left out is now, by this clock.
        starts_at = starts_at or datetime.now(timezone.utc)
        ends_at = starts_at + duration
    silence = api.Silence(
        matcher=matcher, comment=comment, created_by=created_by, deliver_after=bool(deliver_after)
    )
    silence.ends_at.CopyFrom(timestamp(ends_at, "ends_at"))
    if starts_at is not None:
        silence.starts_at.CopyFrom(timestamp(starts_at, "starts_at"))
    return api.CreateSilenceRequest(silence=silence)


def silence_id(value: Any, what: str) -> str:
    if isinstance(value, Silence):
        return value.id
    if isinstance(value, str):
        return value
    raise TypeError(f"{what}: expected a silence id (str) or a Silence, got {type(value).__name__}")
