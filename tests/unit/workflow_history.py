"""Given commands / when a command / then events, for the workflow engine.

`given(...)` decides each command against the fold of the log so far and appends what it causes, so every test
history is one the engine itself could have written. Time and the send step's luck are fixed by the test.

Ids the engine derives, spelled out here once: a state's visit counts the states entered so far (the initial state is
visit 1), a job is `<workflow>-<visit>-<try>`, a timer `retry-<visit>-<try>`, `timeout-<visit>-<try>` or
`deadline-<visit>`."""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any, TypeVar

from contracts.commands import (
    ApproveWorkflow,
    ArchiveWorkflow,
    CancelWorkflow,
    Command,
    CompleteJob,
    CreateWorkflow,
    FailJob,
    FireTimer,
    ProcessWorkflow,
    RejectWorkflow,
    RetryWorkflow,
    TerminateWorkflow,
)
from contracts.events import CommandRejected, Event, RecordedEvent
from contracts.jobs import ProcessJob
from contracts.state import WorkflowState
from services.orchestrator.domain.engine import Context, Decision, Engine
from services.orchestrator.domain.types import SHIPPED

WORKFLOW_ID = "wf-1"
NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
INPUT = {"amount": 120, "currency": "EUR", "manager": "manager-mo"}  # the expense's manager
FIRST_STEP_VISIT = 2  # both shipped types wait in their initial state (visit 1), so their first step runs in visit 2

SendFails = Callable[[str, int, int], bool]


def seconds_later(delay: float) -> datetime:
    return NOW + timedelta(seconds=delay)


def sends_succeed(workflow_id: str, visit: int, try_number: int) -> bool:
    return False


def sends_always_fail(workflow_id: str, visit: int, try_number: int) -> bool:
    return True


def send_fails_on(*tries: tuple[int, int]) -> SendFails:
    """A send step that fails on exactly these (visit, try) pairs."""
    return lambda workflow_id, visit, try_number: (visit, try_number) in tries


def job_id(visit: int = FIRST_STEP_VISIT, try_number: int = 1) -> str:
    return f"{WORKFLOW_ID}-{visit}-{try_number}"


# Commands, with the fields a test does not care about filled in.


def create(**fields: Any) -> CreateWorkflow:
    return CreateWorkflow.model_validate({"workflow_id": WORKFLOW_ID, "input": INPUT} | fields)


def create_expense(**fields: Any) -> CreateWorkflow:
    return create(**{"workflow_type": "expense"} | fields)


def process(**fields: Any) -> ProcessWorkflow:
    return ProcessWorkflow(workflow_id=WORKFLOW_ID, **fields)


PERSON = {"approver": "ann", "groups": ["managers"]}  # who approves unless a test says: ann, one of the managers


def approve(**fields: Any) -> ApproveWorkflow:
    return ApproveWorkflow.model_validate({"workflow_id": WORKFLOW_ID} | PERSON | {"comment": "looks right"} | fields)


def reject(**fields: Any) -> RejectWorkflow:
    return RejectWorkflow.model_validate(
        {"workflow_id": WORKFLOW_ID} | PERSON | {"approver": "bob", "reason": "too low"} | fields
    )


def cancel(**fields: Any) -> CancelWorkflow:
    return CancelWorkflow.model_validate({"workflow_id": WORKFLOW_ID, "reason": "no longer needed"} | fields)


def terminate(**fields: Any) -> TerminateWorkflow:
    return TerminateWorkflow.model_validate({"workflow_id": WORKFLOW_ID, "reason": "stuck"} | fields)


def retry(**fields: Any) -> RetryWorkflow:
    return RetryWorkflow(workflow_id=WORKFLOW_ID, **fields)


def archive(**fields: Any) -> ArchiveWorkflow:
    return ArchiveWorkflow(workflow_id=WORKFLOW_ID, **fields)


def complete(output: float, visit: int = FIRST_STEP_VISIT, try_number: int = 1, **fields: Any) -> CompleteJob:
    return CompleteJob.model_validate(
        {"workflow_id": WORKFLOW_ID, "job_id": job_id(visit, try_number), "result": {"output": output}} | fields
    )


