"""The approval type run by the engine: every transition, with the business state and the infrastructure status
after every event, and what the state owes (its outbox)."""

import pytest
from workflow_history import (
    FIRST_STEP_VISIT,
    INPUT,
    NOW,
    WORKFLOW_ID,
    History,
    approve,
    complete,
    create,
    facts,
    fire,
    given,
    job_id,
    moved,
    pending_job,
    process,
    reject,
    rejection,
    scheduled,
    seconds_later,
    send_fails_on,
)

from contracts.commands import FireTimer
from contracts.jobs import ProcessJob
from contracts.state import InfraStatus, PendingTimer, TimerPurpose
from services.orchestrator.domain.engine import outbox

UNPROCESSED, SENDING, WAITING, FINISHED, ERROR = (
    "Unprocessed",
    "Sending To Queue",
    "Waiting For Approval",
    "Finished",
    "Error",
)


def trace(history: History) -> list[tuple[str, str | None, InfraStatus]]:
    """Each recorded event with the business state and the infrastructure status it leaves."""
    return [
        (type(recorded.event).__name__, state.business_state, state.infra_status)
        for recorded, state in zip(history.recorded, history.states(), strict=True)
    ]


# ------------------------------------------------------------------------------------------------ both machines


def test_both_machines_follow_every_event_of_the_path_through_a_failed_send_to_finished():
    history = given(
        create(),
        process(),
        fire("retry-2-1"),
        complete(0.8, try_number=2),
        approve(),
        send_fails=send_fails_on((FIRST_STEP_VISIT, 1)),
    )

    assert trace(history) == [
        ("WorkflowCreated", None, InfraStatus.QUEUED),
        ("WorkflowStarted", UNPROCESSED, InfraStatus.WAITING_FOR_EVENT),
        ("TransitionTaken", SENDING, InfraStatus.RUNNING),
        ("StepAttemptFailed", SENDING, InfraStatus.RUNNING),
        ("StepScheduled", SENDING, InfraStatus.PROCESSING_STEP),
        ("StepCompleted", SENDING, InfraStatus.RUNNING),
        ("TransitionTaken", WAITING, InfraStatus.WAITING_FOR_EVENT),
        ("TransitionTaken", FINISHED, InfraStatus.COMPLETED),
    ]


def test_both_machines_follow_every_event_of_a_rejection_and_a_low_output():
    history = given(create(), process(), complete(0.8), reject(), complete(0.12, visit=4))

    assert trace(history)[5:] == [
        ("TransitionTaken", WAITING, InfraStatus.WAITING_FOR_EVENT),
        ("TransitionTaken", SENDING, InfraStatus.RUNNING),
        ("StepScheduled", SENDING, InfraStatus.PROCESSING_STEP),
        ("StepCompleted", SENDING, InfraStatus.RUNNING),
        ("TransitionTaken", ERROR, InfraStatus.ERRORED),
    ]


# ------------------------------------------------------------------------------------------------ create and process


def test_create_records_the_workflow_and_starts_it_in_its_initial_state():
    events = History().when(create(input={"amount": 7}))

    assert facts(events) == [
        ("WorkflowCreated", {"workflow_type": "approval", "type_version": 1, "input": {"amount": 7}}),
        ("WorkflowStarted", {"deadline_at": None, "remind_at": None}),
    ]


def test_a_created_workflow_is_queued_with_its_input_as_context_until_it_is_started():
    created, started = given(create()).states()

    assert (created.type, created.business_state, created.infra_status, created.bookkeeping.started) == (
        "approval",
        None,
        InfraStatus.QUEUED,
        False,
    )
    assert created.context == {"input": INPUT}
    assert (created.created_at, created.updated_at) == (NOW, NOW)
    assert (started.business_state, started.infra_status, started.bookkeeping.started) == (
        UNPROCESSED,
        InfraStatus.WAITING_FOR_EVENT,
        True,
    )
    assert (started.attempt, started.output, started.error, started.deadline_at) == (0, None, None, None)
    assert outbox(started) == []


def test_process_enters_the_send_step_and_schedules_its_first_try():
    events = given(create()).when(process())

    assert facts(events) == [moved("process", UNPROCESSED, SENDING), scheduled("process")]


def test_the_scheduled_job_is_owed_with_the_input_as_its_context_and_a_timeout_timer():
    history = given(create(), process(correlation_id="corr-7"))
    step_scheduled = history.events[-1]

    assert outbox(history.state) == [
        ProcessJob(
            message_id=job_id(),
            workflow_id=WORKFLOW_ID,
            occurred_at=NOW,
            causation_id=step_scheduled.message_id,
            correlation_id="corr-7",
            job_id=job_id(),
            workflow_type="approval",
            step="process",
            attempt=1,
            try_number=1,
            context={"input": INPUT},
            timeout_at=seconds_later(30),  # the worker stops the try when the orchestrator gives it up
        ),
        PendingTimer(
            purpose=TimerPurpose.TIMEOUT,
            due_at=seconds_later(30),
            command=FireTimer(
                message_id=f"{WORKFLOW_ID}-timeout-2-1",
                workflow_id=WORKFLOW_ID,
                occurred_at=NOW,
                causation_id=step_scheduled.message_id,
                correlation_id="corr-7",
                timer_id="timeout-2-1",
            ),
        ),
    ]


