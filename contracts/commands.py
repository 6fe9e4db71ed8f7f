"""Commands: requests to change a workflow. Anyone may send them (HTTP, raw NATS, the processor, timers);
the orchestrator alone decides what they cause, and records every outcome in the log."""

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from contracts.envelope import Message
from contracts.ids import CommandId, MessageId, new_id


class CommandMessage(Message):
    message_id: CommandId = Field(default_factory=new_id)


Actor = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(max_length=2000)]


class CreateWorkflow(CommandMessage):
    kind: Literal["create"] = "create"
    workflow_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = "approval"
    input: dict[str, Any] = {}
    start: bool = False  # also process it, in the same decision: nothing can come between the two


class ProcessWorkflow(CommandMessage):
    kind: Literal["process"] = "process"


class ApproveWorkflow(CommandMessage):
    kind: Literal["approve"] = "approve"
    approver: Actor = "anonymous"
    comment: Text = ""


class RejectWorkflow(CommandMessage):
    kind: Literal["reject"] = "reject"
    approver: Actor = "anonymous"
    reason: Text = ""


class CancelWorkflow(CommandMessage):
    """Stop a workflow that has not ended; it ends Cancelled."""

    kind: Literal["cancel"] = "cancel"
    reason: Text = ""


class RetryWorkflow(CommandMessage):
    """Run an errored workflow again from the step that failed, with the results recorded before it."""

    kind: Literal["retry"] = "retry"


class ArchiveWorkflow(CommandMessage):
    """Hide an ended workflow from the default list. Its log stays as it is."""

    kind: Literal["archive"] = "archive"


class TerminateWorkflow(CommandMessage):
    """End a workflow that has not ended, at once, as Errored: nothing it was doing is waited for."""

    kind: Literal["terminate"] = "terminate"
    reason: Text = ""


class CompleteJob(CommandMessage):
    """The processor's result for one job."""

    kind: Literal["complete_job"] = "complete_job"
    job_id: MessageId
    output: Annotated[float, Field(ge=0.0, lt=1.0)]


class FailJob(CommandMessage):
    """The processor could not run a job. The step's policy decides whether it is tried again: never when
    `retryable` is false or `error_type` is one the step declares non-retryable."""

    kind: Literal["fail_job"] = "fail_job"
    job_id: MessageId
    error: Text
    error_type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")] = "Error"
    retryable: bool = True


class FireTimer(CommandMessage):
    """Published by the broker when a durable timer is due (a step retry, a step timeout, a wait's deadline)."""

    kind: Literal["fire_timer"] = "fire_timer"
    timer_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


Command = Annotated[
    CreateWorkflow
    | ProcessWorkflow
    | ApproveWorkflow
    | RejectWorkflow
    | CancelWorkflow
    | RetryWorkflow
    | ArchiveWorkflow
    | TerminateWorkflow
    | CompleteJob
    | FailJob
    | FireTimer,
    Field(discriminator="kind"),
]
COMMAND = TypeAdapter(Command)
