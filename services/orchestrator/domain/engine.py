"""The engine: `decide(state, command) -> events`, `evolve(state, event) -> state`, and the outbox a state owes.

Generic: it runs the workflow types it is given (declaration.py) and knows none. Pure: no I/O, no clock, no
randomness; time and the send step's luck come in through `Context`."""

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
    MigrateWorkflow,
    ProcessWorkflow,
    ReassignWorkflow,
    RejectWorkflow,
    RetryWorkflow,
    TerminateWorkflow,
)
from contracts.definitions import StepState, WaitState
from contracts.events import (
    DEADLINE_PASSED,
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
    WorkflowMigrated,
    WorkflowReassigned,
    WorkflowRetried,
    WorkflowStarted,
    WorkflowTerminated,
)
from contracts.ids import job_id
from contracts.jobs import ProcessJob
from contracts.state import (
    APPLIED_COMMANDS_KEPT,
    BOOKKEEPING_FIELDS,
    InfraStatus,
    PendingTimer,
    TimerPurpose,
    WorkflowState,
)
from services.orchestrator.domain.declaration import (
    ENDED,
    LIFECYCLE,
    PHASE_OF_KIND,
    Actor,
    IllegalTransition,
    Phase,
    StateKind,
    TypeVersions,
    WorkflowType,
    allows,
    delay_after,
    describe_who,
    seconds,
)


@dataclass(frozen=True)
class Context:
    now: datetime
    send_fails: Callable[[str, int, int], bool]  # (workflow_id, visit, try) -> did sending this try's job fail?


def phase(state: WorkflowState, declared: WorkflowType) -> Phase:
    return Phase.STOPPED if state.stopped else PHASE_OF_KIND[declared.kind(state.current_state)]


def infra_status(state: WorkflowState, declared: WorkflowType) -> InfraStatus:
    """The generic status, read off what the engine is doing; no workflow type writes it."""
    if not state.bookkeeping.started:
        return InfraStatus.QUEUED
    if state.stopped == "cancelled":
        return InfraStatus.CANCELLED
    if state.stopped == "terminated":
        return InfraStatus.ERRORED
    match declared.kind(state.current_state):
        case StateKind.WAIT:
            return InfraStatus.WAITING_FOR_EVENT
        case StateKind.STEP:
            return InfraStatus.PROCESSING_STEP if state.bookkeeping.pending_job else InfraStatus.RUNNING
        case StateKind.SUCCEEDED:
            return InfraStatus.COMPLETED
        case StateKind.FAILED:
            return InfraStatus.ERRORED


class Engine:
    """Decides and folds the workflows of the types it is given."""

    def __init__(self, types: TypeVersions) -> None:
        self.types = types

    def type_of(self, state: WorkflowState) -> WorkflowType:
        return self.types.get(state.type_name, state.type_version)

    def evolve(self, state: WorkflowState, recorded: RecordedEvent) -> WorkflowState:
        return evolve(state, recorded, self.types)

    def fold(self, state: WorkflowState, history: Iterable[RecordedEvent]) -> WorkflowState:
        for recorded in history:
            state = evolve(state, recorded, self.types)
        return state

    def decide(self, state: WorkflowState, command: Command, context: Context) -> "Decision":
        """What a command causes in this state: a single `CommandRejected` when it cannot apply, no event for a timer
        the workflow no longer owes."""
        decider = _Decider(self.types, state, command, context)
        decider.run()
        return Decision(decider.events, decider.state)

    def decision(self, state: WorkflowState, events: list[Event]) -> "Decision":
        """Events written by hand (not by `decide`), with the state they make of `state`."""
        return Decision(
            events, self.fold(state, [RecordedEvent(sequence=state.last_sequence, event=e) for e in events])
        )


# ---------------------------------------------------------------------------------------------------------- evolve


