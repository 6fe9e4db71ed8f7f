"""Events: facts in a workflow's log, written by the orchestrator only. Past tense; never changed once appended.

The vocabulary is the engine's, the same for every workflow type: a type's business meaning lives in its state and
trigger names, so a new type needs no new event."""

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from contracts.chain import Link
from contracts.envelope import Message
from contracts.ids import MessageId


class LoggedEvent(Message):
    """What every event carries beyond the envelope: its link in its workflow's hash chain (contracts/chain.py), the
    SHA-256 of the event stored before it, set by the orchestrator as it appends."""

    previous_hash: str | None = None
    actor: str | None = None  # who sent the command that caused it (None: a step's result, a timer, the system)


class WorkflowCreated(LoggedEvent):
    type: Literal["WorkflowCreated"] = "WorkflowCreated"
    workflow_type: str
    type_version: int = 1  # the version of its type it runs on (a log written before versions: the first)
    input: dict[str, Any] = {}


class WorkflowStarted(LoggedEvent):
    """The engine took the new instance in hand and entered its initial state."""

    type: Literal["WorkflowStarted"] = "WorkflowStarted"
    deadline_at: AwareDatetime | None = None  # when the initial state waits with a deadline
    remind_at: AwareDatetime | None = None  # when to remind who it waits for (its wait's `remind_before_s`)


DEADLINE_PASSED = "the deadline passed"  # a TransitionTaken's note when a waiting state's deadline fired it


class TransitionTaken(LoggedEvent):
    """The business machine moved: by a client's command (`actor` says who), a step's result, or a deadline."""

    type: Literal["TransitionTaken"] = "TransitionTaken"
    trigger: str
    source: str
    dest: str
    note: str = ""
    deadline_at: AwareDatetime | None = None  # when the state entered waits with a deadline
    remind_at: AwareDatetime | None = None  # when to remind who it waits for (its wait's `remind_before_s`)


class InputRecorded(LoggedEvent):
    """A waiting state took a command without moving yet (e.g. one approval of a quorum)."""

    type: Literal["InputRecorded"] = "InputRecorded"
    command_kind: str
    note: str = ""


class StepScheduled(LoggedEvent):
    """One try of a step was sent to the processors as a job."""

    type: Literal["StepScheduled"] = "StepScheduled"
    step: str
    try_number: int
    job_id: MessageId
    timeout_at: AwareDatetime | None = None


class StepAttemptFailed(LoggedEvent):
    """One try of a step failed (could not be sent, the job failed, or it timed out). `retry_at` is when the next try
    runs; None when the step gives up."""

    type: Literal["StepAttemptFailed"] = "StepAttemptFailed"
    step: str
    try_number: int
    job_id: MessageId | None = None
    error: str
    error_type: str
    retry_at: AwareDatetime | None = None


class StepCompleted(LoggedEvent):
    """A step's result, recorded once: it is the context of the steps after it, and never computed again."""

    type: Literal["StepCompleted"] = "StepCompleted"
    step: str
    job_id: MessageId
    result: dict[str, Any]


class StepFailed(LoggedEvent):
    type: Literal["StepFailed"] = "StepFailed"
    step: str
    error: str


class WorkflowCancelled(LoggedEvent):
    type: Literal["WorkflowCancelled"] = "WorkflowCancelled"
    reason: str = ""


class WorkflowTerminated(LoggedEvent):
    type: Literal["WorkflowTerminated"] = "WorkflowTerminated"
    reason: str = ""


class WorkflowRetried(LoggedEvent):
    """An errored workflow goes back into the state whose step it last ran, with the results recorded before it."""

    type: Literal["WorkflowRetried"] = "WorkflowRetried"
    source: str
    dest: str


class WorkflowArchived(LoggedEvent):
    type: Literal["WorkflowArchived"] = "WorkflowArchived"


class WorkflowMigrated(LoggedEvent):
    """The workflow runs on another version of its type from here on."""

    type: Literal["WorkflowMigrated"] = "WorkflowMigrated"
    from_version: int
    to_version: int


class WorkflowReassigned(LoggedEvent):
    """The wait it is in is answered by these people from here on, until it moves on."""

    type: Literal["WorkflowReassigned"] = "WorkflowReassigned"
    state: str
    to: list[str]
    reason: str = ""


RejectionCode = Literal["not_allowed", "unknown_workflow", "already_exists", "unknown_type", "stale", "invalid"]


class CommandRejected(LoggedEvent):
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
    | WorkflowMigrated
    | WorkflowReassigned
    | CommandRejected,
    Field(discriminator="type"),
]
EVENT = TypeAdapter(Event)

# What every event carries that does not say what happened: the envelope, its link in the chain and its type. Clients
# show an event by its other fields (the CLI; the web page, from GET /config).
ENVELOPE_FIELDS: frozenset[str] = (frozenset(LoggedEvent.model_fields) - {"actor"}) | {"type"}


class RecordedEvent(BaseModel):
    """An event as stored: with its sequence in the events stream."""

    model_config = ConfigDict(frozen=True)

    sequence: int
    event: Event
    digest: str | None = Field(default=None, exclude=True)  # the hash of its stored bytes, when read from the log

    @property
    def link(self) -> Link:
        """Its place in the log's hash chain (read from the log: with its digest)."""
        return Link(self.sequence, self.event.workflow_id, self.event.previous_hash, self.digest or "")
