"""The blocking client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Callable, Union

import grpc

from flytenotify import convert, flyte2
from flytenotify.convert import (
    DeliveryIdLike,
    ErrorLike,
    ExecutionIdLike,
    ExecutionLike,
    IdentifierLike,
    NotificationLike,
    PhaseLike,
    WebhookLike,
)
from flytenotify.errors import from_rpc_error
from flytenotify.flyte2 import ActionIdLike, ActionPhaseLike, Flyte2NotificationsLike, RunIdLike
from flytenotify.results import (
    Delivery,
    DeliveryConfig,
    DeliveryDetails,
    DiscardResult,
    EnqueueResult,
    PreviewResult,
    RedriveResult,
    RenderedMessage,
    SendTestResult,
    Expectation,
    NamedRuleSet,
    Silence,
)
from flytenotify.v1 import notification_service_pb2 as api
from flytenotify.v1.notification_service_pb2_grpc import NotificationServiceStub

DEFAULT_TIMEOUT = 10.0
"""Seconds per call. Enqueue returns once the deliveries are durably recorded, not sent."""

TlsLike = Union[bool, grpc.ChannelCredentials, None]
Metadata = tuple[tuple[str, str], ...]


def new_request_id() -> str:
    return str(uuid.uuid4())


def channel_credentials(tls: TlsLike) -> grpc.ChannelCredentials | None:
    """None for plaintext; the system's root certificates for True; else the given credentials."""
    if tls is None or tls is False:
        return None
    if tls is True:
        return grpc.ssl_channel_credentials()
    if isinstance(tls, grpc.ChannelCredentials):
        return tls
    raise TypeError(f"tls: expected a bool or grpc.ChannelCredentials, got {type(tls).__name__}")


def auth_metadata(token: str | None) -> Metadata:
    if token is None:
        return ()
    if not token or token != token.strip() or "\n" in token:
        raise ValueError("token: expected a non-empty token without surrounding whitespace")
    # Plain metadata rather than grpc call credentials: those refuse plaintext channels, and a
    # token is also useful towards a TLS-terminating proxy on localhost.
    return (("authorization", f"Bearer {token}"),)