def evolve(state: WorkflowState, recorded: RecordedEvent, types: TypeVersions) -> WorkflowState:
    event = recorded.event
    if state.exists:
        declared = types.get(state.type_name, state.type_version)
    elif isinstance(event, WorkflowCreated):  # the type version it is created with
        declared = types.get(event.workflow_type, event.type_version)
    else:  # none for a rejection of a command to a workflow that does not exist
        declared = None
    changes: dict[str, Any] = {"last_sequence": recorded.sequence, "updated_at": event.occurred_at}
    if recorded.digest:  # read from the log; an event just decided is linked when it is appended
        changes["chain_head"] = recorded.digest
    if event.causation_id and event.causation_id not in state.bookkeeping.applied_commands:
        changes["applied_commands"] = (*state.bookkeeping.applied_commands, event.causation_id)[-APPLIED_COMMANDS_KEPT:]
    if not state.exists and not isinstance(event, WorkflowCreated | CommandRejected):
        raise IllegalTransition(f"{event.type} before WorkflowCreated in workflow {state.id}")
    _check_engine_rules(state, event, declared)
    if declared is None:  # a rejection of a command for a workflow that does not exist
        return _updated(state, changes)

    match event:
        case WorkflowCreated():
            if state.exists:
                raise IllegalTransition(f"workflow {state.id} created twice")
            changes |= {
                "type": event.workflow_type,
                "type_version": event.type_version,
                "created_at": event.occurred_at,
                "context": {"input": event.input},
            }
        case WorkflowStarted():
            if state.bookkeeping.started:
                raise IllegalTransition(f"workflow {state.id} started twice")
            changes |= {"started": True} | _entering(state, declared.initial, event, declared)
        case TransitionTaken():
            dest = declared.next_state(state.business_state, event.trigger)
            if (event.source, event.dest) != (state.business_state, dest):
                raise IllegalTransition(f"{event.trigger}: {event.source} -> {event.dest} from {state.business_state}")
            changes |= _entering(state, dest, event, declared)
        case WorkflowRetried():
            if phase(state, declared) not in LIFECYCLE["retry"].applies_in:
                raise IllegalTransition(f"retry of workflow {state.id} that is not in error")
            if event.dest != state.bookkeeping.last_step_state:
                raise IllegalTransition(
                    f"retry into {event.dest}, but the last step ran in {state.bookkeeping.last_step_state}"
                )
            changes |= _entering(state, event.dest, event, declared) | {"error": None}
        case InputRecorded():
            taken = {"command_kind": event.command_kind, "actor": event.actor, "note": event.note}
            changes["inputs"] = [*state.bookkeeping.inputs, taken]
        case StepScheduled():
            job = ProcessJob(
                message_id=event.job_id,
                workflow_id=event.workflow_id,
                occurred_at=event.occurred_at,
                causation_id=event.message_id,
                correlation_id=event.correlation_id,
                job_id=event.job_id,
                workflow_type=state.type_name,
                step=event.step,
                attempt=state.attempt,
                try_number=event.try_number,
                context=state.context,
                timeout_at=event.timeout_at,
            )
            timers = _timers_without(state, TimerPurpose.RETRY)
            if event.timeout_at:
                timer_id = f"timeout-{state.bookkeeping.visit}-{event.try_number}"
                timers |= _timer(state, TimerPurpose.TIMEOUT, timer_id, event.timeout_at, event)
            # A new try: the failed try before it is no longer the workflow's error.
            changes |= {"step_try": event.try_number, "pending_job": job, "timers": timers, "error": None}
        case StepAttemptFailed():
            timers = _timers_without(state, TimerPurpose.TIMEOUT)
            if event.retry_at:
                timer_id = f"retry-{state.bookkeeping.visit}-{event.try_number}"
                timers |= _timer(state, TimerPurpose.RETRY, timer_id, event.retry_at, event)
            changes |= {"step_try": event.try_number, "error": event.error, "pending_job": None, "timers": timers}
        case StepCompleted():
            changes |= {
                "context": {**state.context, event.step: event.result},
                "output": _number(event.result.get("output")),
                "error": None,
                "pending_job": None,
                "timers": _timers_without(state, TimerPurpose.TIMEOUT),
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
        case WorkflowMigrated():
            if event.from_version != state.type_version:
                raise IllegalTransition(f"migration from version {event.from_version} of one on {state.type_version}")
            declared = types.get(state.type_name, event.to_version)
            if state.business_state not in declared.states:
                raise IllegalTransition(f"migration to a version without the state '{state.business_state}'")
            changes |= {"type_version": event.to_version, "search_values": declared.search_values(state.context)}
        case WorkflowReassigned():
            if event.state != state.business_state:
                raise IllegalTransition(f"reassignment of '{event.state}' in '{state.business_state}'")
            changes["assignees"] = tuple(event.to)
    if "context" in changes:
        changes["search_values"] = declared.search_values(changes["context"])
    new_state = _updated(state, changes)
    if not new_state.bookkeeping.started:
        return new_state
    books = new_state.bookkeeping
    waiting_for = (
        ()
        if new_state.stopped
        else declared.waiting_for(new_state.current_state, books.inputs, new_state.context, books.assignees)
    )
    return new_state.model_copy(update={"infra_status": infra_status(new_state, declared), "waiting_for": waiting_for})


def _number(value: Any) -> float | None:
    """A result's `output`, which the views show, when it is a number."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _updated(state: WorkflowState, changes: dict[str, Any]) -> WorkflowState:
    """`state` with `changes`, each made to the public view or to the bookkeeping, as its name says."""
    books = {name: changes.pop(name) for name in BOOKKEEPING_FIELDS & changes.keys()}
    if books:
        changes["bookkeeping"] = state.bookkeeping.model_copy(update=books)
    return state.model_copy(update=changes)


def _check_engine_rules(state: WorkflowState, event: Event, declared: WorkflowType | None) -> None:
    """What the engine never writes, the fold refuses: so folding a log checks it is a legal path."""
    if (
        isinstance(event, WorkflowCreated | WorkflowStarted | CommandRejected | WorkflowArchived)
        or not state.bookkeeping.started
    ):
        return
    assert declared is not None  # started, so created
    if state.stopped:
        raise IllegalTransition(f"{event.type} after workflow {state.id} was {state.stopped}")
    kind = declared.kind(state.current_state)
    if isinstance(event, StepScheduled | StepAttemptFailed | StepCompleted | StepFailed) and kind is not StateKind.STEP:
        raise IllegalTransition(f"{event.type} in '{state.business_state}', which runs no step")
    if isinstance(event, InputRecorded | WorkflowReassigned) and kind is not StateKind.WAIT:
        raise IllegalTransition(f"{event.type} in '{state.business_state}', which waits for nothing")


def _entering(
    state: WorkflowState,
    dest: str,
    event: WorkflowStarted | TransitionTaken | WorkflowRetried,
    declared: WorkflowType,
) -> dict:
    """Entering a state starts a new visit: the old state's job and timers are left behind (a late result or a timer
    that still fires is then ignored), and the new state's deadline is set."""
    visit, rounds = (
        state.bookkeeping.visit + 1,
        {**state.bookkeeping.rounds, dest: state.bookkeeping.rounds.get(dest, 0) + 1},
    )
    deadline_at = getattr(event, "deadline_at", None)
    changes: dict[str, Any] = {
        "business_state": dest,
        "visit": visit,
        "rounds": rounds,
        "step_try": 0,
        "inputs": [],
        "assignees": (),
        "pending_job": None,
        "timers": {},
        "deadline_at": deadline_at,
    }
    if deadline_at:
        changes["timers"] = _timer(state, TimerPurpose.DEADLINE, f"deadline-{visit}", deadline_at, event)
    kind = declared.kind(dest)
    if kind is StateKind.STEP:
        changes |= {"attempt": rounds[dest], "output": None, "error": None}
    if kind is StateKind.FAILED and (note := getattr(event, "note", "")):
        changes["error"] = note
    return changes


