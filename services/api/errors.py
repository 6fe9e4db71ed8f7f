"""The API's one error policy: every failure is answered as RFC 9457 problem details (`application/problem+json`:
`{"title", "status", "detail", "code"?}`), mapped here only."""

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
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
from services.api.subscriptions import LinkNotTaken, NoEmailAddress, SubscriptionNotFound

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"  # what ProblemDetailsException answers with

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
    HTTP_400_BAD_REQUEST: "malformed",  # a body that is not JSON (Litestar's parsing)
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


class DefinitionRefused(Exception):
    """A type definition with problems: each one is named."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"the definition has {len(problems)} problem(s): " + "; ".join(problems))
        self.problems = problems


def definition_refused(error: DefinitionRefused) -> ProblemDetailsException:
    return problem(HTTP_422_UNPROCESSABLE_ENTITY, str(error), "invalid_definition", problems=error.problems)


def problem(
    status: int, detail: str, code: str | None = None, headers: dict[str, str] | None = None, **members: Any
) -> ProblemDetailsException:
    """An RFC 9457 problem: the status, its phrase as the title, what went wrong (`detail`) and, as extension members,
    the machine-readable `code` and anything else a client acts on."""
    if code:
        members["code"] = code
    return ProblemDetailsException(
        status_code=status, title=HTTPStatus(status).phrase, detail=detail, headers=headers, extra=members or None
    )


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


def validation_failed(error: ValidationException) -> ProblemDetailsException:
    return problem(HTTP_422_UNPROCESSABLE_ENTITY, _validation_detail(error), "invalid")


def http_error(error: HTTPException) -> ProblemDetailsException:
    headers = dict(error.headers or {})  # WWW-Authenticate of a 401, the rate limit's of a 429
    detail = str(error.detail)
    if error.status_code == HTTP_429_TOO_MANY_REQUESTS:
        # Litestar says when the window resets (RateLimit-Reset); Retry-After is what clients and proxies read.
        headers["Retry-After"] = str(max(1, int(headers.get("RateLimit-Reset", 1))))
        detail = f"too many commands: at most {headers.get('RateLimit-Limit', 'a few')} a second per token"
    return problem(error.status_code, detail, CODE_OF_STATUS.get(error.status_code), headers)


def workflow_removed(error: WorkflowRemoved) -> ProblemDetailsException:
    export = {"object_store": error.bucket, "name": error.name}
    return problem(HTTP_410_GONE, str(error), "removed", export=export)


def command_refused(error: CommandRefused) -> ProblemDetailsException:
    return problem(STATUS_OF_REJECTION.get(error.code, HTTP_409_CONFLICT), str(error), error.code)


STATUS_OF_LINK_REFUSAL = {
    "bad_link": HTTP_400_BAD_REQUEST,
    "link_expired": HTTP_410_GONE,
    "forbidden": HTTP_403_FORBIDDEN,
}


def link_not_taken(error: LinkNotTaken) -> ProblemDetailsException:
    """A decision link that cannot be used: malformed or forged (400), its person no longer may (403), expired (410),
    used or moved on (409)."""
    return problem(STATUS_OF_LINK_REFUSAL.get(error.code, HTTP_409_CONFLICT), str(error), error.code)


def answer(status: int, code: str) -> Callable[[Exception], ProblemDetailsException]:
    """An exception whose message says it all, answered with `status` and `code`."""
    return lambda error: problem(status, str(error), code)


# Exceptions become problems here (Litestar's ProblemDetailsPlugin answers them as application/problem+json).
PROBLEMS: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
    ValidationException: validation_failed,
    HTTPException: http_error,
    WorkflowNotFound: answer(HTTP_404_NOT_FOUND, "unknown_workflow"),
    WorkflowRemoved: workflow_removed,
    TypeNotFound: answer(HTTP_404_NOT_FOUND, "unknown_type"),
    BulkNotFound: answer(HTTP_404_NOT_FOUND, "unknown_bulk"),
    CommandRefused: command_refused,
    CommandTooLarge: answer(HTTP_413_REQUEST_ENTITY_TOO_LARGE, "invalid"),
    BadFilter: answer(HTTP_400_BAD_REQUEST, "bad_filter"),
    SubscriptionNotFound: answer(HTTP_404_NOT_FOUND, "unknown_subscription"),
    NoEmailAddress: answer(HTTP_422_UNPROCESSABLE_ENTITY, "invalid"),
    LinkNotTaken: link_not_taken,
    DefinitionRefused: definition_refused,
}


# The failures that are no fault of the request are logged, with the request, before they are answered.


def nats_unavailable(request: Request, error: Exception) -> Response:
    log.warning("%s %s: NATS unavailable: %r", request.method, request.url.path, error)
    detail = f"the message broker is unavailable: {error}"
    return problem(HTTP_503_SERVICE_UNAVAILABLE, detail, "unavailable").to_response(request)


def index_unavailable(request: Request, error: Exception) -> Response:
    log.warning("%s %s: the index is unavailable: %r", request.method, request.url.path, error)
    detail = "the index is not available (yet): is the indexer running?"
    return problem(HTTP_503_SERVICE_UNAVAILABLE, detail, "unavailable").to_response(request)


def unexpected(request: Request, error: Exception) -> Response:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal error").to_response(request)


EXCEPTION_HANDLERS = {
    NotConnected: nats_unavailable,
    NatsError: nats_unavailable,
    OperationalError: index_unavailable,  # no index file or table yet, the database down or locked
    ProgrammingError: index_unavailable,
    Exception: unexpected,
}
PROBLEM_DETAILS = ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=PROBLEMS))


# What the OpenAPI document says of the errors (every one is a `problem`).


class ExportPlace(BaseModel):
    object_store: str
    name: str


class Problem(BaseModel):
    """What went wrong, as RFC 9457 problem details. `code` is the reason a client acts on."""

    title: str  # the status's phrase
    status: int
    detail: str  # what went wrong, in words a person reads
    code: str | None = None  # e.g. `unknown_workflow`, `bad_filter`, `not_allowed` (a rejection's code)
    export: ExportPlace | None = None  # 410 only: where retention exported the workflow's log
    problems: list[str] | None = None  # 422 of a type definition only: every problem found in it


ERROR_MEANINGS: dict[int, str] = {
    HTTP_400_BAD_REQUEST: "a body that is not JSON (code `malformed`), or a filter the list cannot take: an unknown "
    "field, a bad operator or value (code `bad_filter`)",
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
        status: ResponseSpec(
            data_container=Problem,
            description=ERROR_MEANINGS[status],
            generate_examples=False,
            media_type=PROBLEM_MEDIA_TYPE,
        )
        for status in status_codes
    }