def fail_job(
    error: str = "model crashed", visit: int = FIRST_STEP_VISIT, try_number: int = 1, **fields: Any
) -> FailJob:
    return FailJob.model_validate(
        {"workflow_id": WORKFLOW_ID, "job_id": job_id(visit, try_number), "error": error} | fields
    )


def fire(timer_id: str, **fields: Any) -> FireTimer:
    """The timer command as the broker delivers it (the message id the engine gives it)."""
    owed = {"workflow_id": WORKFLOW_ID, "message_id": f"{WORKFLOW_ID}-{timer_id}", "timer_id": timer_id}
    return FireTimer.model_validate(owed | fields)


COMMAND_OF_KIND: dict[str, Callable[..., Command]] = {
    "process": process,
    "approve": approve,
    "reject": reject,
    "cancel": cancel,
    "terminate": terminate,
    "retry": retry,
    "archive": archive,
}


@dataclass
class History:
    """One workflow's log, in memory."""

    send_fails: SendFails = sends_succeed
    now: datetime = NOW
    recorded: list[RecordedEvent] = field(default_factory=list)
    engine: Engine = SHIPPED  # the shipped types; a test may run its own

    @property
    def state(self) -> WorkflowState:
        return self.engine.fold(WorkflowState(id=WORKFLOW_ID), self.recorded)

    @property
    def events(self) -> list[Event]:
        return [recorded.event for recorded in self.recorded]

    def states(self) -> list[WorkflowState]:
        """The state after each recorded event, in order."""
        return list(accumulate(self.recorded, self.engine.evolve, initial=WorkflowState(id=WORKFLOW_ID)))[1:]

    def decide(self, command: Command) -> Decision:
        """The decision on `command` now; nothing is recorded."""
        return self.engine.decide(self.state, command, Context(now=self.now, send_fails=self.send_fails))

    def when(self, command: Command) -> list[Event]:
        """What `command` causes now; nothing is recorded."""
        return self.decide(command).events

    def record(self, *commands: Command) -> list[Event]:
        """Decide each command in turn and append what it causes; returns the events of the last one."""
        events: list[Event] = []
        for command in commands:
            events = self.when(command)
            self.recorded += numbered(*events, first=len(self.recorded) + 1)
        return events


def given(
    *commands: Command, send_fails: SendFails = sends_succeed, now: datetime = NOW, engine: Engine = SHIPPED
) -> History:
    history = History(send_fails=send_fails, now=now, engine=engine)
    history.record(*commands)
    return history


def numbered(*events: Event, first: int = 1) -> list[RecordedEvent]:
    return [RecordedEvent(sequence=sequence, event=event) for sequence, event in enumerate(events, start=first)]


E = TypeVar("E", bound=Event)


def written(event_type: type[E], **fields: Any) -> E:
    """An event written by hand, for logs the engine would never write."""
    return event_type(workflow_id=WORKFLOW_ID, occurred_at=NOW, **fields)


# What every event carries beside its facts: the envelope, and its link in the log's hash chain.
ENVELOPE = {
    "schema_version",
    "message_id",
    "workflow_id",
    "occurred_at",
    "causation_id",
    "correlation_id",
    "type",
    "previous_hash",
}


