"""Request and response bodies of the HTTP API."""

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.auth import Role
from contracts.bulk import BulkAction, BulkRefusal
from contracts.commands import Actor, CreateWorkflow, Text
from contracts.ids import WorkflowId
from contracts.state import InfraStatus


class WorkflowView(BaseModel):
    """One workflow as the read model shows it: contracts.state.WorkflowState without the engine's bookkeeping
    (WorkflowState.public_view; a unit test holds the two together). Every field is always present."""

    id: str
    type: str | None  # None until the workflow is created
    type_version: int  # the version of its type it runs on
    business_state: str | None
    infra_status: InfraStatus
    output: float | None  # the last step result's output
    attempt: int  # how many times the current (or last) step state was entered: 1 + the rejections so far
    error: str | None
    context: dict[str, Any]  # the input and every recorded step result
    deadline_at: AwareDatetime | None  # when the waiting state's deadline passes
    created_at: AwareDatetime | None
    updated_at: AwareDatetime | None
    last_sequence: int  # stream sequence of the last event folded in
    archived: bool  # hidden from the default list once ended
    stopped: Literal["cancelled", "terminated"] | None  # ended by a lifecycle command
    waiting_for: list[str]  # who may answer it now: names, "group:<group>" or "role:<role>"
    search_values: dict[str, float | str]  # its type's search fields, read off its context


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateRequest(RequestBody):
    type: Annotated[str, CreateWorkflow.model_fields["workflow_type"]]  # same rule and default as the command
    type_version: Annotated[int, Field(ge=1)] | None = None  # None: the type's latest version
    input: dict[str, Any] = {}
    workflow_id: WorkflowId | None = None
    start: bool = False  # process it at once: the answer shows it once processing has begun


class ApproveRequest(RequestBody):
    approver: Actor | None = None  # who approves is the token's holder; when given, it must be them
    comment: Text = ""


class MigrateRequest(RequestBody):
    to_version: Annotated[int, Field(ge=1)]


class ReassignRequest(RequestBody):
    to: Annotated[list[Actor], Field(min_length=1, max_length=100)]  # who answers the wait from now on
    reason: Text = ""


class RejectRequest(RequestBody):
    approver: Actor | None = None  # who rejects is the token's holder; when given, it must be them
    reason: Text = ""


class StopRequest(RequestBody):
    """Why a workflow is cancelled or terminated."""

    reason: Text = ""


class BulkRequest(RequestBody):
    """What a bulk's commands carry: a `reason` (cancel, reject), a `comment` (approve) or `to_version` (migrate)."""

    reason: Text | None = None
    comment: Text | None = None
    to_version: Annotated[int, Field(ge=1)] | None = None


class BulkView(BaseModel):
    """A bulk action: the workflows it acts on (`total`, fixed when it started), how many of their commands were
    applied (`done`) or `refused` (each with the rejection's code and reason), how many are `remaining`. `finished_at`
    is set once it has acted on every one, or `stopped` says why it ended before (its starter's token no longer
    valid)."""

    id: str
    action: BulkAction
    filter: str
    by: str
    total: int
    done: int
    refused: list[BulkRefusal]
    remaining: int
    started_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    stopped: str | None = None


class CommandResult(BaseModel):
    """What became of a command. `accepted`: applied and visible in `workflow`; `pending`: no outcome within the
    wait (it may still apply; poll the workflow, watch its events for `causation_id` = `command_id`, or retry with
    the same Idempotency-Key). `duplicate` is true when the command repeats an earlier one with the same id: the
    answer is then the original's outcome."""

    command_id: str
    workflow_id: str
    outcome: Literal["accepted", "pending"]
    duplicate: bool
    workflow: WorkflowView | None  # None when pending


class ChainCheck(BaseModel):
    """What walking a workflow's hash chain found (contracts/chain.py)."""

    workflow_id: WorkflowId
    verified: bool  # every link holds, up to the head the read model recorded
    events: int  # walked, up to and with the first broken link
    head: str | None  # the hash of the last event, when every link holds
    broken_at: int | None = None  # the stream sequence of the first event whose link fails
    reason: str | None = None  # what is wrong there


class Health(BaseModel):
    status: Literal["ok", "unavailable"]


class Identity(BaseModel):
    """Who the request's token belongs to. `authenticated` is false when the API runs open (WF_AUTH=off)."""

    name: str
    roles: list[Role]
    groups: list[str]  # a type's wait may take a command from a group
    authenticated: bool


class ClientConfig(BaseModel):
    broadcaster_url: str
    event_envelope: list[str]  # what every event carries that does not say what happened (contracts.events)
