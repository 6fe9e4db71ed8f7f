"""Cancel, terminate, retry and archive: the commands about a workflow's life rather than its business."""

import pytest
from workflow_history import (
    COMMAND_OF_KIND,
    INPUT,
    SITUATIONS,
    approve,
    archive,
    cancel,
    complete,
    create,
    create_expense,
    facts,
    fail_job,
    fire,
    given,
    job_id,
    pending_job,
    process,
    rejection,
    retry,
    scheduled,
    terminate,
)

from contracts.state import InfraStatus
from services.orchestrator.domain.engine import outbox

NOT_ENDED = [
    "approval: Unprocessed",
    "approval: Sending To Queue, job in flight",
    "approval: Sending To Queue, retry due",
    "approval: Waiting For Approval",
    "expense: Draft",
    "expense: Validating",
    "expense: Manager Approval",
    "expense: Director Approval",
    "expense: Finance Approval, one approval in",
    "expense: Paying",
]
ENDED = [name for name in SITUATIONS if name not in NOT_ENDED]


# ------------------------------------------------------------------------------------------------ cancel


@pytest.mark.parametrize("situation", NOT_ENDED)
def test_cancel_stops_a_workflow_in_any_state_that_has_not_ended_and_owes_nothing_after(situation):
    history = SITUATIONS[situation].make()
    before = history.state

    events = history.record(cancel(reason="changed my mind"))

    assert facts(events) == [("WorkflowCancelled", {"reason": "changed my mind"})]
    cancelled = history.state
    assert (cancelled.infra_status, cancelled.stopped) == (InfraStatus.CANCELLED, "cancelled")
    assert (cancelled.business_state, cancelled.context) == (before.business_state, before.context)
    assert (cancelled.bookkeeping.pending_job, cancelled.bookkeeping.timers, cancelled.deadline_at) == (None, {}, None)
    assert outbox(cancelled) == []


@pytest.mark.parametrize("kind", ["process", "approve", "reject", "cancel", "terminate"])
def test_a_cancelled_workflow_refuses_every_later_command_saying_it_was_cancelled(kind):
    history = given(create(), process(), complete(0.8), cancel())

    rejected = rejection(history.when(COMMAND_OF_KIND[kind]()), "not_allowed")

    assert rejected.reason == f"cannot {kind} a workflow in state 'Waiting For Approval' (it was cancelled)"


def test_the_late_result_of_a_job_of_a_cancelled_workflow_is_refused():
    history = given(create(), process(), cancel())

    rejected = rejection(history.when(complete(0.8)), "not_allowed")

    assert rejected.reason == "cannot complete_job a workflow in state 'Sending To Queue' (it was cancelled)"


@pytest.mark.parametrize(
    ("make_history", "timer_id"),
    [
        pytest.param(lambda: given(create(), process(), cancel()), "timeout-2-1", id="step timeout"),
        pytest.param(lambda: given(create_expense(), process(), complete(0.5), cancel()), "deadline-3", id="deadline"),
    ],
)
def test_the_timers_of_a_cancelled_workflow_cause_nothing(make_history, timer_id):
    assert make_history().when(fire(timer_id)) == []


# ------------------------------------------------------------------------------------------------ terminate


@pytest.mark.parametrize("situation", NOT_ENDED)
def test_terminate_ends_a_workflow_at_once_as_errored_with_the_reason(situation):
    history = SITUATIONS[situation].make()
    before = history.state

    events = history.record(terminate(reason="stuck"))

    assert facts(events) == [("WorkflowTerminated", {"reason": "stuck"})]
    terminated = history.state
    assert (terminated.infra_status, terminated.stopped, terminated.error) == (
        InfraStatus.ERRORED,
        "terminated",
        "Terminated: stuck",
    )
    assert terminated.business_state == before.business_state
    assert outbox(terminated) == []


def test_terminate_without_a_reason_says_only_terminated():
    assert given(create(), terminate(reason="")).state.error == "Terminated"


