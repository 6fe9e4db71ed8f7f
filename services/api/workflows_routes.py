"""The workflows: create one, send it commands, read it, its log and its check; list them, and a person's inbox."""

from dataclasses import replace
from typing import Annotated, Any, TypeVar, get_args

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from contracts.auth import TokenHolder, answering_for
from contracts.commands import (
    ApproveWorkflow,
    ArchiveWorkflow,
    CancelWorkflow,
    CommandMessage,
    CreateWorkflow,
    MigrateWorkflow,
    ProcessWorkflow,
    ReassignWorkflow,
    RejectWorkflow,
    RetryWorkflow,
    TerminateWorkflow,
)
from contracts.events import RecordedEvent
from contracts.ids import CommandId, WorkflowId, new_id
from contracts.state import WorkflowState
from services.api.auth import acting_as, may
from services.api.errors import error_answers
from services.api.pagination import NEXT_PAGE_HEADERS, Page, next_page_headers
from services.api.schemas import (
    ApproveRequest,
    ChainCheck,
    CommandResult,
    CreateRequest,
    MigrateRequest,
    ReassignRequest,
    RejectRequest,
    StopRequest,
    WorkflowView,
)
from services.api.settings import MAX_WAIT_S
from services.api.workflows import Outcome, Workflows

C = TypeVar("C", bound=CommandMessage)

# Litestar leaves a bound of 0 out of the OpenAPI document (it tests the bound for truth): say it again there.
NOT_NEGATIVE = {"minimum": 0}
# Path ids and idempotency keys become NATS subject tokens and message ids: they must have the contracts' shapes.
WorkflowIdPath = Annotated[str, PathParameter(pattern=get_args(WorkflowId)[1].pattern, description="a workflow id")]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        pattern=get_args(CommandId)[1].pattern,
        description="becomes the command's id: a repeat for the same workflow within the dedup window is applied once",
        required=False,
    ),
]
Wait = Annotated[
    float | None,
    QueryParameter(
        ge=0,
        le=MAX_WAIT_S,
        description="seconds to wait for the command's outcome (default WF_COMMAND_TIMEOUT_S); 0 answers 202 at once",
        required=False,
        schema_extra=NOT_NEGATIVE,
    ),
]
Limit = Annotated[int, QueryParameter(ge=1, le=1000, description="at most this many items")]

# What a route may answer besides its success, for the OpenAPI document (services/api/errors.py says what each means).
LOOKUP_ERRORS = error_answers(401, 404, 410, 422, 503)
PENDING = {HTTP_202_ACCEPTED: ResponseSpec(CommandResult, description="no outcome within the wait: `pending`")}
CREATE_ANSWERS = PENDING | error_answers(400, 401, 403, 409, 413, 422, 429, 503)
SEARCH_ERRORS = error_answers(400, 401, 503)
LIST_HEADERS = [
    *NEXT_PAGE_HEADERS,
    ResponseHeader(
        name="X-Index-Sequence",
        documentation_only=True,
        description="the highest log sequence the index had taken in: the list may lag the log",
    ),
]
COMMAND_ANSWERS = PENDING | error_answers(401, 403, 404, 409, 413, 422, 429, 503)
WITH_BODY_ANSWERS = COMMAND_ANSWERS | error_answers(400)  # a body that is not JSON
CREATED_HEADERS = [ResponseHeader(name="Location", documentation_only=True, description="the created workflow's URL")]


def listed(request: Request, page: Page[dict[str, Any]], reflects: int) -> Response[Any]:
    """A page of a list, with where the next starts and the log sequence the index reflects. Its items are the
    index's views, WorkflowView's JSON as the routes declare it."""
    headers = next_page_headers(request, page, "cursor") | {"X-Index-Sequence": str(reflects)}
    return Response(page.items, headers=headers)  # the index's views, as the indexer wrote them


def view(state: WorkflowState) -> WorkflowView:
    return WorkflowView.model_validate(state, from_attributes=True)


