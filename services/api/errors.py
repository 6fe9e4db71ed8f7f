"""The API's one error policy: every failure becomes JSON `{"status_code", "detail", "code"?}`, mapped here only."""

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_410_GONE,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from nats.errors import Error as NatsError
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError, ProgrammingError

from contracts.events import RejectionCode
from runtime.nats_link import NotConnected
from services.api.search import BadFilter

log = logging.getLogger(__name__)

STATUS_OF_REJECTION: dict[str, int] = {
    "not_allowed": HTTP_409_CONFLICT,
    "already_exists": HTTP_409_CONFLICT,
    "stale": HTTP_409_CONFLICT,
    "unknown_workflow": HTTP_404_NOT_FOUND,
    "unknown_type": HTTP_422_UNPROCESSABLE_ENTITY,
    "invalid": HTTP_422_UNPROCESSABLE_ENTITY,
}

# The code of the HTTP errors Litestar raises itself (refusals of the request as such, not of a command).
CODE_OF_STATUS: dict[int, str] = {
    HTTP_401_UNAUTHORIZED: "unauthorized",
    HTTP_403_FORBIDDEN: "forbidden",
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: "too_large",
    HTTP_429_TOO_MANY_REQUESTS: "rate_limited",
}


class WorkflowNotFound(Exception):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id} not found")


class WorkflowRemoved(Exception):
    """Retention removed the workflow; its log is kept as an export."""

    def __init__(self, workflow_id: str, bucket: str, name: str) -> None:
        super().__init__(
            f"workflow {workflow_id} was removed by retention: its log is exported to the object store "
            f"{bucket} as {name}"
        )
        self.bucket, self.name = bucket, name


class TypeNotFound(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"workflow type {name} not found")


class BulkNotFound(Exception):
    def __init__(self, bulk_id: str) -> None:
        super().__init__(f"bulk {bulk_id} not found")


