"""How a step's tries go: a failed try is retried per its policy unless its error is not retryable, a try with no
result in time is abandoned, and the step gives up after its last try. Shown on the approval type's step (4 tries,
exponential from 0.2 s, FatalError not retryable, a 30 s timeout unless the input sets `step_timeout_s`)."""

from datetime import timedelta

import pytest
from workflow_history import (
    FIRST_STEP_VISIT,
    NOW,
    WORKFLOW_ID,
    approve,
    complete,
    create,
    create_expense,
    facts,
    fail_job,
    fire,
    given,
    job_id,
    last,
    moved,
    numbered,
    only,
    process,
    rejection,
    scheduled,
    seconds_later,
    send_fails_on,
    sends_always_fail,
)

from contracts.events import StepAttemptFailed, StepScheduled
from contracts.jobs import ProcessJob
from contracts.state import InfraStatus, PendingTimer
from services.orchestrator.domain.engine import outbox

SENDING, ERROR = "Sending To Queue", "Error"
SEND_ERROR = "could not send the job to the queue"


def attempt_failed(try_number: int, error: str, error_type: str, retry_at, job: str | None = None, step="process"):
    return (
        "StepAttemptFailed",
        {
            "step": step,
            "try_number": try_number,
            "job_id": job,
            "error": error,
            "error_type": error_type,
            "retry_at": retry_at,
        },
    )


def timer_ids(history) -> list[str]:
    return list(history.state.bookkeeping.timers)


# ------------------------------------------------------------------------------------------------ sends that fail


def test_a_failed_send_leaves_the_step_running_with_a_retry_owed_at_now_plus_the_policy_delay():
    history = given(create(), process(), send_fails=send_fails_on((FIRST_STEP_VISIT, 1)))

    assert facts(history.events[-1:]) == [attempt_failed(1, SEND_ERROR, "SendError", seconds_later(0.2))]
    failed = history.state
    assert (failed.business_state, failed.infra_status) == (SENDING, InfraStatus.RUNNING)
    assert (failed.bookkeeping.step_try, failed.error, failed.bookkeeping.pending_job) == (1, SEND_ERROR, None)
    [owed] = outbox(failed)
    assert isinstance(owed, PendingTimer)
    assert (owed.due_at, owed.command.timer_id, owed.command.message_id) == (
        seconds_later(0.2),
        "retry-2-1",
        f"{WORKFLOW_ID}-retry-2-1",
    )
    assert owed.command.causation_id == history.events[-1].message_id


def test_the_due_retry_runs_the_next_try_and_clears_the_failed_one():
    history = given(create(), process(), send_fails=send_fails_on((FIRST_STEP_VISIT, 1)))
    history.now = seconds_later(0.2)

    events = history.record(fire("retry-2-1"))

    assert facts(events) == [scheduled("process", try_number=2, timeout_at=seconds_later(30.2))]
    dispatched = history.state
    assert (dispatched.infra_status, dispatched.bookkeeping.step_try, dispatched.error) == (
        InfraStatus.PROCESSING_STEP,
        2,
        None,
    )
    assert [type(message) for message in outbox(dispatched)] == [ProcessJob, PendingTimer]
    assert timer_ids(history) == ["timeout-2-2"]
    job = dispatched.bookkeeping.pending_job
    assert job is not None
    assert (job.job_id, job.try_number) == (
        job_id(try_number=2),
        2,
    )


def test_each_failed_send_waits_longer_per_the_exponential_policy_counted_from_when_it_failed():
    history = given(create(), process(), send_fails=sends_always_fail)
    retry_times = [last(history.events, StepAttemptFailed).retry_at]
    for try_number in (1, 2):
        history.now = retry_times[-1] or NOW
        history.record(fire(f"retry-2-{try_number}"))
        retry_times.append(last(history.events, StepAttemptFailed).retry_at)

    assert retry_times == [seconds_later(0.2), seconds_later(0.2 + 0.4), seconds_later(0.2 + 0.4 + 0.8)]


def test_the_last_failed_try_fails_the_step_and_errors_the_workflow():
    history = given(create(), process(), fire("retry-2-1"), fire("retry-2-2"), send_fails=sends_always_fail)

    events = history.record(fire("retry-2-3"))

    failure = f"Step 'process' failed: {SEND_ERROR} (after 4 tries)"
    assert facts(events) == [
        attempt_failed(4, SEND_ERROR, "SendError", None),
        ("StepFailed", {"step": "process", "error": failure}),
        moved("fail", SENDING, ERROR, note=failure),
    ]
    errored = history.state
    assert (errored.business_state, errored.infra_status, errored.error) == (ERROR, InfraStatus.ERRORED, failure)
    assert outbox(errored) == []


def test_a_step_with_a_linear_policy_waits_linearly_and_gives_up_after_its_tries():
    history = given(create_expense(), process(), fire("retry-2-1"), send_fails=sends_always_fail)

    events = history.record(fire("retry-2-2"))

    assert [event.retry_at for event in history.events if event.type == "StepAttemptFailed"] == [
        seconds_later(0.5),
        seconds_later(1.0),
        None,
    ]
    assert facts(events)[-1] == moved(
        "fail", "Validating", "Error", note=f"Step 'validate' failed: {SEND_ERROR} (after 3 tries)"
    )


