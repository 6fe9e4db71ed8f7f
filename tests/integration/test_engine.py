"""The engine's policies through the real orchestrator and processor: retries, non-retryable errors, timeouts,
durable deadlines across a restart, lifecycle commands, and the second workflow type end to end."""

from datetime import UTC, datetime

import pytest
from nats.js.errors import NoKeysError

from contracts.commands import (
    ApproveWorkflow,
    CancelWorkflow,
    CompleteJob,
    CreateWorkflow,
    ProcessWorkflow,
    RejectWorkflow,
    RetryWorkflow,
)
from contracts.definitions import PublishedType, StepState
from contracts.ids import job_id
from contracts.types import WorkflowTypeInfo
from services.orchestrator.domain.types import WORKFLOW_TYPES
from tests.conftest import eventually
from tests.integration.driving import SEED, Driver, Luck, first_id

pytestmark = pytest.mark.integration

# The processor's injected failures for these tests; sends never fail, so each test isolates one policy.
RATES = {"transient": 0.5, "fatal": 0.3, "slow": 0.3}
luck = Luck(SEED, send_failure_rate=0.0, **RATES)
# A healthy try must finish well within the timeout even on a loaded 2-core machine; a slow one well after it.
SLOW_S, STEP_TIMEOUT_S = 6.0, 3.0


@pytest.fixture
def services(nats_url, topology, start_service):
    env = {
        "WF_SEED": str(SEED),
        "WF_SEND_FAILURE_RATE": "0",
        "WF_PROCESSOR_TRANSIENT_ERROR_RATE": str(RATES["transient"]),
        "WF_PROCESSOR_FATAL_ERROR_RATE": str(RATES["fatal"]),
        "WF_PROCESSOR_SLOW_RATE": str(RATES["slow"]),
        "WF_PROCESSOR_SLOW_S": str(SLOW_S),
    }

    def start(name: str):
        return start_service(name, nats_url, topology, **env)

    return {"orchestrator": start("orchestrator"), "processor": start("processor"), "start": start}


@pytest.fixture
def driver(js, topology, services) -> Driver:
    return Driver(js, topology)


def transient(job: str) -> bool:
    return luck.processor_does("transient", job) and not luck.processor_does("slow", job)


def fatal(job: str) -> bool:
    return luck.processor_does("fatal", job) and not any(luck.processor_does(w, job) for w in ("slow", "transient"))


async def start_approval(driver: Driver, wf: str, **input) -> None:
    await driver.send(CreateWorkflow(workflow_id=wf, input=input))
    await driver.send(ProcessWorkflow(workflow_id=wf))


async def test_a_step_that_fails_until_its_last_try_then_succeeds(driver):
    step = WORKFLOW_TYPES["approval"].states["Sending To Queue"]
    assert isinstance(step, StepState)
    tries = step.retry.max_tries
    wf = first_id(
        lambda wf: (
            all(transient(job_id(wf, 2, t)) for t in range(1, tries))
            and luck.clean(job_id(wf, 2, tries))
            and luck.output(job_id(wf, 2, tries)) > 0.25
        )
    )
    await start_approval(driver, wf)
    waiting = await driver.reaches(wf, "Waiting For Approval", timeout_s=30)
    assert waiting.output == luck.output(job_id(wf, 2, tries))
    failures = [e for e in await driver.events(wf) if e.type == "StepAttemptFailed"]
    assert [(f.try_number, f.error_type) for f in failures] == [(t, "TransientError") for t in range(1, tries)]
    assert (await driver.history(wf)).count("StepScheduled") == tries
    await driver.assert_consistent(wf)


async def test_a_non_retryable_error_fails_the_step_at_once(driver):
    wf = first_id(lambda wf: fatal(job_id(wf, 2, 1)))
    await start_approval(driver, wf)
    errored = await driver.reaches(wf, "Error")
    assert errored.infra_status == "Errored"
    assert errored.error == "Step 'process' failed: non-retryable error (FatalError, not retryable)"
    history = await driver.history(wf)
    assert history.count("StepScheduled") == 1 and history.count("StepAttemptFailed") == 1
    await driver.assert_consistent(wf)