class CommandRefused(Exception):
    """The orchestrator recorded the command as rejected (a `CommandRejected` event)."""

    def __init__(self, code: RejectionCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class CommandTooLarge(Exception):
    pass


def _error(
    status_code: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if code:
        body["code"] = code
    return Response(body, status_code=status_code, headers=headers)


def _validation_detail(error: ValidationException) -> str:
    """Litestar lists one entry per bad field; a missing value appears as the bare quoted key, e.g. "'data'"."""
    problems = []
    for item in error.extra if isinstance(error.extra, list) else []:
        key, message = item.get("key"), item.get("message", "")
        source = getattr(item.get("source"), "value", item.get("source")) or "body"  # pydantic body errors name none
        message = "required" if message == repr(key) else message
        where = " ".join(str(part) for part in (source, key) if part)
        problems.append(f"{where}: {message}" if where else message)
    # An invalid path parameter makes Litestar also report an optional body as missing: keep the real problem.
    real = [problem for problem in problems if not problem.endswith(": required")] or problems
    return "; ".join(real) or str(error.detail)


def validation_failed(_: Request, error: ValidationException) -> Response[dict[str, Any]]:
    return _error(HTTP_422_UNPROCESSABLE_ENTITY, _validation_detail(error), "invalid")


def http_error(_: Request, error: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(error.headers or {})  # WWW-Authenticate of a 401, the rate limit's of a 429
    detail = str(error.detail)
    if error.status_code == HTTP_429_TOO_MANY_REQUESTS:
        # Litestar says when the window resets (RateLimit-Reset); Retry-After is what clients and proxies read.
        headers["Retry-After"] = str(max(1, int(headers.get("RateLimit-Reset", 1))))
        detail = f"too many commands: at most {headers.get('RateLimit-Limit', 'a few')} a second per token"
    return _error(error.status_code, detail, CODE_OF_STATUS.get(error.status_code), headers)


def workflow_not_found(_: Request, error: WorkflowNotFound) -> Response[dict[str, Any]]:
    return _error(HTTP_404_NOT_FOUND, str(error), "unknown_workflow")


def workflow_removed(_: Request, error: WorkflowRemoved) -> Response[dict[str, Any]]:
    body = {
        "status_code": HTTP_410_GONE,
        "detail": str(error),
        "code": "removed",
        "export": {"object_store": error.bucket, "name": error.name},
    }
    return Response(body, status_code=HTTP_410_GONE)


def type_not_found(_: Request, error: TypeNotFound) -> Response[dict[str, Any]]:
    return _error(HTTP_404_NOT_FOUND, str(error), "unknown_type")


def bulk_not_found(_: Request, error: BulkNotFound) -> Response[dict[str, Any]]:
    return _error(HTTP_404_NOT_FOUND, str(error), "unknown_bulk")


def command_refused(_: Request, error: CommandRefused) -> Response[dict[str, Any]]:
    return _error(STATUS_OF_REJECTION.get(error.code, HTTP_409_CONFLICT), str(error), error.code)


def command_too_large(_: Request, error: CommandTooLarge) -> Response[dict[str, Any]]:
    return _error(HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(error), "invalid")


def nats_unavailable(request: Request, error: Exception) -> Response[dict[str, Any]]:
    log.warning("%s %s: NATS unavailable: %r", request.method, request.url.path, error)
    return _error(HTTP_503_SERVICE_UNAVAILABLE, f"the message broker is unavailable: {error}", "unavailable")


def bad_filter(_: Request, error: BadFilter) -> Response[dict[str, Any]]:
    return _error(HTTP_400_BAD_REQUEST, str(error), "bad_filter")


def index_unavailable(request: Request, error: Exception) -> Response[dict[str, Any]]:
    log.warning("%s %s: the index is unavailable: %r", request.method, request.url.path, error)
    return _error(
        HTTP_503_SERVICE_UNAVAILABLE, "the index is not available (yet): is the indexer running?", "unavailable"
    )


def unexpected(request: Request, error: Exception) -> Response[dict[str, Any]]:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


EXCEPTION_HANDLERS = {
    ValidationException: validation_failed,
    HTTPException: http_error,
    WorkflowNotFound: workflow_not_found,
    WorkflowRemoved: workflow_removed,
    TypeNotFound: type_not_found,
    BulkNotFound: bulk_not_found,
    CommandRefused: command_refused,
    CommandTooLarge: command_too_large,
    NotConnected: nats_unavailable,
    NatsError: nats_unavailable,
    BadFilter: bad_filter,
    OperationalError: index_unavailable,  # no index file or table yet, the database down or locked
    ProgrammingError: index_unavailable,
    Exception: unexpected,
}


# What the OpenAPI document says of the errors (every one has the body _error writes).


class ErrorBody(BaseModel):
    status_code: int
    detail: str
    code: str | None = None


ERROR_MEANINGS: dict[int, str] = {
    HTTP_400_BAD_REQUEST: "a filter the list cannot take: an unknown field, a bad operator or value (code `bad_filter`)",
    HTTP_401_UNAUTHORIZED: "no token, or one that is not valid (code `unauthorized`)",
    HTTP_403_FORBIDDEN: "the token's holder has no role the command takes (code `forbidden`)",
    HTTP_404_NOT_FOUND: "no such workflow (code `unknown_workflow`), type (code `unknown_type`) or bulk (code "
    "`unknown_bulk`)",
    HTTP_410_GONE: "the workflow was removed by retention; `export` names the object its log was exported to",
    HTTP_409_CONFLICT: "the workflow's state refused the command, or it exists already (the rejection's code)",
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: "the body is larger than a command may be",
    HTTP_422_UNPROCESSABLE_ENTITY: "the request is not valid, or the orchestrator found the command not valid",
    HTTP_429_TOO_MANY_REQUESTS: "more commands a second than the token may send: retry after `Retry-After`",
    HTTP_503_SERVICE_UNAVAILABLE: "the message broker or the index is unavailable (code `unavailable`)",
}


def error_answers(*status_codes: int) -> dict[int, ResponseSpec]:
    """The errors a route may answer, for its OpenAPI document."""
    return {
        status: ResponseSpec(data_container=ErrorBody, description=ERROR_MEANINGS[status], generate_examples=False)
        for status in status_codes
    }