def facts(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    """What the events say, without their envelopes: easy to compare whole. Who sent the command is a fact of the
    events that say what a person did (a move, a vote); the tests of `actor` check it on the others."""
    return [
        (type(event).__name__, event.model_dump(exclude=ENVELOPE | ACTOR_UNLESS_A_PERSONS_ACT[type(event).__name__]))
        for event in events
    ]


ACTOR_UNLESS_A_PERSONS_ACT = defaultdict(lambda: {"actor"}, TransitionTaken=set(), InputRecorded=set())


def moved(
    trigger: str,
    source: str,
    dest: str,
    *,
    actor: str | None = None,
    note: str = "",
    deadline_at: datetime | None = None,
    remind_at: datetime | None = None,
) -> tuple[str, dict[str, Any]]:
    """The facts of a TransitionTaken."""
    facts = {"trigger": trigger, "source": source, "dest": dest, "actor": actor, "note": note}
    return "TransitionTaken", facts | {"deadline_at": deadline_at, "remind_at": remind_at}


def scheduled(
    step: str,
    visit: int = FIRST_STEP_VISIT,
    try_number: int = 1,
    timeout_at: datetime | None = seconds_later(30),  # noqa: B008 (a fixed time)
) -> tuple[str, dict[str, Any]]:
    """The facts of a StepScheduled."""
    return (
        "StepScheduled",
        {"step": step, "try_number": try_number, "job_id": job_id(visit, try_number), "timeout_at": timeout_at},
    )


def rejection(events: list[Event], code: str) -> CommandRejected:
    """The single CommandRejected of a decision, checked to be the whole decision."""
    assert [(type(event), getattr(event, "code", None)) for event in events] == [(CommandRejected, code)]
    return only(events, CommandRejected)


def pending_job(state: WorkflowState) -> ProcessJob:
    """The job of the step it runs: it must run one."""
    assert state.bookkeeping.pending_job is not None, f"no job pending in {state.business_state}"
    return state.bookkeeping.pending_job


def only(events: list[Event], kind: type[E]) -> E:
    """The single event of `events`, checked to be a `kind`."""
    [event] = events
    assert isinstance(event, kind), event
    return event


def last(events: list[Event], kind: type[E]) -> E:
    """The last of `events`, checked to be a `kind`."""
    assert isinstance(events[-1], kind), events[-1]
    return events[-1]


# Every business state of both shipped types, reached along a short path, with an actor its waits accept. The
# approval step state in both of its situations, and the ways a workflow ends by a lifecycle command.


@dataclass(frozen=True)
class Situation:
    make: Callable[[], History]
    actor: str = "ann"  # who may approve or reject here


SITUATIONS: dict[str, Situation] = {
    "approval: Unprocessed": Situation(lambda: given(create())),
    "approval: Sending To Queue, job in flight": Situation(lambda: given(create(), process())),
    "approval: Sending To Queue, retry due": Situation(
        lambda: given(create(), process(), send_fails=send_fails_on((FIRST_STEP_VISIT, 1)))
    ),
    "approval: Waiting For Approval": Situation(lambda: given(create(), process(), complete(0.8))),
    "approval: Finished": Situation(lambda: given(create(), process(), complete(0.8), approve())),
    "approval: Error": Situation(lambda: given(create(), process(), complete(0.1))),
    "approval: cancelled while Sending To Queue": Situation(lambda: given(create(), process(), cancel())),
    "approval: terminated while Waiting For Approval": Situation(
        lambda: given(create(), process(), complete(0.8), terminate())
    ),
    "approval: Finished, archived": Situation(lambda: given(create(), process(), complete(0.8), approve(), archive())),
    "expense: Draft": Situation(lambda: given(create_expense())),
    "expense: Validating": Situation(lambda: given(create_expense(), process())),
    "expense: Manager Approval": Situation(lambda: given(create_expense(), process(), complete(0.5))),
    "expense: Director Approval": Situation(
        lambda: given(create_expense(), process(), complete(0.5), fire("deadline-3")), actor="director"
    ),
    "expense: Finance Approval, one approval in": Situation(
        lambda: given(create_expense(), process(), complete(0.5), approve(), approve(approver="fin-ann")),
        actor="fin-bob",
    ),
    "expense: Paying": Situation(
        lambda: given(
            create_expense(),
            process(),
            complete(0.5),
            approve(),
            approve(approver="fin-ann"),
            approve(approver="fin-bob"),
        )
    ),
    "expense: Paid": Situation(
        lambda: given(
            create_expense(),
            process(),
            complete(0.5),
            approve(),
            approve(approver="fin-ann"),
            approve(approver="fin-bob"),
            complete(0.5, visit=5),
        )
    ),
    "expense: Rejected": Situation(lambda: given(create_expense(), process(), complete(0.5), reject())),
    "expense: Error": Situation(lambda: given(create_expense(), process(), complete(0.01))),
}


def command_in(situation: str, kind: str, **fields: Any) -> Command:
    """A command of this kind, sent by someone the situation's waits accept when it has an approver."""
    if kind in ("approve", "reject"):
        fields = {"approver": SITUATIONS[situation].actor} | fields
    return COMMAND_OF_KIND[kind](**fields)
