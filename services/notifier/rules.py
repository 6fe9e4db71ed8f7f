"""What the notifier tells whom, decided from the log alone: pure functions, no I/O.

- A workflow that enters a waiting state tells who it waits for (its type's `waits_for`: names, or "role:<role>");
  `escalated` when the state's deadline moved it there, `waiting` otherwise.
- A wait with a reminder (`remind_at`, from its `remind_before_s`) is reminded then, if it still waits.
- A workflow that ends (succeeds, fails, is cancelled or terminated) says so, to the subscriptions of no one in
  particular (their `people` is empty)."""

from datetime import datetime

from contracts.events import (
    DEADLINE_PASSED,
    RecordedEvent,
    TransitionTaken,
    WorkflowCancelled,
    WorkflowStarted,
    WorkflowTerminated,
)
from contracts.notifications import Decision, Notification, Reminder, Subscription
from contracts.types import StateInfo, WorkflowTypeInfo

ENDS = ("succeeded", "failed")
DECISIONS: tuple[Decision, ...] = ("approve", "reject")


def notifications_of(recorded: RecordedEvent, declared: WorkflowTypeInfo) -> list[Notification]:
    """What one event of the log tells people (most events tell nothing)."""
    event = recorded.event
    match event:
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
    if state.kind != "wait" or not state.waits_for:
        return []
    deadline_at = getattr(event, "deadline_at", None)
    summary = f"{declared.title} {event.workflow_id} waits in {entered} for {', '.join(state.waits_for)}"
    if kind == "escalated":
        summary = f"{declared.title} {event.workflow_id} was escalated: its deadline passed; it now waits in {entered}"
    return [
        Notification(
            id=f"{event.workflow_id}.{recorded.sequence}.{kind}",
            kind=kind,
            workflow_id=event.workflow_id,
            workflow_type=declared.name,
            state=entered,
            entered_sequence=recorded.sequence,
            people=tuple(state.waits_for),
            decisions=_decisions(state),
            deadline_at=deadline_at,
            occurred_at=event.occurred_at,
            summary=summary,
        )
    ]


def reminder_of(recorded: RecordedEvent, declared: WorkflowTypeInfo) -> tuple[Reminder, datetime] | None:
    """The reminder an event that entered a wait asks for, and when it is due."""
    event = recorded.event
    remind_at = getattr(event, "remind_at", None)
    deadline_at = getattr(event, "deadline_at", None)
    if remind_at is None or deadline_at is None:
        return None
    entered = event.dest if isinstance(event, TransitionTaken) else declared.initial
    state = _state(declared, entered)
    reminder = Reminder(
        workflow_id=event.workflow_id,
        workflow_type=declared.name,
        state=entered,
        entered_sequence=recorded.sequence,
        people=tuple(state.waits_for),
        decisions=_decisions(state),
        deadline_at=deadline_at,
    )
    return reminder, remind_at


def reminded(reminder: Reminder, title: str, now: datetime) -> Notification:
    """The notification of a reminder that came due while its workflow still waits."""
    left = max(0, int((reminder.deadline_at - now).total_seconds()))
    return Notification(
        id=f"{reminder.workflow_id}.{reminder.entered_sequence}.reminder",
        kind="reminder",
        workflow_id=reminder.workflow_id,
        workflow_type=reminder.workflow_type,
        state=reminder.state,
        entered_sequence=reminder.entered_sequence,
        people=reminder.people,
        decisions=reminder.decisions,
        deadline_at=reminder.deadline_at,
        occurred_at=now,
        summary=f"Reminder: {title} {reminder.workflow_id} still waits in {reminder.state}; "
        f"its deadline passes in {_duration(left)}",
    )


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
    theirs to answer (named, or by a role the owner held when subscribing). None: the notification carries no links."""
    if not notification.decisions or not notification.people:
        return None
    mine = {subscription.owner} | {f"role:{role}" for role in subscription.owner_roles}
    return subscription.owner if mine & set(notification.people) else None


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
