"""Commands: requests to change a workflow. Anyone may send them (HTTP, raw NATS, the processor, timers);
the orchestrator alone decides what they cause, and records every outcome in the log."""

import json
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, field_validator, model_validator

from contracts.envelope import Message
from contracts.ids import CommandId, MessageId, new_id

Actor = Annotated[str, Field(min_length=1, max_length=200)]
Group = Annotated[str, Field(min_length=1, max_length=100)]
Text = Annotated[str, Field(max_length=2000)]


class CommandMessage(Message):
    message_id: CommandId = Field(default_factory=new_id)
    actor: Actor | None = None  # who sent it: the API takes it from the token; the log records it on every event
    groups: Annotated[list[Group], Field(max_length=100)] = []  # the groups the actor is in (a wait may take them)

    @property
    def sent_by(self) -> str | None:
        return self.actor


class CreateWorkflow(CommandMessage):
    kind: Literal["create"] = "create"
    workflow_type: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = "approval"
    type_version: Annotated[int, Field(ge=1)] | None = None  # None: the type's latest version
    input: dict[str, Any] = {}
    start: bool = False  # also process it, in the same decision: nothing can come between the two


class ProcessWorkflow(CommandMessage):
    kind: Literal["process"] = "process"


class AnswerMessage(CommandMessage):
    """A person's answer to a wait: `approver` is who answers (the API sets it from the token)."""

    approver: Actor = "anonymous"

    @property
    def sent_by(self) -> str | None:
        return self.approver


class ApproveWorkflow(AnswerMessage):
    kind: Literal["approve"] = "approve"
    comment: Text = ""


class RejectWorkflow(AnswerMessage):
    kind: Literal["reject"] = "reject"
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


class MigrateWorkflow(CommandMessage):
    """Move a live workflow onto another version of its type: refused unless its state is in that version, of the
    same kind, and its input fits that version."""

    kind: Literal["migrate"] = "migrate"
    to_version: Annotated[int, Field(ge=1)]


class ReassignWorkflow(CommandMessage):
    """Give the wait a workflow is in to other people: until it moves on, only they may answer it."""

    kind: Literal["reassign"] = "reassign"
    to: Annotated[list[Actor], Field(min_length=1, max_length=100)]
    reason: Text = ""


MAX_RESULT_BYTES = 16 * 1024  # a job's result, as JSON: what a step hands on is data, not a payload store


class CompleteJob(CommandMessage):
    """A worker's result for one job: a JSON object, which the step's `result_schema` may constrain. The routes read
    its fields, and the steps after it get it in their context under the step's name."""

    kind: Literal["complete_job"] = "complete_job"
    job_id: MessageId
    result: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _result_sent_as_one_output(cls, data: Any) -> Any:
        # Before results were objects, a result was one number, `output`: such a message (a client of then, one in
        # flight) still reads, as {"output": <it>}.
        if isinstance(data, dict) and "result" not in data and "output" in data:
            return {key: value for key, value in data.items() if key != "output"} | {
                "result": {"output": data["output"]}
            }
        return data

    @field_validator("result")
    @classmethod
    def _small(cls, result: dict[str, Any]) -> dict[str, Any]:
        if (size := len(json.dumps(result, separators=(",", ":")))) > MAX_RESULT_BYTES:
            raise ValueError(f"a result is at most {MAX_RESULT_BYTES} bytes of JSON, not {size}")
        return result


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
    | MigrateWorkflow
    | ReassignWorkflow
    | CompleteJob
    | FailJob
    | FireTimer,
    Field(discriminator="kind"),
]
COMMAND = TypeAdapter(Command)
