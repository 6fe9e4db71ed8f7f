"""The engine: `decide(state, command) -> events`, `evolve(state, event) -> state`, and the outbox a state owes.

Generic: it runs any declared workflow type (declaration.py) and knows none. Pure: no I/O, no clock, no randomness;
time and the send step's luck come in through `Context`."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

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
from contracts.events import (
    CommandRejected,
    Event,
    InputRecorded,
    RecordedEvent,
    RejectionCode,
    StepAttemptFailed,
    StepCompleted,
    StepFailed,
    StepScheduled,
    TransitionTaken,
    WorkflowArchived,
    WorkflowCancelled,
    WorkflowCreated,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowTerminated,
)
from contracts.ids import job_id
from contracts.jobs import ProcessJob
from contracts.state import APPLIED_COMMANDS_KEPT, InfraStatus, PendingTimer, WorkflowState
from services.orchestrator.domain.declaration import (
    IllegalTransition,
    Input,
    Move,
    Refuse,
    StateKind,
    Stay,
    Step,
    Wait,
    WorkflowType,
    seconds,
)
from services.orchestrator.domain.types import WORKFLOW_TYPES


@dataclass(frozen=True)
class Context:
    now: datetime
    send_fails: Callable[[str, int, int], bool]  # (workflow_id, visit, try) -> did sending this try's job fail?


def workflow_type(state: WorkflowState) -> WorkflowType:
    return WORKFLOW_TYPES[state.type]


def has_ended(state: WorkflowState) -> bool:
    kind = workflow_type(state).kind(state.business_state)
    return state.stopped is not None or kind in (StateKind.SUCCEEDED, StateKind.FAILED)


def infra_status(state: WorkflowState) -> InfraStatus:
    """The generic status, read off what the engine is doing; no workflow type writes it."""
    if not state.started:
        return InfraStatus.QUEUED
    if state.stopped == "cancelled":
        return InfraStatus.CANCELLED
    if state.stopped == "terminated":
        return InfraStatus.ERRORED
    match workflow_type(state).kind(state.business_state):
        case StateKind.WAIT:
            return InfraStatus.WAITING_FOR_EVENT
        case StateKind.STEP:
            return InfraStatus.PROCESSING_STEP if state.pending_job else InfraStatus.RUNNING
        case StateKind.SUCCEEDED:
            return InfraStatus.COMPLETED
        case StateKind.FAILED:
            return InfraStatus.ERRORED


# ---------------------------------------------------------------------------------------------------------- evolve


def evolve(state: WorkflowState, recorded: RecordedEvent) -> WorkflowState:
    event = recorded.event
    changes: dict[str, Any] = {"last_sequence": recorded.sequence, "updated_at": event.occurred_at}
    if recorded.digest:  # read from the log; an event just decided is linked when it is appended
        changes["chain_head"] = recorded.digest
    if event.causation_id and event.causation_id not in state.applied_commands:
        changes["applied_commands"] = (*state.applied_commands, event.causation_id)[-APPLIED_COMMANDS_KEPT:]
    if not state.exists and not isinstance(event, WorkflowCreated | CommandRejected):
        raise IllegalTransition(f"{event.type} before WorkflowCreated in workflow {state.id}")
    _check_engine_rules(state, event)

    match event:
        case WorkflowCreated():
            if state.exists:
                raise IllegalTransition(f"workflow {state.id} created twice")
            changes |= {"type": event.workflow_type, "created_at": event.occurred_at, "context": {"input": event.input}}
        case WorkflowStarted():
            if state.started:
                raise IllegalTransition(f"workflow {state.id} started twice")
            initial = WORKFLOW_TYPES[state.type].initial
            changes |= {"started": True} | _entering(state, initial, event)
        case TransitionTaken():
            dest = workflow_type(state).next_state(state.business_state, event.trigger)
            if (event.source, event.dest) != (state.business_state, dest):
                raise IllegalTransition(f"{event.trigger}: {event.source} -> {event.dest} from {state.business_state}")
            changes |= _entering(state, dest, event)
        case WorkflowRetried():
            if workflow_type(state).kind(state.business_state) is not StateKind.FAILED or state.stopped:
                raise IllegalTransition(f"retry of workflow {state.id} that is not in error")
            if event.dest != state.last_step_state:
                raise IllegalTransition(f"retry into {event.dest}, but the last step ran in {state.last_step_state}")
            changes |= _entering(state, event.dest, event) | {"error": None}
        case InputRecorded():
            taken = {"command_kind": event.command_kind, "actor": event.actor, "note": event.note}
            changes["inputs"] = [*state.inputs, taken]
        case StepScheduled():
            job = ProcessJob(
                message_id=event.job_id,
                workflow_id=event.workflow_id,
                occurred_at=event.occurred_at,
                causation_id=event.message_id,
                correlation_id=event.correlation_id,
                job_id=event.job_id,
                workflow_type=state.type,
                step=event.step,
                attempt=state.attempt,
                try_number=event.try_number,
                context=state.context,
            )
            timers = _timers_without(state, "retry")
            if event.timeout_at:
                timers |= _timer(state, f"timeout-{state.visit}-{event.try_number}", event.timeout_at, event)
            # A new try: the failed try before it is no longer the workflow's error.
            changes |= {"step_try": event.try_number, "pending_job": job, "timers": timers, "error": None}
        case StepAttemptFailed():
            timers = _timers_without(state, "timeout")
            if event.retry_at:
                timers |= _timer(state, f"retry-{state.visit}-{event.try_number}", event.retry_at, event)
            changes |= {"step_try": event.try_number, "error": event.error, "pending_job": None, "timers": timers}
        case StepCompleted():
            changes |= {
                "context": {**state.context, event.step: event.result},
                "output": event.result.get("output"),
                "error": None,
                "pending_job": None,
                "timers": _timers_without(state, "timeout"),
                "last_step_state": state.business_state,
            }
        case StepFailed():
            changes |= {
                "error": event.error,
                "pending_job": None,
                "timers": {},
                "last_step_state": state.business_state,
            }
        case WorkflowCancelled() | WorkflowTerminated():
            stopped = "cancelled" if isinstance(event, WorkflowCancelled) else "terminated"
            changes |= {"stopped": stopped, "pending_job": None, "timers": {}, "deadline_at": None}
            if stopped == "terminated":
                changes["error"] = f"Terminated: {event.reason}" if event.reason else "Terminated"
        case WorkflowArchived():
            changes["archived"] = True
    if "context" in changes:
        changes["search_values"] = WORKFLOW_TYPES[changes.get("type", state.type)].search_values(changes["context"])
    new_state = state.model_copy(update=changes)
    if not new_state.started:
        return new_state
    waiting_for = (
        ()
        if new_state.stopped
        else workflow_type(new_state).waiting_for(new_state.business_state, tuple(new_state.inputs))
    )
    return new_state.model_copy(update={"infra_status": infra_status(new_state), "waiting_for": waiting_for})


def _check_engine_rules(state: WorkflowState, event: Event) -> None:
    """What the engine never writes, the fold refuses: so folding a log checks it is a legal path."""
    if isinstance(event, WorkflowCreated | WorkflowStarted | CommandRejected | WorkflowArchived) or not state.started:
        return
    if state.stopped:
        raise IllegalTransition(f"{event.type} after workflow {state.id} was {state.stopped}")
    kind = workflow_type(state).kind(state.business_state)
    if isinstance(event, StepScheduled | StepAttemptFailed | StepCompleted | StepFailed) and kind is not StateKind.STEP:
        raise IllegalTransition(f"{event.type} in '{state.business_state}', which runs no step")
    if isinstance(event, InputRecorded) and kind is not StateKind.WAIT:
        raise IllegalTransition(f"InputRecorded in '{state.business_state}', which waits for nothing")


def _entering(state: WorkflowState, dest: str, event: WorkflowStarted | TransitionTaken | WorkflowRetried) -> dict:
    """Entering a state starts a new visit: the old state's job and timers are left behind (a late result or a timer
    that still fires is then ignored), and the new state's deadline is set."""
    visit, rounds = state.visit + 1, {**state.rounds, dest: state.rounds.get(dest, 0) + 1}
    deadline_at = getattr(event, "deadline_at", None)
    changes: dict[str, Any] = {
        "business_state": dest,
        "visit": visit,
        "rounds": rounds,
        "step_try": 0,
        "inputs": [],
        "pending_job": None,
        "timers": {},
        "deadline_at": deadline_at,
    }
    if deadline_at:
        changes["timers"] = _timer(state.model_copy(update={"visit": visit}), f"deadline-{visit}", deadline_at, event)
    kind = WORKFLOW_TYPES[state.type].kind(dest)
    if kind is StateKind.STEP:
        changes |= {"attempt": rounds[dest], "output": None, "error": None}
    if kind is StateKind.FAILED and getattr(event, "note", ""):
        changes["error"] = event.note
    return changes


