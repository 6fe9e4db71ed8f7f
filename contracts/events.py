"""Events: facts in a workflow's log, written by the orchestrator only. Past tense; never changed once appended.

The vocabulary is the engine's, the same for every workflow type: a type's business meaning lives in its state and
trigger names, so a new type needs no new event."""

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from contracts.envelope import Message
from contracts.ids import MessageId


class WorkflowCreated(Message):
    type: Literal["WorkflowCreated"] = "WorkflowCreated"
    workflow_type: str
    input: dict[str, Any] = {}


class WorkflowStarted(Message):
    """The engine took the new instance in hand and entered its initial state."""

    type: Literal["WorkflowStarted"] = "WorkflowStarted"
    deadline_at: AwareDatetime | None = None  # when the initial state waits with a deadline


class TransitionTaken(Message):
    """The business machine moved: by a client's command (`actor` says who), a step's result, or a deadline."""

    type: Literal["TransitionTaken"] = "TransitionTaken"
    trigger: str
    source: str
    dest: str
    actor: str | None = None
    note: str = ""
    deadline_at: AwareDatetime | None = None  # when the state entered waits with a deadline


class InputRecorded(Message):
    """A waiting state took a command without moving yet (e.g. one approval of a quorum)."""

    type: Literal["InputRecorded"] = "InputRecorded"
    command_kind: str
    actor: str | None = None
    note: str = ""


class StepScheduled(Message):
    """One try of a step was sent to the processors as a job."""

    type: Literal["StepScheduled"] = "StepScheduled"
    step: str
    try_number: int
    job_id: MessageId
    timeout_at: AwareDatetime | None = None


class StepAttemptFailed(Message):
    """One try of a step failed (could not be sent, the job failed, or it timed out). `retry_at` is when the next try
    runs; None when the step gives up."""

    type: Literal["StepAttemptFailed"] = "StepAttemptFailed"
    step: str
    try_number: int
    job_id: MessageId | None = None
    error: str
    error_type: str
    retry_at: AwareDatetime | None = None


class StepCompleted(Message):
    """A step's result, recorded once: it is the context of the steps after it, and never computed again."""

    type: Literal["StepCompleted"] = "StepCompleted"
    step: str
    job_id: MessageId
    result: dict[str, Any]


class StepFailed(Message):
    type: Literal["StepFailed"] = "StepFailed"
    step: str
    error: str


class WorkflowCancelled(Message):
    type: Literal["WorkflowCancelled"] = "WorkflowCancelled"
    reason: str = ""


class WorkflowTerminated(Message):
    type: Literal["WorkflowTerminated"] = "WorkflowTerminated"
    reason: str = ""


class WorkflowRetried(Message):
    """An errored workflow goes back into the state whose step it last ran, with the results recorded before it."""

    type: Literal["WorkflowRetried"] = "WorkflowRetried"
    source: str
    dest: str


class WorkflowArchived(Message):
    type: Literal["WorkflowArchived"] = "WorkflowArchived"


RejectionCode = Literal["not_allowed", "unknown_workflow", "already_exists", "unknown_type", "stale", "invalid"]


class CommandRejected(Message):
    """A command that could not apply. Every command ends in the log: as the events it caused, or as this."""

    type: Literal["CommandRejected"] = "CommandRejected"
    command_id: str
    command_kind: str
    code: RejectionCode
    reason: str


Event = Annotated[
    WorkflowCreated
    | WorkflowStarted
    | TransitionTaken
    | InputRecorded
    | StepScheduled
    | StepAttemptFailed
    | StepCompleted
    | StepFailed
    | WorkflowCancelled
    | WorkflowTerminated
    | WorkflowRetried
    | WorkflowArchived
    | CommandRejected,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)


class RecordedEvent(BaseModel):
    """An event as stored: with its sequence in the events stream."""

    model_config = ConfigDict(frozen=True)

    sequence: int
    event: Event