async def test_a_job_slower_than_its_timeout_is_stopped_and_a_late_result_ignored(driver, js, topology, services):
    wf = first_id(
        lambda wf: (
            luck.processor_does("slow", job_id(wf, 2, 1))
            and luck.clean(job_id(wf, 2, 2))
            and not luck.processor_does("transient", job_id(wf, 2, 1))
            and not luck.processor_does("fatal", job_id(wf, 2, 1))
            and luck.output(job_id(wf, 2, 2)) > 0.25
        )
    )
    await start_approval(driver, wf, step_timeout_s=STEP_TIMEOUT_S)
    waiting = await driver.reaches(wf, "Waiting For Approval")
    assert waiting.output == luck.output(job_id(wf, 2, 2))  # the second try's result
    timed_out = next(e for e in await driver.events(wf) if e.type == "StepAttemptFailed")
    assert (timed_out.error_type, timed_out.job_id) == ("Timeout", job_id(wf, 2, 1))

    # The processor stopped the slow first try when the orchestrator gave it up: at the job's timeout_at ("timed
    # out"), or on the event that recorded the try as over, whichever it saw first ("abandoned"). It sent no result.
    # A worker that answers anyway (one that does not stop) has its result recorded as stale, changing nothing.
    log = services["processor"].log_path
    stopped = [f"job {job_id(wf, 2, 1)} of {wf}: {outcome}" for outcome in ("timed out", "abandoned")]
    await eventually(lambda: any(line in log.read_text() for line in stopped))
    first_try = job_id(wf, 2, 1)
    late = CompleteJob(workflow_id=wf, message_id=f"{first_try}-result", job_id=first_try, result={"output": 0.01})
    await js.publish(topology.results_subject(wf), late.model_dump_json().encode())
    await eventually(lambda: driver.has(wf, "CommandRejected"))
    rejected = (await driver.events(wf))[-1]
    assert rejected.code == "stale" and first_try in rejected.reason
    assert (await driver.state(wf)).output == waiting.output
    await driver.assert_consistent(wf)


async def test_a_deadline_that_passes_while_the_orchestrator_is_down_still_escalates(driver, services):
    wf = first_id(lambda wf: luck.clean(job_id(wf, 2, 1)) and luck.output(job_id(wf, 2, 1)) >= 0.05, prefix="exp")
    await driver.send(CreateWorkflow(workflow_id=wf, workflow_type="expense", input={"manager_deadline_s": 1.5}))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    waiting = await driver.reaches(wf, "Manager Approval")
    services["orchestrator"].stop(kill=True)
    await eventually(lambda: datetime.now(UTC) > waiting.deadline_at, timeout_s=10)

    services["start"]("orchestrator")
    escalated = await driver.reaches(wf, "Director Approval")
    assert escalated.infra_status == "Waiting For Event"
    assert (await driver.history(wf)).count("TransitionTaken:escalate") == 1
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="ann"))  # only the director may approve now
    await eventually(lambda: driver.has(wf, "CommandRejected"))
    assert "only director" in (await driver.events(wf))[-1].reason
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="director"))
    await driver.reaches(wf, "Finance Approval")
    await driver.assert_consistent(wf)


async def test_cancel_stops_a_waiting_workflow(driver):
    wf = first_id(lambda wf: luck.clean(job_id(wf, 2, 1)) and luck.output(job_id(wf, 2, 1)) > 0.25)
    await start_approval(driver, wf)
    await driver.reaches(wf, "Waiting For Approval")
    await driver.send(CancelWorkflow(workflow_id=wf, reason="no longer needed"))
    cancelled = await driver.reaches(wf, "Waiting For Approval", infra_status="Cancelled")
    assert cancelled.deadline_at is None
    await driver.send(ApproveWorkflow(workflow_id=wf))
    await eventually(lambda: driver.has(wf, "CommandRejected"))
    assert "it was cancelled" in (await driver.events(wf))[-1].reason
    await driver.assert_consistent(wf)