def _timer(state: WorkflowState, timer_id: str, due_at: datetime, cause: Event) -> dict[str, PendingTimer]:
    command = FireTimer(
        message_id=f"{state.id}-{timer_id}",
        workflow_id=state.id,
        occurred_at=cause.occurred_at,
        causation_id=cause.message_id,
        correlation_id=cause.correlation_id,
        timer_id=timer_id,
    )
    return {timer_id: PendingTimer(due_at=due_at, command=command)}


def _timers_without(state: WorkflowState, purpose: str) -> dict[str, PendingTimer]:
    return {timer_id: t for timer_id, t in state.timers.items() if not timer_id.startswith(f"{purpose}-")}


def fold(state: WorkflowState, history: Iterable[RecordedEvent]) -> WorkflowState:
    for recorded in history:
        state = evolve(state, recorded)
    return state


def outbox(state: WorkflowState) -> list[ProcessJob | PendingTimer]:
    """The messages this state still owes: the job of its running step, and its durable timers."""
    return ([state.pending_job] if state.pending_job else []) + list(state.timers.values())


# ---------------------------------------------------------------------------------------------------------- decide


@dataclass(frozen=True)
class Decision:
    """The events a command causes, and the state they make of the state decided on. That state's `last_sequence` is
    still the one the decision was based on, which its append is guarded by: the log numbers the events."""

    events: list[Event]
    state: WorkflowState

    @classmethod
    def of(cls, state: WorkflowState, events: list[Event]) -> "Decision":
        """Events written by hand (not by `decide`), with the state they make of `state`."""
        folded = fold(state, [RecordedEvent(sequence=state.last_sequence, event=event) for event in events])
        return cls(events, folded)

    def recorded(self, last_sequence: int, chain_head: str) -> WorkflowState:
        """The state once the events are in the log, the last at `last_sequence` and hashing to `chain_head`: what
        folding them from there gives."""
        return self.state.model_copy(update={"last_sequence": last_sequence, "chain_head": chain_head})