class NotificationClient:
    """A blocking client for flyte-notify's NotificationService.

    >>> with NotificationClient("127.0.0.1:8091") as client:
    ...     client.enqueue("flytesnacks/development/f3a1b2", "FAILED", [flytekit_email])

    `tls`: None/False for plaintext, True for TLS with the system's roots, or grpc credentials.
    `token` is sent as `authorization: Bearer <token>` on every call. `timeout` is per call, in
    seconds (None: no deadline). `options` and `interceptors` go to grpc as they are.
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: TlsLike = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
        interceptors: Sequence[Any] = (),
    ) -> None:
        credentials = channel_credentials(tls)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=list(options))
        else:
            self._channel = grpc.secure_channel(target, credentials, options=list(options))
        channel = grpc.intercept_channel(self._channel, *interceptors) if interceptors else self._channel
        self._stub = NotificationServiceStub(channel)
        self._metadata = auth_metadata(token)
        self._timeout = timeout

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> NotificationClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., Any], request: Any, request_id: str | None = None) -> Any:
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, request_id) from e

    def enqueue(
        self,
        execution_id: ExecutionIdLike,
        phase: PhaseLike,
        notifications: Iterable[NotificationLike] = (),
        *,
        webhooks: Iterable[WebhookLike] = (),
        launch_plan: IdentifierLike | None = None,
        workflow: IdentifierLike | None = None,
        error: ErrorLike | None = None,
        occurred_at: datetime | None = None,
        request_id: str | None = None,
        deadline: timedelta | None = None,
    ) -> EnqueueResult:
        """Records one delivery per notification, and per webhook, whose phases include `phase`.
        The webhooks' delivery ids follow the notifications' in the result.

        Without `request_id` a fresh one is generated and returned; pass the same one again to
        retry safely (the server answers with the same delivery ids and duplicate=True).
        Raises NotifyError (InvalidArgumentError, ConflictError, ...) carrying the request_id.

        A non-terminal `phase` (QUEUED, RUNNING, ...) with `deadline` arms a stuck-run alert: if
        no terminal phase of this execution is enqueued within `deadline`, every notification and
        webhook gets one "still running after ..." message, whatever its phases.
        """
        if request_id is None:
            request_id = new_request_id()
        execution = convert.execution_context(
            execution_id, phase, launch_plan=launch_plan, workflow=workflow, error=error, occurred_at=occurred_at
        )
        request = convert.enqueue_request(request_id, execution, notifications, webhooks, deadline)
        return EnqueueResult.from_proto(self._call(self._stub.Enqueue, request, request_id))

    def enqueue_run_event(
        self,
        run: RunIdLike,
        phase: ActionPhaseLike,
        notifications: Flyte2NotificationsLike,
        *,
        error: str | None = None,
        run_url: str | None = None,
        duration: timedelta | None = None,
        occurred_at: datetime | None = None,
        task_name: str | None = None,
        request_id: str | None = None,
        deadline: timedelta | None = None,
    ) -> EnqueueResult:
        """Flyte 2: a run reached `phase`; records one delivery per rule whose on_phases contain it.

        `notifications` is what flyte's `notifications=` takes: a flyte.notify notifier (Email,
        Slack, Teams, Webhook, NamedDelivery), a tuple of them, or NamedRule("name") for a rule set
        defined on the server; they are serialized by the flyte SDK itself. A flyteidl2
        InlineRuleList needs no flyte installed. `run` is a flyteidl2 RunIdentifier, a (project,
        domain, name) tuple or a flyte.remote.Run; `phase` a flyte.models.ActionPhase, the proto
        value or its name. `error` fills {{.Error}}, `run_url` {{.Run.URL}}, `duration`
        {{.Run.Duration}}, `task_name` {{.Task.Name}}.

        `request_id` and `deadline` (with a phase that is not terminal: a stuck-run alert to every
        rule unless the run ends in time) work as for enqueue. Raises InvalidArgumentError naming
        the field, e.g. an unknown NamedDelivery or NamedRule name.
        """
        if request_id is None:
            request_id = new_request_id()
        request = flyte2.run_event_request(
            request_id,
            run,
            phase,
            notifications,
            error=error,
            run_url=run_url,
            duration=duration,
            occurred_at=occurred_at,
            task_name=task_name,
            deadline=deadline,
        )
        return EnqueueResult.from_proto(self._call(self._stub.EnqueueRunEvent, request, request_id))

    def enqueue_action_paused(
        self,
        action: ActionIdLike,
        prompt: str,
        notifications: Flyte2NotificationsLike,
        *,
        description: str | None = None,
        prompt_type: str | None = None,
        run_url: str | None = None,
        occurred_at: datetime | None = None,
        task_name: str | None = None,
        request_id: str | None = None,
    ) -> EnqueueResult:
        """Flyte 2: `action` waits for a person. Rules whose on_phases contain PAUSED deliver
        `prompt` ({{.Prompt}}) with a link to the run. `action` is a flyteidl2 ActionIdentifier, a
        (project, domain, run name, action name) tuple or a flyte.remote.Action; `notifications`
        as for enqueue_run_event."""
        if request_id is None:
            request_id = new_request_id()
        request = flyte2.action_paused_request(
            request_id,
            action,
            prompt,
            notifications,
            description=description,
            prompt_type=prompt_type,
            run_url=run_url,
            occurred_at=occurred_at,
            task_name=task_name,
        )
        return EnqueueResult.from_proto(self._call(self._stub.EnqueueActionPaused, request, request_id))

    def list_delivery_configs(self, project: str | None = None, domain: str | None = None) -> list[DeliveryConfig]:
        """The named delivery configs (what flyte.notify.NamedDelivery can name) that `project` and
        `domain` can use; all of them without either. Secrets are never shown."""
        request = api.ListDeliveryConfigsRequest(**flyte2.scope(project, domain))
        response = self._call(self._stub.ListDeliveryConfigs, request)
        return [DeliveryConfig.from_proto(c) for c in response.delivery_configs]

    def list_rules(self, project: str | None = None, domain: str | None = None) -> list[NamedRuleSet]:
        """The named rule sets (what flyte.notify.NamedRule can name) that `project` and `domain`
        can use; all of them without either."""
        request = api.ListRulesRequest(**flyte2.scope(project, domain))
        response = self._call(self._stub.ListRules, request)
        return [NamedRuleSet.from_proto(r) for r in response.rules]

    def preview(
        self,
        execution_id: ExecutionIdLike,
        phase: PhaseLike,
        notifications: Iterable[NotificationLike] = (),
        *,
        webhooks: Iterable[WebhookLike] = (),
        launch_plan: IdentifierLike | None = None,
        workflow: IdentifierLike | None = None,
        error: ErrorLike | None = None,
        occurred_at: datetime | None = None,
    ) -> PreviewResult:
        """Renders what enqueue would send for the same input; sends and records nothing."""
        execution = convert.execution_context(
            execution_id, phase, launch_plan=launch_plan, workflow=workflow, error=error, occurred_at=occurred_at
        )
        request = convert.preview_request(execution, notifications, webhooks)
        return PreviewResult.from_proto(self._call(self._stub.Preview, request))

    def preview_digest(
        self, executions: Iterable[ExecutionLike], target: NotificationLike | WebhookLike
    ) -> tuple[RenderedMessage, ...]:
        """Renders the digest(s) `target` would send for `executions` when grouped (each of a
        notification's routes, and its recipients without one, is a digest of its own; its phases
        are not matched), by the function the server sends digests with. Sends and records
        nothing. `target` is a notification or a webhook to a configured destination, as for
        send_test; each execution an ExecutionContext or a dict such as {"execution_id":
        "flytesnacks/development/a1", "phase": "FAILED", "error": "..."}."""
        request = convert.preview_digest_request(executions, target)
        response = self._call(self._stub.PreviewDigest, request)
        return tuple(RenderedMessage.from_proto(m) for m in response.messages)

    def send_test(self, target: NotificationLike | WebhookLike) -> SendTestResult:
        """Sends one message marked as a test through `target` (its phases are ignored), by the
        path a real failure takes: checks SMTP credentials, a Slack or PagerDuty route or a
        webhook before the first real failure needs them.

        `target` is a notification (flytekit Email/Slack/PagerDuty, a flyteidl.admin.Notification
        or its dict form) or a webhook (Webhook, WebhookNotification, or a dict with "url" or
        "destination"). Email recipients get a test email; the result's delivery_id is recorded
        like any delivery, so get_delivery shows whether it went out.
        """
        request = convert.send_test_request(target)
        return SendTestResult.from_proto(self._call(self._stub.SendTest, request))

    def redrive(
        self,
        ids: Iterable[DeliveryIdLike] | None = None,
        *,
        filters: str = "",
        limit: int | None = None,
        note: str = "",
    ) -> RedriveResult:
        """Puts dead deliveries back to pending, due now, with a fresh attempt budget.

        Select them by `ids` (at most 1000; delivery ids or Delivery objects) or by `filters`
        (list_pending's syntax; only dead ones match, oldest first, at most `limit`: the server's
        default is 1000, its maximum 10000), not both. `note` is kept in each one's history, e.g.
        "SMTP relay fixed, INC-1234". Named deliveries that are not dead are left alone and listed
        in `skipped`; with filters, `more` says to call again for the rest.
        """
        request = api.RedriveRequest(**convert.act_request(ids, filters, limit, note))
        return RedriveResult.from_proto(self._call(self._stub.Redrive, request))

    def discard(
        self,
        ids: Iterable[DeliveryIdLike] | None = None,
        *,
        filters: str = "",
        limit: int | None = None,
        note: str = "",
    ) -> DiscardResult:
        """Takes dead deliveries out of list_pending for good; get_delivery still shows them.
        Selects as redrive does."""
        request = api.DiscardRequest(**convert.act_request(ids, filters, limit, note))
        return DiscardResult.from_proto(self._call(self._stub.Discard, request))

    def get_delivery(self, delivery_id: DeliveryIdLike) -> DeliveryDetails:
        """One delivery in any state (delivered and discarded ones too), with its history.
        Raises NotFoundError for an id the server has never recorded."""
        request = api.GetDeliveryRequest(delivery_id=convert.delivery_id(delivery_id, "delivery_id"))
        return DeliveryDetails.from_proto(self._call(self._stub.GetDelivery, request))

    def create_silence(
        self,
        matcher: str,
        *,
        comment: str,
        ends_at: datetime | None = None,
        duration: timedelta | None = None,
        starts_at: datetime | None = None,
        created_by: str = "",
        deliver_after: bool = False,
    ) -> Silence:
        """Holds back the deliveries `matcher` selects (list_pending's filter syntax without state,
        e.g. "eq(project,flytesnacks)+eq(domain,production)") from `starts_at` (default now) until
        `ends_at`, or for `duration`: a matching delivery due meanwhile is recorded SILENCED, not
        sent. With deliver_after, what it held is sent when it ends; otherwise it is dropped.
        Raises InvalidArgumentError naming the field for a bad matcher or window, a missing or too
        long comment, or too many silences."""
        request = convert.silence_request(matcher, comment, ends_at, duration, starts_at, created_by, deliver_after)
        return Silence.from_proto((self._call(self._stub.CreateSilence, request)).silence)

    def list_expectations(self) -> list[Expectation]:
        """The configured expectations (launch plans that must succeed every so often), in config
        order, each with its last success, next due time and state."""
        response = self._call(self._stub.ListExpectations, api.ListExpectationsRequest())
        return [Expectation.from_proto(e) for e in response.expectations]

    def list_silences(self, include_expired: bool = False) -> list[Silence]:
        """Silences that have not ended, oldest first; with include_expired also those that ended
        within the retention period (7 days)."""
        request = api.ListSilencesRequest(include_expired=bool(include_expired))
        response = self._call(self._stub.ListSilences, request)
        return [Silence.from_proto(s) for s in response.silences]

    def expire_silence(self, silence: str | Silence) -> Silence:
        """Ends a silence now (a deliver_after one sends what it held). Raises NotFoundError for an
        id the server does not keep."""
        request = api.ExpireSilenceRequest(silence_id=convert.silence_id(silence, "silence"))
        return Silence.from_proto((self._call(self._stub.ExpireSilence, request)).silence)

    def list_pending(self, filters: str = "", page_size: int = 100) -> Iterator[Delivery]:
        """Every undelivered delivery (pending, retrying or dead), oldest first, fetching pages of
        `page_size` lazily. `filters` uses FlyteAdmin's syntax, e.g. "eq(state,retrying)".

        Pages follow the server's token, which marks a position rather than an offset: deliveries
        accepted during the walk show up at its end, and none is returned twice.
        """
        token = ""
        while True:
            request = api.ListPendingRequest(limit=page_size, token=token, filters=filters)
            response = self._call(self._stub.ListPending, request)
            for delivery in response.deliveries:
                yield Delivery.from_proto(delivery)
            token = response.token
            if not token:
                return