# ------------------------------------------------------------------------------------------------ jobs that fail


def test_a_retryable_job_failure_is_retried_after_the_policy_delay():
    history = given(create(), process())

    events = history.record(fail_job("model crashed", error_type="ModelError"))

    assert facts(events) == [attempt_failed(1, "model crashed", "ModelError", seconds_later(0.2), job=job_id())]
    failed = history.state
    assert (failed.business_state, failed.infra_status, failed.error) == (SENDING, InfraStatus.RUNNING, "model crashed")
    assert timer_ids(history) == ["retry-2-1"]
    assert facts(history.record(fire("retry-2-1"))) == [scheduled("process", try_number=2)]


@pytest.mark.parametrize(
    ("failure", "why"),
    [
        pytest.param(
            fail_job("bad input", error_type="FatalError"),
            "bad input (FatalError, not retryable)",
            id="error type the step declares non-retryable",
        ),
        pytest.param(
            fail_job("bad input", retryable=False),
            "bad input (Error, not retryable)",
            id="processor says not retryable",
        ),
    ],
)
def test_a_non_retryable_job_failure_skips_the_retries_and_errors_the_workflow(failure, why):
    history = given(create(), process())

    events = history.record(failure)

    assert facts(events) == [
        attempt_failed(1, "bad input", failure.error_type, None, job=job_id()),
        ("StepFailed", {"step": "process", "error": f"Step 'process' failed: {why}"}),
        moved("fail", SENDING, ERROR, note=f"Step 'process' failed: {why}"),
    ]
    assert (history.state.infra_status, history.state.error) == (InfraStatus.ERRORED, f"Step 'process' failed: {why}")
    assert outbox(history.state) == []


def test_a_job_failure_on_the_last_try_gives_up():
    history = given(
        create(),
        process(),
        fail_job(),
        fire("retry-2-1"),
        fail_job(try_number=2),
        fire("retry-2-2"),
        fail_job(try_number=3),
        fire("retry-2-3"),
    )

    events = history.record(fail_job(try_number=4))

    assert [fact[0] for fact in facts(events)] == ["StepAttemptFailed", "StepFailed", "TransitionTaken"]
    assert history.state.error == "Step 'process' failed: model crashed (after 4 tries)"


# ------------------------------------------------------------------------------------------------ timeouts


def test_a_job_with_no_result_in_time_is_abandoned_and_retried():
    history = given(create(), process())
    history.now = seconds_later(30)

    events = history.record(fire("timeout-2-1"))

    assert facts(events) == [attempt_failed(1, "no result within 30 s", "Timeout", seconds_later(30.2), job=job_id())]
    assert (history.state.bookkeeping.pending_job, history.state.infra_status) == (None, InfraStatus.RUNNING)
    assert timer_ids(history) == ["retry-2-1"]


def test_the_input_sets_the_step_timeout():
    history = given(create(input={"step_timeout_s": 5}), process())

    assert last(history.events, StepScheduled).timeout_at == seconds_later(5)
    assert history.state.bookkeeping.timers["timeout-2-1"].due_at == seconds_later(5)
    assert only(history.when(fire("timeout-2-1")), StepAttemptFailed).error == "no result within 5 s"


@pytest.mark.parametrize(
    "after_timeout",
    [pytest.param([], id="before the next try"), pytest.param([fire("retry-2-1")], id="while the next try runs")],
)
def test_the_late_result_of_an_abandoned_job_is_stale(after_timeout):
    history = given(create(), process(), fire("timeout-2-1"), *after_timeout)
    before = history.state

    rejected = rejection(history.when(complete(0.8)), "stale")

    assert rejected.reason == f"job {job_id()} is not in flight"
    history.recorded += numbered(rejected, first=before.last_sequence + 1)
    assert (history.state.business_state, history.state.bookkeeping.pending_job) == (
        SENDING,
        before.bookkeeping.pending_job,
    )


# ------------------------------------------------------------------------------------------------ timers not owed


@pytest.mark.parametrize(
    ("make_history", "timer_id"),
    [
        pytest.param(lambda: given(create(), process(), complete(0.8)), "timeout-2-1", id="job answered in time"),
        pytest.param(lambda: given(create(), process(), fail_job()), "timeout-2-1", id="job failed in time"),
        pytest.param(
            lambda: given(create(), process(), fire("retry-2-1"), send_fails=send_fails_on((FIRST_STEP_VISIT, 1))),
            "retry-2-1",
            id="retry already run",
        ),
        pytest.param(lambda: given(create(), process(), complete(0.1)), "timeout-2-1", id="workflow ended"),
        pytest.param(
            lambda: given(create_expense(), process(), complete(0.5), fire("deadline-3")),
            "deadline-3",
            id="deadline already passed",
        ),
        pytest.param(
            lambda: given(create_expense(), process(), complete(0.5), approve()),
            "deadline-3",
            id="its wait was answered before the deadline",
        ),
        pytest.param(lambda: given(create(), process()), "retry-2-1", id="never set"),
    ],
)
def test_a_timer_the_workflow_no_longer_owes_causes_nothing(make_history, timer_id):
    history = make_history()
    history.now = NOW + timedelta(days=2)

    assert history.when(fire(timer_id)) == []
