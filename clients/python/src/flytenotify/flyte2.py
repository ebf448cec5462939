"""Turns Flyte 2 inputs (flyte.notify notifiers, flyte.models.ActionPhase, run and action
identifiers) into the flytenotify.v1 requests that carry them.

The rules are made by the flyte SDK's own serializer, imported only when a flyte.notify object is
given: the bytes are what a Flyte 2 run carries in RunSpec, and this package needs neither flyte
nor flytekit when it is handed the flyteidl2 protos themselves.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Union

from flyteidl2.common import identifier_pb2, phase_pb2
from flyteidl2.task import run_pb2
from google.protobuf.message import Message

from flytenotify import convert
from flytenotify.v1 import notification_service_pb2 as api

RunIdLike = Union[identifier_pb2.RunIdentifier, tuple[str, str, str], Mapping[str, Any], Any]
"""A flyteidl2 RunIdentifier, a (project, domain, name) tuple, its dict form ({"org": ...,
"project": ..., "domain": ..., "name": ...}), or a flyte.remote.Run (anything whose
`.action.action_id` is an ActionIdentifier)."""

ActionIdLike = Union[identifier_pb2.ActionIdentifier, tuple[str, str, str, str], Mapping[str, Any], Any]
"""A flyteidl2 ActionIdentifier, a (project, domain, run name, action name) tuple, its dict form
({"run": {...}, "name": ...}), or a flyte.remote.Action (anything with an `action_id`)."""

ActionPhaseLike = Union[int, str, enum.Enum]
"""flyte.models.ActionPhase.FAILED, the flyteidl2 ActionPhase value (phase_pb2.ACTION_PHASE_FAILED),
or its name in any case, with or without the prefix: "FAILED", "failed", "ACTION_PHASE_FAILED"."""

Flyte2NotificationsLike = Any
"""What flyte's `notifications=` takes: a flyte.notify notifier (Email, Slack, Teams, Webhook,
NamedDelivery), a tuple or list of them, or a flyte.notify.NamedRule; or already serialized: a
flyteidl2 InlineRuleList, a list of InlineRule, or a flytenotify.v1 Flyte2Rules."""

_PHASE_PREFIX = "ACTION_PHASE_"
_SERIALIZER = "flyte._internal.runtime.notifications_serde.resolve_notification_settings"


def action_phase(value: ActionPhaseLike, what: str = "phase") -> phase_pb2.ActionPhase.ValueType:
    if isinstance(value, bool):  # bool is an int; True would silently mean QUEUED
        raise TypeError(f"{what}: expected an ActionPhase, got {value!r}")
    if isinstance(value, enum.Enum) and not isinstance(value, int):
        # flyte.models.ActionPhase is a str enum whose values are "failed"; its names are the
        # proto's less the prefix.
        value = value.name
    if isinstance(value, int):
        return int(value)  # unknown numbers go through: the server names them
    if isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith(_PHASE_PREFIX):
            name = _PHASE_PREFIX + name
        if name in phase_pb2.ActionPhase.keys() and name != "ACTION_PHASE_UNSPECIFIED":
            return phase_pb2.ActionPhase.Value(name)
        names = [n[len(_PHASE_PREFIX) :] for n in phase_pb2.ActionPhase.keys() if n != "ACTION_PHASE_UNSPECIFIED"]
        raise ValueError(f"{what}: unknown phase {value!r}; expected one of {', '.join(names)}")
    raise TypeError(f"{what}: expected an ActionPhase, its value or its name, got {type(value).__name__}")


def _strings(parts: tuple[Any, ...], what: str, names: str) -> None:
    for i, part in enumerate(parts):
        if not isinstance(part, str):
            raise TypeError(f"{what}[{i}]: expected a str ({names}), got {type(part).__name__}")


def run_id(value: RunIdLike, what: str = "run") -> identifier_pb2.RunIdentifier:
    if isinstance(value, tuple):
        if len(value) != 3:
            raise ValueError(f"{what}: expected (project, domain, name), got a tuple of {len(value)}")
        _strings(value, what, "project, domain, name")
        project, domain, name = value
        return identifier_pb2.RunIdentifier(project=project, domain=domain, name=name)
    if isinstance(value, str):
        raise TypeError(f"{what}: expected a RunIdentifier or a (project, domain, name) tuple, got str {value!r}")
    root_id = getattr(getattr(value, "action", None), "action_id", None)
    if not isinstance(value, (Message, Mapping)) and isinstance(root_id, Message):
        # flyte.remote.Run: its root action's id names the run.
        return convert.to_proto(root_id, identifier_pb2.ActionIdentifier, f"{what}.action.action_id").run
    return convert.to_proto(value, identifier_pb2.RunIdentifier, what)


def action_id(value: ActionIdLike, what: str = "action") -> identifier_pb2.ActionIdentifier:
    if isinstance(value, tuple):
        if len(value) != 4:
            raise ValueError(f"{what}: expected (project, domain, run name, action name), got a tuple of {len(value)}")
        _strings(value, what, "project, domain, run name, action name")
        project, domain, run, name = value
        return identifier_pb2.ActionIdentifier(
            run=identifier_pb2.RunIdentifier(project=project, domain=domain, name=run), name=name
        )
    if isinstance(value, str):
        raise TypeError(f"{what}: expected an ActionIdentifier or a 4-tuple, got str {value!r}")
    if not isinstance(value, (Message, Mapping)) and isinstance(getattr(value, "action_id", None), Message):
        value = value.action_id  # flyte.remote.Action
    return convert.to_proto(value, identifier_pb2.ActionIdentifier, what)


def _serialize_with_flyte(value: Any, what: str) -> api.Flyte2Rules:
    """The flyte SDK's serializer, as flyte.with_runcontext(notifications=...) uses it."""
    try:
        from flyte._internal.runtime.notifications_serde import resolve_notification_settings
        from flyte.notify import NamedRule, Notification
    except ImportError as e:
        raise TypeError(
            f"{what}: got {type(value).__name__}, which is neither a flyteidl2 message nor, without the "
            f"flyte SDK ({e}), a flyte.notify object; install flyte or pass an InlineRuleList"
        ) from None
    if isinstance(value, list):
        value = tuple(value)  # the serializer takes tuples; a list means the same here
    items = value if isinstance(value, tuple) else (value,)
    for i, item in enumerate(items):
        where = f"{what}[{i}]" if isinstance(value, tuple) else what
        if isinstance(item, NamedRule) and isinstance(value, tuple):
            raise TypeError(f"{where}: a NamedRule is a whole rule set; pass it alone, not in a tuple")
        if not isinstance(item, (Notification, NamedRule)):
            raise TypeError(
                f"{where}: expected a flyte.notify notifier (Email, Slack, Teams, Webhook, NamedDelivery) "
                f"or NamedRule, got {type(item).__name__}"
            )
    if not items:
        raise ValueError(f"{what}: expected at least one notifier")
    rule_name, rules = resolve_notification_settings(value)
    if rule_name is not None:
        return api.Flyte2Rules(notification_rule_name=rule_name)
    if rules is None:
        raise TypeError(f"{what}: {_SERIALIZER} gave neither rules nor a rule name")
    return api.Flyte2Rules(notification_rules=convert.to_proto(rules, run_pb2.InlineRuleList, what))