def command_response(workflow_id: str, outcome: Outcome, created: bool = False) -> Response[CommandResult]:
    if outcome.state is None:
        result = CommandResult(
            command_id=outcome.command_id,
            workflow_id=workflow_id,
            outcome="pending",
            duplicate=outcome.duplicate,
            workflow=None,
        )
        return Response(result, status_code=HTTP_202_ACCEPTED)
    result = CommandResult(
        command_id=outcome.command_id,
        workflow_id=workflow_id,
        outcome="accepted",
        duplicate=outcome.duplicate,
        workflow=view(outcome.state),
    )
    if created and not outcome.duplicate:
        return Response(result, status_code=HTTP_201_CREATED, headers={"Location": f"/workflows/{workflow_id}"})
    return Response(result, status_code=HTTP_200_OK)


def from_holder(command: C, holder: TokenHolder) -> C:
    """The command as the token's holder sends it: the log records who, and a wait may take them by their groups."""
    return command.model_copy(update={"actor": holder.name, "groups": sorted(holder.groups)})


async def decide(
    workflows: Workflows, command: CommandMessage, wait: float | None, holder: TokenHolder
) -> Response[CommandResult]:
    """Send a command for an existing workflow, as the token's holder, and answer with its outcome."""
    return command_response(command.workflow_id, await workflows.send_to_existing(from_holder(command, holder), wait))


