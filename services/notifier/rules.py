"""What the notifier tells whom, decided from the log alone: pure functions, no I/O.

- A workflow that enters a waiting state tells who it waits for (its type version's `waits_for`: names,
  "group:<group>", "role:<role>", and the person its input names for "input:<field>"); `escalated` when the state's
  deadline moved it there, `waiting` otherwise. A wait reassigned tells its new assignees.
- A wait with a reminder (`remind_at`, from its `remind_before_s`) is reminded then, if it still waits.
- A workflow that ends (succeeds, fails, is cancelled or terminated) says so, to the subscriptions of no one in
  particular (their `people` is empty)."""

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from contracts.auth import answering_for
from contracts.events import (
    DEADLINE_PASSED,
    RecordedEvent,
    TransitionTaken,
    WorkflowCancelled,
    WorkflowReassigned,
    WorkflowStarted,
    WorkflowTerminated,
)
from contracts.notifications import Decision, Notification, Subscription
from contracts.types import StateInfo, WorkflowTypeInfo

ENDS = ("succeeded", "failed")
INPUT = "input:"  # a wait's `waits_for` entry naming a field of the input that names the person
DECISIONS: tuple[Decision, ...] = ("approve", "reject")


def notifications_of(
    recorded: RecordedEvent, declared: WorkflowTypeInfo, given: Mapping[str, Any] | None = None
) -> list[Notification]:
    """What one event of the log tells people (most events tell nothing); `given` is the workflow's input."""
    event = recorded.event
    match event:
        case WorkflowReassigned():
            state = _state(declared, event.state)
            summary = f"{declared.title} {event.workflow_id} waits in {event.state} for {', '.join(event.to)}"
            return [_waiting(recorded, declared, state, "waiting", tuple(event.to), summary, None)]
        case WorkflowStarted():
            entered, kind = declared.initial, "waiting"
        case TransitionTaken():
            entered, kind = event.dest, "escalated" if event.note == DEADLINE_PASSED else "waiting"
        case WorkflowCancelled() | WorkflowTerminated():
            how = "cancelled" if isinstance(event, WorkflowCancelled) else "terminated"
            return [_ended(recorded, declared, f"was {how}" + (f": {event.reason}" if event.reason else ""), "")]
        case _:
            return []
    state = _state(declared, entered)
    if state.kind in ENDS:
        return [_ended(recorded, declared, f"ended in {entered}", entered)]
    people = _people(state.waits_for, given or {})
    if state.kind != "wait" or not people:
        return []
    summary = f"{declared.title} {event.workflow_id} waits in {entered} for {', '.join(people)}"
    if kind == "escalated":
        summary = f"{declared.title} {event.workflow_id} was escalated: its deadline passed; it now waits in {entered}"
    return [_waiting(recorded, declared, state, kind, people, summary, getattr(event, "deadline_at", None))]


def _people(waits_for: list[str], given: Mapping[str, Any]) -> tuple[str, ...]:
    """Who a wait is for: "input:<field>" is the person the instance's input names there (no one, if it names none)."""
    found = []
    for who in waits_for:
        if not who.startswith(INPUT):
            found.append(who)
        elif isinstance(named := given.get(who.removeprefix(INPUT)), str) and named:
            found.append(named)
    return tuple(sorted(set(found)))


def _waiting(
    recorded: RecordedEvent,
    declared: WorkflowTypeInfo,
    state: StateInfo,
    kind: Literal["waiting", "escalated"],
    people: tuple[str, ...],
    summary: str,
    deadline_at: datetime | None,
) -> Notification:
    event = recorded.event
    return Notification(
        id=f"{event.workflow_id}.{recorded.sequence}.{kind}",
        kind=kind,
        workflow_id=event.workflow_id,
        workflow_type=declared.name,
        state=state.name,
        entered_sequence=recorded.sequence,
        people=people,
        decisions=_decisions(state),
        deadline_at=deadline_at,
        occurred_at=event.occurred_at,
        summary=summary,
    )


def reminder_of(recorded: RecordedEvent, told: list[Notification]) -> tuple[Notification, datetime] | None:
    """The reminder an event that entered a wait asks for (its `remind_at`): the wait's notification, told again
    then, and when that is."""
    remind_at = getattr(recorded.event, "remind_at", None)
    waits = [notification for notification in told if notification.kind != "ended"]
    return (waits[0], remind_at) if remind_at and waits else None


def reminded(waiting: Notification, title: str, now: datetime) -> Notification:
    """A wait's notification once its reminder came due while it still waits."""
    assert waiting.deadline_at is not None  # a reminder comes before a deadline
    left = max(0, int((waiting.deadline_at - now).total_seconds()))
    summary = f"Reminder: {title} {waiting.workflow_id} still waits in {waiting.state}; "
    summary += f"its deadline passes in {_duration(left)}"
    reminder_id = f"{waiting.workflow_id}.{waiting.entered_sequence}.reminder"
    return waiting.model_copy(update={"id": reminder_id, "kind": "reminder", "occurred_at": now, "summary": summary})


def matches(subscription: Subscription, notification: Notification) -> bool:
    """Whether a subscription is told of a notification: its kind and type, and someone it follows among the people
    it concerns (every notification, when it follows no one in particular)."""
    if notification.kind not in subscription.kinds:
        return False
    if subscription.types and notification.workflow_type not in subscription.types:
        return False
    return not subscription.people or bool(set(subscription.people) & set(notification.people))


def decider(subscription: Subscription, notification: Notification) -> str | None:
    """Who a notification's decision links act as: the subscription's owner, when the wait takes a decision and is
    theirs to answer (named, or by a role or group the owner had when subscribing). None: the notification carries no links."""
    if not notification.decisions or not notification.people:
        return None
    mine = answering_for(subscription.owner, subscription.owner_roles, subscription.owner_groups)
    return subscription.owner if set(mine) & set(notification.people) else None


def _ended(recorded: RecordedEvent, declared: WorkflowTypeInfo, how: str, state: str) -> Notification:
    event = recorded.event
    return Notification(
        id=f"{event.workflow_id}.{recorded.sequence}.ended",
        kind="ended",
        workflow_id=event.workflow_id,
        workflow_type=declared.name,
        state=state,
        entered_sequence=recorded.sequence,
        occurred_at=event.occurred_at,
        summary=f"{declared.title} {event.workflow_id} {how}",
    )


def _decisions(state: StateInfo) -> tuple[Decision, ...]:
    return tuple(decision for decision in DECISIONS if decision in state.accepts)


def _state(declared: WorkflowTypeInfo, name: str) -> StateInfo:
    return next(state for state in declared.states if state.name == name)


def _duration(seconds: int) -> str:
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"