def decide(state: WorkflowState, command: Command, context: Context) -> Decision:
    """What a command causes in this state: a single `CommandRejected` when it cannot apply, no event for a timer the
    workflow no longer owes."""
    decision = _Decider(state, command, context)
    decision.run()
    return Decision(decision.events, decision.state)


class _Decider:
    """Builds one decision's events. Each event is folded in as it is made, so the later parts of the decision (the
    entry into the next state, its step's job) see the state as it will be."""

    def __init__(self, state: WorkflowState, command: Command, context: Context) -> None:
        self.state, self.command, self.context = state, command, context
        self.events: list[Event] = []

    def emit(self, event_type: type, **fields: Any) -> None:
        # Ids fixed by the command's id: deciding the same command twice yields the very same events.
        event = event_type(
            message_id=f"{self.command.message_id}-{len(self.events) + 1}",
            workflow_id=self.command.workflow_id,
            occurred_at=self.context.now,
            causation_id=self.command.message_id,
            correlation_id=self.command.correlation_id,
            **fields,
        )
        self.events.append(event)
        self.state = evolve(self.state, RecordedEvent(sequence=self.state.last_sequence, event=event))

    def reject(self, code: RejectionCode, reason: str) -> None:
        command = self.command
        self.emit(CommandRejected, command_id=command.message_id, command_kind=command.kind, code=code, reason=reason)

    def run(self) -> None:
        command, state = self.command, self.state
        if isinstance(command, CreateWorkflow):
            return self.create(command)
        if not state.exists:
            return self.reject("unknown_workflow", f"workflow {command.workflow_id} does not exist")
        match command:
            case FireTimer():
                return self.fire(command.timer_id)
            case ArchiveWorkflow():
                if not has_ended(state) or state.archived:
                    why = "it is already archived" if state.archived else "only an ended workflow can be archived"
                    return self.reject(
                        "not_allowed", f"cannot archive a workflow in state '{state.business_state}' ({why})"
                    )
                return self.emit(WorkflowArchived)
            case RetryWorkflow():
                kind = workflow_type(state).kind(state.business_state)
                if state.stopped or kind is not StateKind.FAILED or state.last_step_state is None:
                    return self.refuse_here("only a workflow that errored can be retried")
                if state.archived:
                    return self.refuse_here("it is archived")
                self.emit(WorkflowRetried, source=state.business_state, dest=state.last_step_state)
                return self.enter()
        if has_ended(state):
            return self.refuse_here(f"it was {state.stopped}" if state.stopped else "it is final")
        match command:
            case CancelWorkflow():
                return self.emit(WorkflowCancelled, reason=command.reason)
            case TerminateWorkflow():
                return self.emit(WorkflowTerminated, reason=command.reason)
            case CompleteJob() | FailJob():
                return self.job_result(command)
            case ProcessWorkflow():
                return self.client_input("process")
            case ApproveWorkflow():
                return self.client_input("approve", command.approver, command.comment)
            case RejectWorkflow():
                return self.client_input("reject", command.approver, command.reason)
        raise TypeError(f"no decision for {type(command).__name__}")

    def refuse_here(self, why: str) -> None:
        self.reject(
            "not_allowed", f"cannot {self.command.kind} a workflow in state '{self.state.business_state}' ({why})"
        )

    # -- creation and client commands

    def create(self, command: CreateWorkflow) -> None:
        if self.state.exists:
            return self.reject("already_exists", f"workflow {self.state.id} already exists")
        if command.workflow_type not in WORKFLOW_TYPES:
            known = ", ".join(sorted(WORKFLOW_TYPES))
            return self.reject("unknown_type", f"unknown workflow type '{command.workflow_type}' (known: {known})")
        declared = WORKFLOW_TYPES[command.workflow_type]
        if problems := declared.input_problems(command.input):
            return self.reject("invalid", "; ".join(problems))
        if command.start and "process" not in declared.accepted_commands(declared.initial):
            return self.reject("not_allowed", f"a {declared.name} workflow cannot be processed on creation")
        self.emit(WorkflowCreated, workflow_type=command.workflow_type, input=command.input)
        self.emit(WorkflowStarted, deadline_at=self.deadline_of(declared.initial))
        self.enter()
        if command.start:
            self.client_input("process")

    def client_input(self, kind: str, actor: str | None = None, note: str = "") -> None:
        state = self.state
        spec = workflow_type(state).states[state.business_state]
        if not isinstance(spec, Wait) or kind not in spec.accepts:
            accepted = workflow_type(state).accepted_commands(state.business_state)
            return self.refuse_here(
                f"allowed now: {', '.join(accepted)}" if accepted else "a step is running; wait for it"
            )
        taken = tuple(state.inputs)
        match spec.accepts[kind](Input(kind=kind, actor=actor, note=note, taken=taken, context=state.context)):
            case Move(trigger=trigger):
                self.move(trigger, actor=actor, note=note)
            case Stay(note=progress):
                self.emit(InputRecorded, command_kind=kind, actor=actor, note=progress or note)
            case Refuse(reason=reason):
                self.reject("not_allowed", reason)

    # -- moving and entering states

    def move(self, trigger: str, actor: str | None = None, note: str = "") -> None:
        source = self.state.business_state
        dest = workflow_type(self.state).next_state(source, trigger)
        self.emit(
            TransitionTaken,
            trigger=trigger,
            source=source,
            dest=dest,
            actor=actor,
            note=note,
            deadline_at=self.deadline_of(dest),
        )
        self.enter()

    def deadline_of(self, state_name: str) -> datetime | None:
        spec = workflow_type(self.state).states[state_name]
        delay = seconds(spec.deadline_s, self.state.context) if isinstance(spec, Wait) else None
        return None if delay is None else self.context.now + timedelta(seconds=delay)

    def enter(self) -> None:
        """A state's entry action: a step state runs its step's first try."""
        if isinstance(self.step, Step):
            self.try_step(1)

    @property
    def step(self) -> Any:
        """The declaration of the current state (a Step, when a step is running)."""
        return workflow_type(self.state).states[self.state.business_state]

    # -- steps

    def try_step(self, try_number: int) -> None:
        step, visit, workflow_id = self.step, self.state.visit, self.state.id
        if self.context.send_fails(workflow_id, visit, try_number):
            return self.attempt_failed(try_number, None, "could not send the job to the queue", "SendError", True)
        timeout = seconds(step.timeout_s, self.state.context)
        timeout_at = self.context.now + timedelta(seconds=timeout) if timeout else None
        self.emit(
            StepScheduled,
            step=step.name,
            try_number=try_number,
            job_id=job_id(workflow_id, visit, try_number),
            timeout_at=timeout_at,
        )

    def attempt_failed(self, try_number: int, job_id: str | None, error: str, error_type: str, retryable: bool) -> None:
        step = self.step
        give_up = not retryable or error_type in step.non_retryable
        delay = None if give_up else step.retry.delay_after(try_number)
        retry_at = None if delay is None else self.context.now + timedelta(seconds=delay)
        self.emit(
            StepAttemptFailed,
            step=step.name,
            try_number=try_number,
            job_id=job_id,
            error=error,
            error_type=error_type,
            retry_at=retry_at,
        )
        if retry_at is None:
            why = f"{error} ({error_type}, not retryable)" if give_up else f"{error} (after {try_number} tries)"
            failure = f"Step '{step.name}' failed: {why}"
            self.emit(StepFailed, step=step.name, error=failure)
            self.move(step.on_failure, note=failure)

    def job_result(self, command: CompleteJob | FailJob) -> None:
        job = self.state.pending_job
        if job is None or job.job_id != command.job_id:
            return self.reject("stale", f"job {command.job_id} is not in flight")
        if isinstance(command, FailJob):
            return self.attempt_failed(job.try_number, job.job_id, command.error, command.error_type, command.retryable)
        result = {"output": command.output}
        self.emit(StepCompleted, step=job.step, job_id=job.job_id, result=result)
        route = self.step.route(result, self.state.context)  # still the step's state: the transition comes next
        self.move(route.trigger, note=route.note)

    # -- timers

    def fire(self, timer_id: str) -> None:
        """A durable timer is due. One the workflow no longer owes (its job answered in time, its state was left) is
        nothing to do: no event, so it does not clutter the log."""
        if timer_id not in self.state.timers:
            return None
        purpose = timer_id.split("-", 1)[0]
        if purpose == "retry":
            return self.try_step(self.state.step_try + 1)
        if purpose == "timeout":
            job = self.state.pending_job
            error = f"no result within {seconds(self.step.timeout_s, self.state.context):g} s"
            return self.attempt_failed(job.try_number, job.job_id, error, "Timeout", True)
        return self.move(self.step.on_deadline, note="the deadline passed")