def _timer(
    state: WorkflowState, purpose: TimerPurpose, timer_id: str, due_at: datetime, cause: Event
) -> dict[str, PendingTimer]:
    command = FireTimer(
        message_id=f"{state.id}-{timer_id}",
        workflow_id=state.id,
        occurred_at=cause.occurred_at,
        causation_id=cause.message_id,
        correlation_id=cause.correlation_id,
        timer_id=timer_id,
    )
    return {timer_id: PendingTimer(purpose=purpose, due_at=due_at, command=command)}


def _timers_without(state: WorkflowState, purpose: TimerPurpose) -> dict[str, PendingTimer]:
    return {timer_id: timer for timer_id, timer in state.bookkeeping.timers.items() if timer.purpose is not purpose}


def outbox(state: WorkflowState) -> list[ProcessJob | PendingTimer]:
    """The messages this state still owes: the job of its running step, and its durable timers."""
    return ([state.bookkeeping.pending_job] if state.bookkeeping.pending_job else []) + list(
        state.bookkeeping.timers.values()
    )


# ---------------------------------------------------------------------------------------------------------- decide


@dataclass(frozen=True)
class Decision:
    """The events a command causes, and the state they make of the state decided on. That state's `last_sequence` is
    still the one the decision was based on, which its append is guarded by: the log numbers the events."""

    events: list[Event]
    state: WorkflowState

    def recorded(self, last_sequence: int, chain_head: str | None) -> WorkflowState:
        """The state once the events are in the log, the last at `last_sequence` and hashing to `chain_head` (None in
        a log that is not chained, as the unit tests' history): what folding them from there gives."""
        return _updated(self.state, {"last_sequence": last_sequence, "chain_head": chain_head})


