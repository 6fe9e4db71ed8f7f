"""The fold: the state is a function of the log, and a log the engine could not have written is refused."""

from datetime import timedelta

import pytest
from workflow_history import (
    NOW,
    WORKFLOW_ID,
    approve,
    complete,
    create,
    given,
    job_id,
    numbered,
    process,
    written,
)

from contracts.events import (
    CommandRejected,
    InputRecorded,
    StepCompleted,
    StepScheduled,
    TransitionTaken,
    WorkflowArchived,
    WorkflowCancelled,
    WorkflowCreated,
    WorkflowRetried,
    WorkflowStarted,
)
from contracts.state import APPLIED_COMMANDS_KEPT, TimerPurpose, WorkflowState
from services.orchestrator.domain.declaration import IllegalTransition
from services.orchestrator.domain.types import SHIPPED

CREATED = written(WorkflowCreated, workflow_type="approval")
STARTED = written(WorkflowStarted)


def went(trigger: str, source: str, dest: str) -> TransitionTaken:
    return written(TransitionTaken, trigger=trigger, source=source, dest=dest)


def replay(*events):
    return SHIPPED.fold(WorkflowState(id=WORKFLOW_ID), numbered(*events))


@pytest.mark.parametrize(
    "log",
    [
        pytest.param([CREATED, STARTED, went("approve", "Unprocessed", "Finished")], id="trigger not allowed here"),
        pytest.param(
            [CREATED, STARTED, went("request_approval", "Unprocessed", "Waiting For Approval")],
            id="trigger of another state",
        ),
        pytest.param(
            [CREATED, STARTED, went("process", "Waiting For Approval", "Sending To Queue")],
            id="source is not the current state",
        ),
        pytest.param([CREATED, STARTED, went("process", "Unprocessed", "Finished")], id="dest is not the trigger's"),
        pytest.param(
            [
                CREATED,
                STARTED,
                went("process", "Unprocessed", "Sending To Queue"),
                went("process", "Unprocessed", "Sending To Queue"),
            ],
            id="same transition twice",
        ),
        pytest.param([CREATED, went("process", "Unprocessed", "Sending To Queue")], id="transition before started"),
        pytest.param([CREATED, STARTED, went("nonsense", "Unprocessed", "Error")], id="unknown trigger"),
    ],
)
def test_the_fold_refuses_a_transition_the_machine_does_not_allow(log):
    with pytest.raises(IllegalTransition):
        replay(*log)


def test_the_fold_refuses_a_retry_of_a_workflow_that_is_not_in_error():
    with pytest.raises(IllegalTransition, match="not in error"):
        replay(CREATED, STARTED, written(WorkflowRetried, source="Unprocessed", dest="Sending To Queue"))


def test_the_fold_refuses_a_retry_of_a_cancelled_workflow_in_error():
    log = given(create(), process(), complete(0.1)).events
    with pytest.raises(IllegalTransition, match="was cancelled"):
        replay(*log, written(WorkflowCancelled), written(WorkflowRetried, source="Error", dest="Sending To Queue"))


def test_the_fold_refuses_a_retry_into_another_state_than_the_last_step():
    log = given(create(), process(), complete(0.1)).events
    with pytest.raises(IllegalTransition, match="the last step ran in Sending To Queue"):
        replay(*log, written(WorkflowRetried, source="Error", dest="Unprocessed"))


@pytest.mark.parametrize(
    "event",
    [
        STARTED,
        went("process", "Unprocessed", "Sending To Queue"),
        written(StepScheduled, step="process", try_number=1, job_id=job_id()),
        written(StepCompleted, step="process", job_id=job_id(), result={"output": 0.8}),
        written(InputRecorded, command_kind="approve"),
        written(WorkflowCancelled),
        written(WorkflowArchived),
    ],
    ids=lambda event: event.type,
)
def test_the_fold_refuses_an_event_before_the_workflow_was_created(event):
    with pytest.raises(IllegalTransition, match=f"{event.type} before WorkflowCreated"):
        replay(event)


def test_the_fold_refuses_a_workflow_created_twice():
    with pytest.raises(IllegalTransition, match="created twice"):
        replay(CREATED, CREATED)


def test_the_fold_refuses_a_workflow_started_twice():
    with pytest.raises(IllegalTransition, match="started twice"):
        replay(CREATED, STARTED, STARTED)


def test_a_rejection_may_come_before_the_workflow_exists():
    rejected = written(CommandRejected, command_id="c-1", command_kind="approve", code="unknown_workflow", reason="x")

    state = replay(rejected)

    assert (state.exists, state.last_sequence) == (False, 1)


# ------------------------------------------------------------------------------------------------ bookkeeping


def test_last_sequence_and_updated_at_follow_the_last_event_while_created_at_stays():
    later = NOW + timedelta(minutes=5)
    history = given(create(), process(), complete(0.8))
    history.now = later
    history.record(approve())

    state = history.state
    assert state.last_sequence == len(history.recorded) == 7
    assert (state.created_at, state.updated_at) == (NOW, later)


def test_applied_commands_lists_each_recorded_command_once_in_order():
    history = given(
        create(message_id="c-create"),
        process(message_id="c-process"),
        complete(0.8, message_id="c-complete"),
        approve(message_id="c-approve"),
        approve(message_id="c-approve-again"),
    )

    assert history.state.bookkeeping.applied_commands == (
        "c-create",
        "c-process",
        "c-complete",
        "c-approve",
        "c-approve-again",
    )


def test_applied_commands_keeps_only_the_latest_so_a_long_lived_snapshot_stays_small():
    too_early = [approve(message_id=f"c-{n}") for n in range(APPLIED_COMMANDS_KEPT + 5)]  # each rejected: Unprocessed
    history = given(create(message_id="c-create"), *too_early)

    assert sum(recorded.event.type == "CommandRejected" for recorded in history.recorded) == len(too_early)
    assert history.state.bookkeeping.applied_commands == tuple(f"c-{n}" for n in range(5, APPLIED_COMMANDS_KEPT + 5))


def test_the_fold_refuses_anything_but_archiving_after_a_workflow_was_cancelled():
    log = given(create(), process(), complete(0.5)).events
    with pytest.raises(IllegalTransition, match="was cancelled"):
        replay(
            *log,
            written(WorkflowCancelled),
            written(TransitionTaken, trigger="approve", source="Waiting For Approval", dest="Finished"),
        )


def test_the_fold_refuses_a_step_event_in_a_state_that_runs_no_step():
    with pytest.raises(IllegalTransition, match="runs no step"):
        replay(CREATED, STARTED, written(StepScheduled, step="process", try_number=1, job_id="wf-1-1-1"))


def test_a_snapshot_stored_before_timers_had_a_purpose_reads_it_off_the_timer_id():
    history = given(create(), process(), send_fails=lambda *_: False)
    stored = history.state.model_dump(mode="json")
    for timer in stored["bookkeeping"]["timers"].values():
        del timer["purpose"]

    read = WorkflowState.model_validate(stored)

    assert read == history.state
    assert [timer.purpose for timer in read.bookkeeping.timers.values()] == [TimerPurpose.TIMEOUT]


def test_a_snapshot_stored_before_the_bookkeeping_was_nested_reads_as_one_nested():
    history = given(create(), process(), send_fails=lambda *_: False)
    stored = history.state.model_dump(mode="json")
    flat = {name: value for name, value in stored.items() if name != "bookkeeping"} | stored["bookkeeping"]

    assert WorkflowState.model_validate(flat) == history.state