class WorkflowController(Controller):
    path = "/workflows"
    tags = ["workflows"]

    @post(
        operation_id="createWorkflow",
        status_code=HTTP_201_CREATED,
        guards=[may("create")],
        response_headers=CREATED_HEADERS,
        responses=CREATE_ANSWERS,
    )
    async def create(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        data: JSONBody[CreateRequest | None] = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Create a workflow (an `approval` unless `type` says otherwise, on the type's latest version unless
        `type_version` names one); 201 once the read model shows it, with its
        URL in `Location`. With
        `"start": true` it is also processed: the answer shows it once processing has begun (`command_id` is still
        the Create's)."""
        # model_validate: `type`'s default is in its Annotated, which type checkers do not read.
        data = data or CreateRequest.model_validate({})
        if data.type_version is not None:  # named: it must exist (else the orchestrator would refuse it, later)
            await workflows.require_version(data.type, data.type_version)
        workflow_id = data.workflow_id or new_id()
        # With `start`, one command: the orchestrator creates and processes it in one decision.
        command = CreateWorkflow(
            workflow_id=workflow_id,
            workflow_type=data.type,
            type_version=data.type_version,
            input=data.input,
            start=data.start,
        )
        return command_response(
            workflow_id, await workflows.send(from_holder(command, request.user), wait), created=True
        )

    @get(operation_id="listWorkflows", response_headers=LIST_HEADERS, responses=SEARCH_ERRORS)
    async def list_workflows(
        self,
        request: Request,
        state: State,
        workflows: NamedDependency[Workflows],
        # The filters below are declared for the OpenAPI document only: the query is parsed whole, from its raw text,
        # since an operator is part of a name there (`amount>=1000`), and so every filter is refused the same way.
        business_state: FromQuery[str | None] = None,
        infra_status: FromQuery[str | None] = None,
        workflow_type: Annotated[str | None, QueryParameter(name="type", required=False)] = None,
        waiting_for: Annotated[
            str | None, QueryParameter(description="who may answer it now: a name, or role:<role> (repeatable)")
        ] = None,
        created_after: Annotated[str | None, QueryParameter(description="a date or a time (UTC unless zoned)")] = None,
        created_before: FromQuery[str | None] = None,
        updated_after: FromQuery[str | None] = None,
        updated_before: FromQuery[str | None] = None,
        archived: Annotated[str | None, QueryParameter(description="true: list the archived workflows instead")] = None,
        sort: Annotated[str | None, QueryParameter(description="created_at or updated_at; -: newest first")] = None,
        limit: Annotated[str | None, QueryParameter(description="at most this many (default 100)")] = None,
        cursor: Annotated[str | None, QueryParameter(description="X-Next-Cursor of the page before")] = None,
    ) -> Response[list[WorkflowView]]:
        """Workflows from the index, newest first unless `sort` says otherwise, filtered by the generic fields and by
        the search fields the types declare, compared with an operator: `amount>=1000`, `requester=ann`
        (`=`, `!=`, `>=`, `<=`, `>`, `<`; text takes `=` and `!=`). An unknown field or operator answers 400 naming
        it. Archived workflows are left out unless `archived=true`. A page of `limit`; headers point at the next
        one, and `X-Index-Sequence` says up to which log sequence the index had taken in."""
        search = await workflows.search_of(request.url.query, state.settings.max_page)
        page, reflects = await state.index.search(search)
        return listed(request, page, reflects)

    @get("/{workflow_id:str}", operation_id="getWorkflow", responses=LOOKUP_ERRORS)
    async def get_workflow(self, workflows: NamedDependency[Workflows], workflow_id: WorkflowIdPath) -> WorkflowView:
        """One workflow from the read model."""
        return view(await workflows.get(workflow_id))

    @get(
        "/{workflow_id:str}/events",
        operation_id="listWorkflowEvents",
        response_headers=NEXT_PAGE_HEADERS,
        responses=LOOKUP_ERRORS,
    )
    async def list_events(
        self,
        request: Request,
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        after: Annotated[
            int, QueryParameter(ge=0, description="only events with a higher sequence", schema_extra=NOT_NEGATIVE)
        ] = 0,
        limit: Limit = 1000,
    ) -> Response[list[RecordedEvent]]:
        """The workflow's log, oldest first, each event with its stream sequence. A page of `limit`; headers point
        at the next one."""
        page = await workflows.events(workflow_id, after, limit)
        return Response(page.items, headers=next_page_headers(request, page, "after"))

    @get("/{workflow_id:str}/verify", operation_id="verifyWorkflowLog", responses=LOOKUP_ERRORS)
    async def verify_log(self, workflows: NamedDependency[Workflows], workflow_id: WorkflowIdPath) -> ChainCheck:
        """Walk the hash chain of the workflow's log: each event must carry the hash of the one before it, and the log
        must hold the last event the read model folded in. Names the first broken link."""
        found = await workflows.verify(workflow_id)
        broken = found.broken
        return ChainCheck(
            workflow_id=workflow_id,
            verified=found.ok,
            events=found.events,
            head=found.head,
            broken_at=broken.at if broken else None,
            reason=broken.reason if broken else None,
        )

    @get(
        "/{workflow_id:str}/export",
        operation_id="exportWorkflowLog",
        media_type="application/x-ndjson",
        responses=LOOKUP_ERRORS,
    )
    async def export_log(self, workflows: NamedDependency[Workflows], workflow_id: WorkflowIdPath) -> Response[bytes]:
        """The workflow's log byte for byte as stored, one event per line, oldest first: `python3 contracts/chain.py
        <file> --head <head>` verifies it offline."""
        disposition = f'attachment; filename="{workflow_id}.jsonl"'
        return Response(await workflows.export(workflow_id), headers={"Content-Disposition": disposition})

    @post(
        "/{workflow_id:str}/process",
        operation_id="processWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("process")],
        responses=COMMAND_ANSWERS,
    )
    async def process(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Start processing a workflow."""
        command = ProcessWorkflow(workflow_id=workflow_id, message_id=idempotency_key or new_id())
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/approve",
        operation_id="approveWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("approve")],
        responses=WITH_BODY_ANSWERS,
    )
    async def approve(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[ApproveRequest | None] = None,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Approve the workflow's output, as the token's holder (a body `approver` must name them)."""
        data = data or ApproveRequest()
        command = ApproveWorkflow(
            workflow_id=workflow_id,
            message_id=idempotency_key or new_id(),
            approver=acting_as(request.user, data.approver),
            comment=data.comment,
        )
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/reject",
        operation_id="rejectWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("reject")],
        responses=WITH_BODY_ANSWERS,
    )
    async def reject(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[RejectRequest | None] = None,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Reject the workflow's output, as the token's holder (a body `approver` must name them): it is processed
        again."""
        data = data or RejectRequest()
        approver = acting_as(request.user, data.approver)
        command = RejectWorkflow(
            workflow_id=workflow_id, message_id=idempotency_key or new_id(), approver=approver, reason=data.reason
        )
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/cancel",
        operation_id="cancelWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("cancel")],
        responses=WITH_BODY_ANSWERS,
    )
    async def cancel(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[StopRequest | None] = None,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Stop a workflow that has not ended: it ends Cancelled."""
        data = data or StopRequest()
        command = CancelWorkflow(workflow_id=workflow_id, message_id=idempotency_key or new_id(), reason=data.reason)
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/terminate",
        operation_id="terminateWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("terminate")],
        responses=WITH_BODY_ANSWERS,
    )
    async def terminate(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[StopRequest | None] = None,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """End a workflow that has not ended, at once, as Errored: nothing it was doing is waited for."""
        data = data or StopRequest()
        command = TerminateWorkflow(workflow_id=workflow_id, message_id=idempotency_key or new_id(), reason=data.reason)
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/retry",
        operation_id="retryWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("retry")],
        responses=COMMAND_ANSWERS,
    )
    async def retry(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Run an errored workflow again from the step that failed, with the results recorded before it."""
        command = RetryWorkflow(workflow_id=workflow_id, message_id=idempotency_key or new_id())
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/archive",
        operation_id="archiveWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("archive")],
        responses=COMMAND_ANSWERS,
    )
    async def archive(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Hide an ended workflow from the default list (`GET /workflows?archived=true` lists it). Its log stays."""
        command = ArchiveWorkflow(workflow_id=workflow_id, message_id=idempotency_key or new_id())
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/migrate",
        operation_id="migrateWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("migrate")],
        responses=WITH_BODY_ANSWERS,
    )
    async def migrate(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[MigrateRequest],
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Move a live workflow onto another version of its type. 409 with why when its state is not in that version
        (or is of another kind there), or its input does not fit that version."""
        message_id = idempotency_key or new_id()
        command = MigrateWorkflow(workflow_id=workflow_id, message_id=message_id, to_version=data.to_version)
        return await decide(workflows, command, wait, request.user)

    @post(
        "/{workflow_id:str}/reassign",
        operation_id="reassignWorkflow",
        status_code=HTTP_200_OK,
        guards=[may("reassign")],
        responses=WITH_BODY_ANSWERS,
    )
    async def reassign(
        self,
        request: Request[TokenHolder, str | None, State],
        workflows: NamedDependency[Workflows],
        workflow_id: WorkflowIdPath,
        data: JSONBody[ReassignRequest],
        idempotency_key: IdempotencyKey = None,
        wait: Wait = None,
    ) -> Response[CommandResult]:
        """Give the wait a workflow is in to other people: until it moves on, only they may answer it."""
        message_id = idempotency_key or new_id()
        command = ReassignWorkflow(workflow_id=workflow_id, message_id=message_id, to=data.to, reason=data.reason)
        return await decide(workflows, command, wait, request.user)


@get("/me/inbox", operation_id="myInbox", tags=["workflows"], response_headers=LIST_HEADERS, responses=SEARCH_ERRORS)
async def inbox(
    request: Request[TokenHolder, str | None, State],
    state: State,
    workflows: NamedDependency[Workflows],
    limit: Annotated[str | None, QueryParameter(description="at most this many (default 100)")] = None,
    cursor: Annotated[str | None, QueryParameter(description="X-Next-Cursor of the page before")] = None,
) -> Response[list[WorkflowView]]:
    """The workflows waiting for the caller now: as an approver named by the state, a member of a quorum who has not
    voted yet, or through one of their roles; the longest unchanged first (`updated_at`: since when it waits, and
    `deadline_at`, in each). Takes the list's filters too (e.g. `type=expense`)."""
    holder = request.user
    search = await workflows.search_of(request.url.query, state.settings.max_page, "updated_at")
    asked_of = answering_for(holder.name, holder.roles, holder.groups)
    page, reflects = await state.index.search(replace(search, waiting_for=asked_of))
    return listed(request, page, reflects)