def test_a_terminated_workflow_refuses_later_commands_saying_it_was_terminated():
    rejected = rejection(given(create(), terminate()).when(process()), "not_allowed")

    assert rejected.reason == "cannot process a workflow in state 'Unprocessed' (it was terminated)"


# ------------------------------------------------------------------------------------------------ retry


def test_retry_from_error_runs_the_failed_step_again_with_the_recorded_context_and_a_new_job():
    history = given(create(), process(), complete(0.12))

    events = history.record(retry())

    assert facts(events) == [
        ("WorkflowRetried", {"source": "Error", "dest": "Sending To Queue"}),
        scheduled("process", visit=4),
    ]
    retried = history.state
    assert (retried.business_state, retried.infra_status, retried.error, retried.stopped) == (
        "Sending To Queue",
        InfraStatus.PROCESSING_STEP,
        None,
        None,
    )
    assert (retried.attempt, pending_job(retried).job_id) == (2, job_id(visit=4))
    assert pending_job(retried).context == {"input": INPUT, "process": {"output": 0.12}}


def test_a_retried_workflow_can_go_on_to_finish():
    history = given(create(), process(), fail_job(error_type="FatalError"), retry(), complete(0.9, visit=4), approve())

    assert (history.state.business_state, history.state.infra_status) == ("Finished", InfraStatus.COMPLETED)


def test_retry_goes_back_to_the_step_that_failed_not_to_the_steps_before_it():
    history = given(
        create_expense(),
        process(),
        complete(0.5),
        approve(),
        approve(approver="fin-ann"),
        approve(approver="fin-bob"),
        fail_job("bank down", visit=5, retryable=False),
    )
    assert (history.state.business_state, history.state.error) == (
        "Error",
        "Step 'pay' failed: bank down (Error, not retryable)",
    )

    events = history.record(retry())

    assert facts(events) == [("WorkflowRetried", {"source": "Error", "dest": "Paying"}), scheduled("pay", visit=7)]
    assert pending_job(history.state).context == {"input": INPUT, "validate": {"output": 0.5}}


@pytest.mark.parametrize("situation", [name for name in SITUATIONS if not name.endswith(": Error")])
def test_retry_is_refused_unless_the_workflow_errored(situation):
    history = SITUATIONS[situation].make()
    state = history.state.business_state

    rejected = rejection(history.when(retry()), "not_allowed")

    assert rejected.reason == (
        f"cannot retry a workflow in state '{state}' (only a workflow that errored can be retried)"
    )


# ------------------------------------------------------------------------------------------------ archive


@pytest.mark.parametrize("situation", [name for name in ENDED if "archived" not in name])
def test_archive_hides_an_ended_workflow_and_changes_nothing_else(situation):
    history = SITUATIONS[situation].make()
    before = history.state

    events = history.record(archive())

    assert facts(events) == [("WorkflowArchived", {})]
    archived = history.state
    assert archived.archived is True
    assert (archived.business_state, archived.infra_status, archived.error) == (
        before.business_state,
        before.infra_status,
        before.error,
    )


@pytest.mark.parametrize("situation", NOT_ENDED)
def test_archive_is_refused_before_the_workflow_ended(situation):
    history = SITUATIONS[situation].make()
    state = history.state.business_state

    rejected = rejection(history.when(archive()), "not_allowed")

    assert rejected.reason == f"cannot archive a workflow in state '{state}' (only an ended workflow can be archived)"


def test_archive_twice_is_refused():
    history = given(create(), process(), complete(0.8), approve(), archive())

    rejected = rejection(history.when(archive()), "not_allowed")

    assert rejected.reason == "cannot archive a workflow in state 'Finished' (it is already archived)"


def test_an_archived_workflow_in_error_is_not_retried():
    # Retrying would set it running again while hidden from the default list.
    history = given(create(), process(), complete(0.1), archive())

    rejected = rejection(history.when(retry()), "not_allowed")

    assert rejected.reason == "cannot retry a workflow in state 'Error' (it is archived)"