class _Decider:
    """Builds one decision's events. Each event is folded in as it is made, so the later parts of the decision (the
    entry into the next state, its step's job) see the state as it will be."""

    def __init__(self, types: TypeVersions, state: WorkflowState, command: Command, context: Context) -> None:
        self.types, self.state, self.command, self.context = types, state, command, context
        self.events: list[Event] = []

    @property
    def declared(self) -> WorkflowType:
        return self.types.get(self.state.type_name, self.state.type_version)

    def emit(self, event_type: type, **fields: Any) -> None:
        # Ids fixed by the command's id: deciding the same command twice yields the very same events. Each carries
        # who sent the command, unless it says otherwise (a step's result moving the workflow on).
        fields.setdefault("actor", self.command.sent_by)
        event = event_type(
            message_id=f"{self.command.message_id}-{len(self.events) + 1}",
            workflow_id=self.command.workflow_id,
            occurred_at=self.context.now,
            causation_id=self.command.message_id,
            correlation_id=self.command.correlation_id,
            **fields,
        )
        self.events.append(event)
        self.state = evolve(self.state, RecordedEvent(sequence=self.state.last_sequence, event=event), self.types)

    def reject(self, code: RejectionCode, reason: str) -> None:
        command = self.command
        self.emit(CommandRejected, command_id=command.message_id, command_kind=command.kind, code=code, reason=reason)

    def run(self) -> None:
        command, state = self.command, self.state
        if isinstance(command, CreateWorkflow):
            return self.create(command)
        if not state.exists:
            return self.reject("unknown_workflow", f"workflow {command.workflow_id} does not exist")
        if isinstance(command, FireTimer):
            return self.fire(command.timer_id)
        now = phase(state, self.declared)
        if (rule := LIFECYCLE.get(command.kind)) and now not in rule.applies_in:
            return self.refuse_here(rule.refused or self.why_ended())
        match command:
            case ArchiveWorkflow():
                if state.archived:
                    return self.refuse_here("it is already archived")
                return self.emit(WorkflowArchived)
            case RetryWorkflow():
                if (
                    state.bookkeeping.last_step_state is None
                ):  # it ended in failure without running a step: nothing to retry
                    return self.refuse_here(LIFECYCLE["retry"].refused or "")
                if state.archived:
                    return self.refuse_here("it is archived")
                self.emit(WorkflowRetried, source=state.business_state, dest=state.bookkeeping.last_step_state)
                return self.enter()
        if now in ENDED:
            return self.refuse_here(self.why_ended())
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
                return self.client_input("approve", command.comment)
            case RejectWorkflow():
                return self.client_input("reject", command.reason)
            case MigrateWorkflow():
                return self.migrate(command.to_version)
            case ReassignWorkflow():
                return self.reassign(command.to, command.reason)
        raise TypeError(f"no decision for {type(command).__name__}")

    def why_ended(self) -> str:
        return f"it was {self.state.stopped}" if self.state.stopped else "it is final"

    def refuse_here(self, why: str) -> None:
        self.reject(
            "not_allowed", f"cannot {self.command.kind} a workflow in state '{self.state.business_state}' ({why})"
        )

    # -- creation and client commands

    def create(self, command: CreateWorkflow) -> None:
        if self.state.exists:
            return self.reject("already_exists", f"workflow {self.state.id} already exists")
        name, version = command.workflow_type, command.type_version
        if (latest := self.types.latest(name)) is None:
            known = ", ".join(self.types.names())
            return self.reject("unknown_type", f"unknown workflow type '{name}' (known: {known})")
        if version is not None and not self.types.has(name, version):
            return self.reject(
                "unknown_type", f"type '{name}' has no version {version} (the latest is {latest.version})"
            )
        declared = latest if version is None else self.types.get(name, version)
        if problems := declared.input_problems(command.input):
            return self.reject("invalid", "; ".join(problems))
        if command.start and "process" not in declared.accepted_commands(declared.initial):
            return self.reject("not_allowed", f"a {declared.name} workflow cannot be processed on creation")
        self.emit(WorkflowCreated, workflow_type=name, type_version=declared.version, input=command.input)
        self.emit(WorkflowStarted, **self.deadline_of(declared.initial))
        self.enter()
        if command.start:
            self.client_input("process")

    def client_input(self, kind: str, note: str = "") -> None:
        state, command = self.state, self.command
        spec = self.declared.states[state.current_state]
        if not isinstance(spec, WaitState) or kind not in spec.accepts:
            accepted = self.declared.accepted_commands(state.current_state)
            return self.refuse_here(
                f"allowed now: {', '.join(accepted)}" if accepted else "a step is running; wait for it"
            )
        accept, actor = spec.accepts[kind], Actor(command.sent_by, frozenset(command.groups))
        who = accept.who
        if assignees := state.bookkeeping.assignees:
            if actor.name not in assignees:
                return self.reject(
                    "not_allowed", f"{actor.name} may not {kind} here (it is assigned to {', '.join(assignees)})"
                )
        elif who is not None and not allows(who, actor, state.context):
            return self.reject(
                "not_allowed", f"{actor.name or 'an anonymous actor'} may not {kind} here (only {describe_who(who)})"
            )
        if accept.quorum is None:
            return self.move(accept.trigger, note=note)
        already = {i["actor"] for i in state.bookkeeping.inputs if i["command_kind"] == kind}
        if actor.name in already:
            return self.reject("not_allowed", f"{actor.name} has already sent {kind}; it counts once")
        needed = min(accept.quorum, len(assignees)) if assignees else accept.quorum
        if len(already) + 1 >= needed:
            return self.move(accept.trigger, note=note)
        self.emit(InputRecorded, command_kind=kind, note=f"{len(already) + 1} of {needed}")

    def migrate(self, to_version: int) -> None:
        state, name = self.state, self.state.type_name
        if to_version == state.type_version:
            return self.refuse_here(f"it already runs on version {to_version}")
        if not self.types.has(name, to_version):
            return self.reject("not_allowed", f"type '{name}' has no version {to_version}")
        target = self.types.get(name, to_version)
        here = state.current_state
        if here not in target.states:
            return self.reject("not_allowed", f"version {to_version} of '{name}' has no state '{here}'")
        if target.kind(here) is not self.declared.kind(here):
            return self.reject(
                "not_allowed",
                f"'{here}' is a {self.declared.kind(here)} in version {state.type_version} but a {target.kind(here)} in {to_version}",
            )
        step, now = self.declared.states[here], target.states[here]
        if isinstance(step, StepState) and isinstance(now, StepState) and step.step != now.step:
            return self.reject(
                "not_allowed", f"'{here}' runs the step '{step.step}' here but '{now.step}' in version {to_version}"
            )
        was, will = self.declared.states[here], target.states[here]
        if (
            isinstance(was, WaitState)
            and isinstance(will, WaitState)
            and (was.deadline is None) != (will.deadline is None)
        ):
            return self.reject("not_allowed", f"'{here}' has a deadline in one version and not in the other")
        if problems := target.input_problems(state.context["input"]):
            return self.reject("not_allowed", f"its input does not fit version {to_version}: {'; '.join(problems)}")
        self.emit(WorkflowMigrated, from_version=state.type_version, to_version=to_version)

    def reassign(self, to: list[str], reason: str) -> None:
        if self.declared.kind(self.state.current_state) is not StateKind.WAIT:
            return self.refuse_here("only a waiting workflow can be reassigned")
        self.emit(WorkflowReassigned, state=self.state.current_state, to=list(dict.fromkeys(to)), reason=reason)

    # -- moving and entering states

    def move(self, trigger: str, note: str = "") -> None:
        source = self.state.business_state
        dest = self.declared.next_state(source, trigger)
        self.emit(TransitionTaken, trigger=trigger, source=source, dest=dest, note=note, **self.deadline_of(dest))
        self.enter()

    def deadline_of(self, state_name: str) -> dict[str, datetime | None]:
        """When a wait entered now passes its deadline, and when its people are reminded before that."""
        spec = self.declared.states[state_name]
        if not isinstance(spec, WaitState) or spec.deadline is None:
            return {"deadline_at": None, "remind_at": None}
        delay = seconds(spec.deadline.after_s, self.state.context)
        assert delay is not None  # a deadline always has a duration
        before = seconds(spec.deadline.remind_before_s, self.state.context)
        remind = delay - before if before is not None and before < delay else None
        now = self.context.now
        return {
            "deadline_at": now + timedelta(seconds=delay),
            "remind_at": None if remind is None else now + timedelta(seconds=remind),
        }

    def enter(self) -> None:
        """A state's entry action: a step state runs its step's first try."""
        if isinstance(self.step, StepState):
            self.try_step(1)

    @property
    def step(self) -> Any:
        """The declaration of the current state (a Step, when a step is running)."""
        return self.declared.states[self.state.current_state]

    # -- steps

    def try_step(self, try_number: int) -> None:
        step, visit, workflow_id = self.step, self.state.bookkeeping.visit, self.state.id
        if self.context.send_fails(workflow_id, visit, try_number):
            return self.attempt_failed(try_number, None, "could not send the job to the queue", "SendError", True)
        timeout = seconds(step.timeout_s, self.state.context)
        timeout_at = self.context.now + timedelta(seconds=timeout) if timeout else None
        self.emit(
            StepScheduled,
            step=step.step,
            try_number=try_number,
            job_id=job_id(workflow_id, visit, try_number),
            timeout_at=timeout_at,
        )

    def attempt_failed(self, try_number: int, job_id: str | None, error: str, error_type: str, retryable: bool) -> None:
        step = self.step
        give_up = not retryable or error_type in step.non_retryable
        delay = None if give_up else delay_after(step.retry, try_number)
        retry_at = None if delay is None else self.context.now + timedelta(seconds=delay)
        self.emit(
            StepAttemptFailed,
            step=step.step,
            try_number=try_number,
            job_id=job_id,
            error=error,
            error_type=error_type,
            retry_at=retry_at,
        )
        if retry_at is None:
            why = f"{error} ({error_type}, not retryable)" if give_up else f"{error} (after {try_number} tries)"
            failure = f"Step '{step.step}' failed: {why}"
            self.emit(StepFailed, step=step.step, error=failure)
            self.move(step.on_failure, note=failure)

    def job_result(self, command: CompleteJob | FailJob) -> None:
        job = self.state.bookkeeping.pending_job
        if job is None or job.job_id != command.job_id:
            return self.reject("stale", f"job {command.job_id} is not in flight")
        if isinstance(command, FailJob):
            return self.attempt_failed(job.try_number, job.job_id, command.error, command.error_type, command.retryable)
        result = command.result
        here = self.state.current_state
        if problems := self.declared.result_problems(here, result):
            return self.attempt_failed(job.try_number, job.job_id, "; ".join(problems), "InvalidResult", False)
        try:
            trigger, note = self.declared.route(here, result, self.state.context)
        except ValueError as error:
            return self.attempt_failed(job.try_number, job.job_id, str(error), "RouteError", False)
        self.emit(StepCompleted, step=job.step, job_id=job.job_id, result=result)
        self.move(trigger, note=note)

    # -- timers

    def fire(self, timer_id: str) -> None:
        """A durable timer is due. One the workflow no longer owes (its job answered in time, its state was left) is
        nothing to do: no event, so it does not clutter the log."""
        if timer_id not in self.state.bookkeeping.timers:
            return None
        purpose = self.state.bookkeeping.timers[timer_id].purpose
        if purpose is TimerPurpose.RETRY:
            return self.try_step(self.state.bookkeeping.step_try + 1)
        if purpose is TimerPurpose.TIMEOUT:
            job = self.state.bookkeeping.pending_job
            assert job is not None  # a step's timeout is owed only while its job is
            error = f"no result within {seconds(self.step.timeout_s, self.state.context):g} s"
            return self.attempt_failed(job.try_number, job.job_id, error, "Timeout", True)
        assert isinstance(self.step, WaitState) and self.step.deadline  # a deadline is owed only while its wait is
        return self.move(self.step.deadline.fires, note=DEADLINE_PASSED)
