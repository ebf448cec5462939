"""The asyncio client: the same calls as NotificationClient, on grpc.aio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Callable

import grpc
import grpc.aio

from flytenotify import convert, flyte2
from flytenotify.client import DEFAULT_TIMEOUT, TlsLike, auth_metadata, channel_credentials, new_request_id
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


class AsyncNotificationClient:
    """An asyncio client; see NotificationClient for the arguments. Use `async with`, or call
    `await close()`. grpc.aio channels belong to the event loop they were created on."""

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
            self._channel = grpc.aio.insecure_channel(target, options=list(options), interceptors=list(interceptors))
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=list(options), interceptors=list(interceptors)
            )
        self._stub = NotificationServiceStub(self._channel)
        self._metadata = auth_metadata(token)
        self._timeout = timeout

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncNotificationClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Any], request: Any, request_id: str | None = None) -> Any:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as e:  # grpc.aio.AioRpcError is one
            raise from_rpc_error(e, request_id) from e

    async def enqueue(
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
        """See NotificationClient.enqueue."""
        if request_id is None:
            request_id = new_request_id()
        execution = convert.execution_context(
            execution_id, phase, launch_plan=launch_plan, workflow=workflow, error=error, occurred_at=occurred_at
        )
        request = convert.enqueue_request(request_id, execution, notifications, webhooks, deadline)
        return EnqueueResult.from_proto(await self._call(self._stub.Enqueue, request, request_id))

    async def enqueue_run_event(
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
        """See NotificationClient.enqueue_run_event."""
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
        return EnqueueResult.from_proto(await self._call(self._stub.EnqueueRunEvent, request, request_id))

    async def enqueue_action_paused(
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
        """See NotificationClient.enqueue_action_paused."""
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
        return EnqueueResult.from_proto(await self._call(self._stub.EnqueueActionPaused, request, request_id))

    async def list_delivery_configs(self, project: str | None = None, domain: str | None = None) -> list[DeliveryConfig]:
        """See NotificationClient.list_delivery_configs."""
        request = api.ListDeliveryConfigsRequest(**flyte2.scope(project, domain))
        response = await self._call(self._stub.ListDeliveryConfigs, request)
        return [DeliveryConfig.from_proto(c) for c in response.delivery_configs]

    async def list_rules(self, project: str | None = None, domain: str | None = None) -> list[NamedRuleSet]:
        """See NotificationClient.list_rules."""
        request = api.ListRulesRequest(**flyte2.scope(project, domain))
        response = await self._call(self._stub.ListRules, request)
        return [NamedRuleSet.from_proto(r) for r in response.rules]

    async def preview(
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
        """See NotificationClient.preview."""
        execution = convert.execution_context(
            execution_id, phase, launch_plan=launch_plan, workflow=workflow, error=error, occurred_at=occurred_at
        )
        request = convert.preview_request(execution, notifications, webhooks)
        return PreviewResult.from_proto(await self._call(self._stub.Preview, request))

    async def preview_digest(
        self, executions: Iterable[ExecutionLike], target: NotificationLike | WebhookLike
    ) -> tuple[RenderedMessage, ...]:
        """See NotificationClient.preview_digest."""
        request = convert.preview_digest_request(executions, target)
        response = await self._call(self._stub.PreviewDigest, request)
        return tuple(RenderedMessage.from_proto(m) for m in response.messages)

    async def send_test(self, target: NotificationLike | WebhookLike) -> SendTestResult:
        """See NotificationClient.send_test."""
        request = convert.send_test_request(target)
        return SendTestResult.from_proto(await self._call(self._stub.SendTest, request))

    async def redrive(
        self,
        ids: Iterable[DeliveryIdLike] | None = None,
        *,
        filters: str = "",
        limit: int | None = None,
        note: str = "",
    ) -> RedriveResult:
        """See NotificationClient.redrive."""
        request = api.RedriveRequest(**convert.act_request(ids, filters, limit, note))
        return RedriveResult.from_proto(await self._call(self._stub.Redrive, request))

    async def discard(
        self,
        ids: Iterable[DeliveryIdLike] | None = None,
        *,
        filters: str = "",
        limit: int | None = None,
        note: str = "",
    ) -> DiscardResult:
        """See NotificationClient.discard."""
        request = api.DiscardRequest(**convert.act_request(ids, filters, limit, note))
        return DiscardResult.from_proto(await self._call(self._stub.Discard, request))

    async def get_delivery(self, delivery_id: DeliveryIdLike) -> DeliveryDetails:
        """See NotificationClient.get_delivery."""
        request = api.GetDeliveryRequest(delivery_id=convert.delivery_id(delivery_id, "delivery_id"))
        return DeliveryDetails.from_proto(await self._call(self._stub.GetDelivery, request))

    async def create_silence(
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
        """See NotificationClient.create_silence."""
        request = convert.silence_request(matcher, comment, ends_at, duration, starts_at, created_by, deliver_after)
        return Silence.from_proto((await self._call(self._stub.CreateSilence, request)).silence)

    async def list_expectations(self) -> list[Expectation]:
        """See NotificationClient.list_expectations."""
        response = await self._call(self._stub.ListExpectations, api.ListExpectationsRequest())
        return [Expectation.from_proto(e) for e in response.expectations]

    async def list_silences(self, include_expired: bool = False) -> list[Silence]:
        """See NotificationClient.list_silences."""
        request = api.ListSilencesRequest(include_expired=bool(include_expired))
        response = await self._call(self._stub.ListSilences, request)
        return [Silence.from_proto(s) for s in response.silences]

    async def expire_silence(self, silence: str | Silence) -> Silence:
        """See NotificationClient.expire_silence."""
        request = api.ExpireSilenceRequest(silence_id=convert.silence_id(silence, "silence"))
        return Silence.from_proto((await self._call(self._stub.ExpireSilence, request)).silence)

    async def list_pending(self, filters: str = "", page_size: int = 100) -> AsyncIterator[Delivery]:
        """See NotificationClient.list_pending."""
        token = ""
        while True:
            request = api.ListPendingRequest(limit=page_size, token=token, filters=filters)
            response = await self._call(self._stub.ListPending, request)
            for delivery in response.deliveries:
                yield Delivery.from_proto(delivery)
            token = response.token
            if not token:
                return