def test_the_send_step_is_asked_about_each_try_of_each_visit():
    asked = []

    def send_fails(workflow_id, visit, try_number):
        asked.append((workflow_id, visit, try_number))
        return (visit, try_number) == (4, 1)

    given(create(), process(), complete(0.8), reject(), fire("retry-4-1"), send_fails=send_fails)

    assert asked == [(WORKFLOW_ID, 2, 1), (WORKFLOW_ID, 4, 1), (WORKFLOW_ID, 4, 2)]


# ------------------------------------------------------------------------------------------------ the step's result


@pytest.mark.parametrize(
    ("output", "routed"),
    [
        (0.0, moved("fail", SENDING, ERROR, note="Output 0 is not above 0.25")),
        (0.12, moved("fail", SENDING, ERROR, note="Output 0.12 is not above 0.25")),
        (0.249, moved("fail", SENDING, ERROR, note="Output 0.249 is not above 0.25")),
        (0.25, moved("fail", SENDING, ERROR, note="Output 0.25 is not above 0.25")),
        (0.2501, moved("request_approval", SENDING, WAITING)),
        (0.99, moved("request_approval", SENDING, WAITING)),
    ],
)
def test_only_an_output_strictly_above_a_quarter_is_sent_for_approval(output, routed):
    events = given(create(), process()).when(complete(output))

    assert facts(events) == [
        ("StepCompleted", {"step": "process", "job_id": job_id(), "result": {"output": output}}),
        routed,
    ]


def test_a_completed_job_is_recorded_and_nothing_is_owed_while_waiting_for_approval():
    history = given(create(), process(), complete(0.8))
    completed, waiting = history.states()[-2:]

    assert (completed.output, completed.bookkeeping.pending_job, completed.bookkeeping.timers) == (0.8, None, {})
    assert completed.context == {"input": INPUT, "process": {"output": 0.8}}
    assert (waiting.business_state, waiting.infra_status, waiting.output) == (
        WAITING,
        InfraStatus.WAITING_FOR_EVENT,
        0.8,
    )
    assert outbox(waiting) == []


def test_a_low_output_errors_the_workflow_with_the_reason_and_keeps_the_output():
    errored = given(create(), process(), complete(0.12)).state

    assert (errored.business_state, errored.infra_status) == (ERROR, InfraStatus.ERRORED)
    assert (errored.error, errored.output) == ("Output 0.12 is not above 0.25", 0.12)
    assert outbox(errored) == []


# ------------------------------------------------------------------------------------------------ a person decides


def test_approve_finishes_the_workflow_and_records_who_approved():
    history = given(create(), process(), complete(0.8))

    events = history.record(approve(approver="ann", comment="fine"))

    assert facts(events) == [moved("approve", WAITING, FINISHED, actor="ann", note="fine")]
    finished = history.state
    assert (finished.business_state, finished.infra_status, finished.output) == (FINISHED, InfraStatus.COMPLETED, 0.8)
    assert outbox(finished) == []


def test_reject_sends_the_workflow_back_to_the_step_as_a_new_attempt_with_a_new_job():
    history = given(create(), process(), complete(0.4))

    events = history.record(reject(approver="bob", reason="too low"))

    assert facts(events) == [
        moved("reject", WAITING, SENDING, actor="bob", note="too low"),
        scheduled("process", visit=4),
    ]
    rejected = history.state
    assert (rejected.business_state, rejected.infra_status) == (SENDING, InfraStatus.PROCESSING_STEP)
    assert (rejected.attempt, rejected.output, rejected.error) == (2, None, None)
    assert (
        pending_job(rejected).job_id,
        pending_job(rejected).attempt,
        pending_job(rejected).try_number,
    ) == (
        job_id(visit=4),
        2,
        1,
    )


def test_rejected_work_is_processed_again_until_a_person_approves():
    history = given(create(), process(), complete(0.4), reject(), complete(0.5, visit=4), reject())

    assert history.state.attempt == 3
    assert facts(history.record(complete(0.9, visit=6))) == [
        ("StepCompleted", {"step": "process", "job_id": job_id(visit=6), "result": {"output": 0.9}}),
        moved("request_approval", SENDING, WAITING),
    ]
    history.record(approve())
    assert (history.state.business_state, history.state.attempt, history.state.output) == (FINISHED, 3, 0.9)


def test_create_with_start_creates_and_processes_in_one_decision():
    command = create(start=True)

    events = History().when(command)

    assert facts(events) == [
        ("WorkflowCreated", {"workflow_type": "approval", "type_version": 1, "input": INPUT}),
        ("WorkflowStarted", {"deadline_at": None, "remind_at": None}),
        moved("process", "Unprocessed", "Sending To Queue"),
        scheduled("process"),
    ]
    assert {event.causation_id for event in events} == {command.message_id}


def test_create_with_start_of_an_existing_workflow_is_refused_without_processing_it():
    history = given(create())

    events = history.when(create(start=True))

    assert rejection(events, "already_exists")