async def test_retry_from_error_runs_the_failed_step_again_with_its_recorded_context(driver):
    # The first output errors the workflow; the retry (Error was visit 3, so the step runs in visit 4) passes.
    wf = first_id(
        lambda wf: (
            luck.clean(job_id(wf, 2, 1))
            and luck.output(job_id(wf, 2, 1)) <= 0.25
            and luck.clean(job_id(wf, 4, 1))
            and luck.output(job_id(wf, 4, 1)) > 0.25
        )
    )
    await start_approval(driver, wf, note="keep me")
    await driver.reaches(wf, "Error")
    await driver.send(RetryWorkflow(workflow_id=wf))
    waiting = await driver.reaches(wf, "Waiting For Approval")
    assert waiting.output == luck.output(job_id(wf, 4, 1)) and waiting.attempt == 2
    assert waiting.context["input"] == {"note": "keep me"}
    assert "WorkflowRetried" in await driver.history(wf)
    await driver.assert_consistent(wf)


async def test_an_expense_runs_end_to_end_with_a_two_of_three_finance_quorum(driver):
    wf = first_id(
        lambda wf: all(luck.clean(job_id(wf, v, 1)) for v in (2, 5)) and luck.output(job_id(wf, 2, 1)) >= 0.05,
        prefix="exp",
    )
    await driver.send(
        CreateWorkflow(workflow_id=wf, workflow_type="expense", input={"amount": 120, "manager": "manager-max"})
    )
    await driver.send(ProcessWorkflow(workflow_id=wf))
    await driver.reaches(wf, "Manager Approval")
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="manager-max"))
    await driver.reaches(wf, "Finance Approval")
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="fin-ann"))
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="fin-ann"))  # counts once
    await driver.send(ApproveWorkflow(workflow_id=wf, approver="fin-bob"))
    paid = await driver.reaches(wf, "Paid")
    assert paid.infra_status == "Completed"
    assert set(paid.context) == {"input", "validate", "pay"}  # every step's result recorded
    history = await driver.history(wf)
    assert history.count("InputRecorded") == 1 and history.count("CommandRejected") == 1
    assert "counts once" in next(e for e in await driver.events(wf) if e.type == "CommandRejected").reason
    await driver.assert_consistent(wf)

    # A rejection at any approval stage ends it as Rejected, which is a completed workflow.
    other = first_id(lambda wf: luck.clean(job_id(wf, 2, 1)) and luck.output(job_id(wf, 2, 1)) >= 0.05, prefix="rej")
    await driver.send(CreateWorkflow(workflow_id=other, workflow_type="expense", input={"manager": "manager-max"}))
    await driver.send(ProcessWorkflow(workflow_id=other))
    await driver.reaches(other, "Manager Approval")
    await driver.send(RejectWorkflow(workflow_id=other, approver="manager-max", reason="too expensive"))
    rejected = await driver.reaches(other, "Rejected")
    assert rejected.infra_status == "Completed"


async def test_every_workflow_type_is_published_for_clients(driver, js, topology):
    expected = {name: declared.describe() for name, declared in WORKFLOW_TYPES.items()}

    async def every_type_published() -> dict[str, WorkflowTypeInfo] | None:
        published = await _published_types(js, topology)
        return published if set(published) >= set(expected) else None  # the orchestrator puts them one by one

    published = await eventually(every_type_published)
    assert published == expected
    assert {"approval", "expense"} <= set(published)


async def _published_types(js, topology) -> dict[str, WorkflowTypeInfo]:
    """The latest version of each type in the bucket (keys `<name>.<version>`)."""
    bucket = await js.key_value(topology.types_bucket)
    try:
        keys = await bucket.keys()
    except NoKeysError:
        return {}
    latest: dict[str, WorkflowTypeInfo] = {}
    for key in sorted(keys, key=lambda key: int(key.rsplit(".", 1)[1])):
        latest[key.rsplit(".", 1)[0]] = PublishedType.model_validate_json((await bucket.get(key)).value).info
    return latest
