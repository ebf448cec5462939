"""A typed way to write a webhook, instead of the generated WebhookNotification."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from datetime import timedelta
from typing import Union

HttpMethodLike = Union[int, str]
"""A flytenotify.v1 HttpMethod value (api.HTTP_METHOD_PUT) or its name in any case, with or
without the prefix: "put", "PUT", "HTTP_METHOD_PUT"."""

PhaseLike = Union[int, str]


@dataclass(frozen=True)
class Webhook:
    """An HTTP request the server makes when an execution reaches one of `phases`: the fields of
    Flyte 2's WebhookDeliveryTemplate, plus the phases, a server-side destination and a timeout.

    >>> Webhook("https://hooks.example.com/flyte", phases=["FAILED"], headers={"X-Team": "ml"})
    >>> Webhook(destination="ops-alerts", phases=["FAILED", "TIMED_OUT"])

    Converted before any call: a field of the wrong type raises TypeError naming it, e.g.
    `webhooks[0].phases: expected a list of phases, got str 'FAILED'`.
    """

    url: str = ""
    """An http(s) URL whose host the server's flyteNotify.webhooks.allowedHosts admits. Leave empty
    when `destination` names a configured one."""
    _: KW_ONLY
    phases: Sequence[PhaseLike] = ()
    """The phases that send it, as for notifications (names in any case, or flyteidl values).
    send_test ignores them."""
    method: HttpMethodLike = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent after the server's own (Content-Type, Idempotency-Key, signatures), which these cannot
    replace."""
    body_template: str = ""
    """The body, with FlyteAdmin's {{ var }} variables (JSON-escaped when the body is JSON, the
    default). Empty: the server's built-in JSON body."""
    destination: str = ""
    """The name of a destination in the server's flyteNotify.webhooks.destinations, whose URL and
    secrets stay on the server. Set either this or `url`."""
    timeout: timedelta | None = None
    """How long one attempt may take (at most 60 s); None: the server's sendTimeout."""