def rules(value: Flyte2NotificationsLike, what: str = "notifications") -> api.Flyte2Rules:
    if isinstance(value, api.Flyte2Rules):
        return value
    if isinstance(value, Message):
        full_name = value.DESCRIPTOR.full_name
        if full_name == run_pb2.InlineRuleList.DESCRIPTOR.full_name:
            return api.Flyte2Rules(notification_rules=convert.to_proto(value, run_pb2.InlineRuleList, what))
        if full_name == run_pb2.InlineRule.DESCRIPTOR.full_name:
            return api.Flyte2Rules(
                notification_rules=run_pb2.InlineRuleList(rules=[convert.to_proto(value, run_pb2.InlineRule, what)])
            )
        raise TypeError(f"{what}: expected an InlineRuleList, an InlineRule or Flyte2Rules, got {full_name}")
    if isinstance(value, (str, bytes)):
        raise TypeError(
            f"{what}: got {type(value).__name__} {value!r}; for a rule set defined on the server pass "
            "flyte.notify.NamedRule(name), or Flyte2Rules(notification_rule_name=name)"
        )
    if isinstance(value, Sequence) and value and all(isinstance(v, Message) for v in value):
        return api.Flyte2Rules(
            notification_rules=run_pb2.InlineRuleList(
                rules=[convert.to_proto(v, run_pb2.InlineRule, f"{what}[{i}]") for i, v in enumerate(value)]
            )
        )
    return _serialize_with_flyte(value, what)


def _optional_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"{what}: expected a str, got {type(value).__name__}")
    return value


def run_event_request(
    request_id: str,
    run: RunIdLike,
    phase: ActionPhaseLike,
    notifications: Flyte2NotificationsLike,
    *,
    error: str | None,
    run_url: str | None,
    duration: timedelta | None,
    occurred_at: datetime | None,
    task_name: str | None,
    deadline: timedelta | None = None,
) -> api.EnqueueRunEventRequest:
    request = api.EnqueueRunEventRequest(
        request_id=request_id,
        run=run_id(run),
        phase=action_phase(phase),
        error=_optional_str(error, "error"),
        rules=rules(notifications),
        run_url=_optional_str(run_url, "run_url"),
        task_name=_optional_str(task_name, "task_name"),
    )
    if duration is not None:
        request.duration.CopyFrom(convert.duration(duration, "duration"))
    if occurred_at is not None:
        request.occurred_at.CopyFrom(convert.timestamp(occurred_at, "occurred_at"))
    if deadline is not None:
        request.deadline.CopyFrom(convert.duration(deadline, "deadline"))
    return request


def action_paused_request(
    request_id: str,
    action: ActionIdLike,
    prompt: str,
    notifications: Flyte2NotificationsLike,
    *,
    description: str | None,
    prompt_type: str | None,
    run_url: str | None,
    occurred_at: datetime | None,
    task_name: str | None,
) -> api.EnqueueActionPausedRequest:
    if not isinstance(prompt, str):
        raise TypeError(f"prompt: expected a str, got {type(prompt).__name__}")
    request = api.EnqueueActionPausedRequest(
        request_id=request_id,
        action=action_id(action),
        prompt=prompt,
        description=_optional_str(description, "description"),
        prompt_type=_optional_str(prompt_type, "prompt_type"),
        rules=rules(notifications),
        run_url=_optional_str(run_url, "run_url"),
        task_name=_optional_str(task_name, "task_name"),
    )
    if occurred_at is not None:
        request.occurred_at.CopyFrom(convert.timestamp(occurred_at, "occurred_at"))
    return request


def scope(project: str | None, domain: str | None) -> dict[str, str]:
    """ListDeliveryConfigs' and ListRules' filter: empty is every project (domain)."""
    return {"project": _optional_str(project, "project"), "domain": _optional_str(domain, "domain")}
