"""Exceptions raised by the clients: one class per gRPC code that a caller may want to handle
differently, each carrying the field violations the server sent in its error details."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

# The binary trailer in which gRPC servers put a serialized google.rpc.Status with typed details.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one request field, e.g.
    field="notifications[0].email.recipients_email[0]", description="missing recipient"."""

    field: str
    description: str


class NotifyError(Exception):
    """A call to flyte-notify failed.

    `request_id` is set for Enqueue calls: calling enqueue again with the same request_id is safe
    (the server records each request_id once), so it is what to retry with after an
    UnavailableError or DeadlineExceededError.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: Iterable[FieldViolation] = (),
        request_id: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)
        self.request_id = request_id
        super().__init__(self._describe())

    def _describe(self) -> str:
        lines = [f"{self.code.name}: {self.message}"]
        # The server's message usually lists the violations already; add only the ones it left out.
        lines += [f"  {v.field}: {v.description}" for v in self.field_violations if v.field not in self.message]
        return "\n".join(lines)


class InvalidArgumentError(NotifyError):
    """The request was rejected; `field_violations` names every offending field."""


class ConflictError(NotifyError):
    """The request_id was already used for a request with different content."""


class NotFoundError(NotifyError):
    """The named delivery is not in the server's ledger (get_delivery)."""


class UnavailableError(NotifyError):
    """The server could not be reached or is shutting down; retrying with the same request_id is safe."""


class DeadlineExceededError(NotifyError):
    """The call took longer than the client's timeout; it may still have been recorded."""


class UnauthenticatedError(NotifyError):
    """The server (or a proxy in front of it) did not accept the credentials."""


class PermissionDeniedError(NotifyError):
    """The credentials were accepted but do not allow this call."""


class InternalError(NotifyError):
    """The server failed; its log has the details."""


_BY_CODE: dict[grpc.StatusCode, type[NotifyError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: ConflictError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.INTERNAL: InternalError,
}


def _status_details(trailing_metadata: Any) -> bytes | None:
    # Sync calls give a tuple of (key, value) pairs; grpc.aio gives a Metadata object whose
    # iteration yields the same pairs.
    for key, value in trailing_metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return value
    return None


def _field_violations(details: bytes | None) -> list[FieldViolation]:
    if not details:
        return []
    status = status_pb2.Status.FromString(details)
    violations = []
    for any_detail in status.details:
        if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            any_detail.Unpack(bad_request)
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return violations


def from_rpc_error(error: grpc.RpcError, request_id: str | None = None) -> NotifyError:
    """Translates a failed call (sync or grpc.aio) into the matching NotifyError subclass."""
    code = error.code()
    details = error.details() or ""
    violations = _field_violations(_status_details(error.trailing_metadata()))
    cls = _BY_CODE.get(code, NotifyError)
    return cls(code, details, violations, request_id)
