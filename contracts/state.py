"""The read model: one workflow's current state, a fold of its log. Stored in the `wf_state` KV bucket, where the
API reads it and the orchestrator keeps it as its snapshot."""

from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.commands import FireTimer
from contracts.jobs import ProcessJob


class InfraStatus(StrEnum):
    """What the engine is doing with an instance, the same for every workflow type."""

    QUEUED = "Queued"
    RUNNING = "Running"
    WAITING_FOR_EVENT = "Waiting For Event"
    PROCESSING_STEP = "Processing Step"
    COMPLETED = "Completed"
    ERRORED = "Errored"
    CANCELLED = "Cancelled"


class TimerPurpose(StrEnum):
    """What a durable timer is for: what the engine does when it fires."""

    DEADLINE = "deadline"  # a waiting state's deadline passed: its `on_deadline` trigger fires
    TIMEOUT = "timeout"  # a step's try gave no result in time: the try failed
    RETRY = "retry"  # the pause after a failed try is over: the next try runs


class PendingTimer(BaseModel):
    """A durable timer the workflow owes the broker: at `due_at` the broker delivers `command`."""

    model_config = ConfigDict(frozen=True)

    purpose: TimerPurpose
    due_at: AwareDatetime
    command: FireTimer

    @model_validator(mode="before")
    @classmethod
    def _purpose_of_a_timer_stored_without_one(cls, data: Any) -> Any:
        # A state stored before timers had a typed purpose (the read model's snapshots): its id, "<purpose>-<visit>…",
        # says it.
        if isinstance(data, dict) and "purpose" not in data and isinstance(data.get("command"), dict):
            return data | {"purpose": data["command"]["timer_id"].split("-", 1)[0]}
        return data


# A command delivered again is recognised among its workflow's last this-many commands. Redeliveries come within
# seconds (ack wait 1 s, at most 20 deliveries) and resends within JetStream's 2-minute duplicate window; keeping
# every id would let a long-lived workflow's snapshot outgrow the broker's 1 MB message limit (~30 000 commands).
APPLIED_COMMANDS_KEPT = 1000


class Bookkeeping(BaseModel):
    """The engine's bookkeeping of a workflow: what it needs to decide and fold, not part of the public view."""

    model_config = ConfigDict(frozen=True)

    started: bool = False  # the engine has taken it in hand (no longer Queued)
    visit: int = 0  # states entered so far; names this visit's jobs and timers
    step_try: int = 0  # tries of the current step in this visit
    rounds: dict[str, int] = {}  # times each state was entered
    inputs: list[dict[str, Any]] = []  # commands the current waiting state took without moving (toward a quorum)
    assignees: tuple[str, ...] = ()  # who the current wait was reassigned to: they alone may answer it
    last_step_state: str | None = None  # where a retry from Error goes back to
    applied_commands: tuple[str, ...] = ()  # the last APPLIED_COMMANDS_KEPT commands' ids, for idempotency
    chain_head: str | None = None  # the hash of the last event folded in: what the next one links to (contracts/chain)
    # The outbox: messages this state still owes. Sending them is idempotent (fixed message ids), so after a crash
    # they are simply sent again.
    pending_job: ProcessJob | None = None
    timers: dict[str, PendingTimer] = {}  # by timer id


BOOKKEEPING_FIELDS = frozenset(Bookkeeping.model_fields)


class WorkflowState(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    type: str | None = None  # None until the workflow is created
    type_version: int = 1  # the version of its type it runs on
    business_state: str | None = None
    infra_status: InfraStatus = InfraStatus.QUEUED
    output: float | None = None  # the last step result's output
    attempt: int = 0  # how many times the current (or last) step state was entered: 1 + the rejections so far
    error: str | None = None
    context: dict[str, Any] = {}  # the input and every recorded step result, handed to the next step
    deadline_at: AwareDatetime | None = None  # when the waiting state's deadline passes
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None
    last_sequence: int = 0  # stream sequence of the last event folded in
    archived: bool = False  # hidden from the default list once ended
    stopped: Literal["cancelled", "terminated"] | None = None  # ended by a lifecycle command
    waiting_for: tuple[str, ...] = ()  # who may answer it now: actors' names, or "role:<role>" (its type says)
    search_values: dict[str, float | str] = {}  # its type's search fields, read off its context

    bookkeeping: Bookkeeping = Field(default_factory=Bookkeeping)  # the engine's own, left out of the public view

    @model_validator(mode="before")
    @classmethod
    def _nest_bookkeeping_stored_flat(cls, data: Any) -> Any:
        # A state stored before the bookkeeping was nested kept it beside the public fields: the read model's
        # snapshots stay readable without a rebuild.
        if isinstance(data, dict) and (flat := BOOKKEEPING_FIELDS & data.keys()):
            public = {name: value for name, value in data.items() if name not in flat}
            return public | {"bookkeeping": {name: data[name] for name in flat}}
        return data

    @property
    def exists(self) -> bool:
        return self.type is not None

    @property
    def type_name(self) -> str:
        """Its type, once created (the engine asks only then)."""
        assert self.type is not None, f"workflow {self.id} does not exist"
        return self.type

    @property
    def current_state(self) -> str:
        """Its business state, once started (the engine asks only then)."""
        assert self.business_state is not None, f"workflow {self.id} has not started"
        return self.business_state

    @property
    def has_ended(self) -> bool:
        """It succeeded, failed, or was stopped by a lifecycle command."""
        return self.infra_status in (InfraStatus.COMPLETED, InfraStatus.ERRORED, InfraStatus.CANCELLED)

    def public_view(self) -> dict[str, Any]:
        """The workflow as clients see it: everything but the engine's bookkeeping."""
        return self.model_dump(mode="json", exclude={"bookkeeping"})
