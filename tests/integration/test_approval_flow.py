"""The approval flow through the real orchestrator and processor processes, over a real nats-server."""

from datetime import timedelta

import pytest

from contracts.commands import ApproveWorkflow, CreateWorkflow, ProcessWorkflow, RejectWorkflow
from contracts.definitions import StepState
from contracts.ids import job_id
from services.orchestrator.domain.declaration import delay_after
from services.orchestrator.domain.types import WORKFLOW_TYPES
from tests.conftest import eventually
from tests.integration.driving import SEED, Driver, Luck, first_id

pytestmark = pytest.mark.integration

SEND_FAILURE_RATE = 0.25
luck = Luck(SEED, SEND_FAILURE_RATE)
STEP = WORKFLOW_TYPES["approval"].states["Sending To Queue"]
assert isinstance(STEP, StepState)
RETRY = STEP.retry
MAX_TRIES = RETRY.max_tries


async def timers_scheduled(js, topology, workflow_id: str) -> int:
    """The workflow's timers the broker holds (each a schedule on its own subject in the commands stream)."""
    info = await js.stream_info(topology.commands_stream, subjects_filter=topology.timer_subject(workflow_id, "*"))
    return sum((info.state.subjects or {}).values())


def sending_visit(attempt: int) -> int:
    """Unprocessed is visit 1; each attempt enters Sending To Queue, then Waiting For Approval."""
    return 2 * attempt


def output(workflow_id: str, attempt: int, try_number: int = 1) -> float:
    return luck.output(job_id(workflow_id, sending_visit(attempt), try_number))


def approvable(workflow_id: str, attempts: int = 1) -> bool:
    """Every send of the first `attempts` rounds succeeds at once and every output asks for approval."""
    return all(
        not luck.send_fails(workflow_id, sending_visit(a), 1) and output(workflow_id, a) > 0.25
        for a in range(1, attempts + 1)
    )


@pytest.fixture
def system(nats_url, topology, start_service):
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": str(SEND_FAILURE_RATE)}
    return {name: start_service(name, nats_url, topology, **settings) for name in ("orchestrator", "processor")}


@pytest.fixture
def driver(js, topology, system) -> Driver:
    return Driver(js, topology)


async def test_an_approved_workflow_finishes(driver, js, topology):
    wf = first_id(approvable)
    await driver.send(CreateWorkflow(workflow_id=wf))
    created = await driver.reaches(wf, "Unprocessed")
    assert created.infra_status == "Waiting For Event"

    await driver.send(ProcessWorkflow(workflow_id=wf))
    waiting = await driver.reaches(wf, "Waiting For Approval")
    assert waiting.infra_status == "Waiting For Event"
    assert waiting.output == output(wf, 1) > 0.25
    assert waiting.context["process"] == {"output": waiting.output}  # the step's recorded result
    # The job answered in time: its timeout is withdrawn rather than left to fire later as a command doing nothing.
    assert await timers_scheduled(js, topology, wf) == 0

    await driver.send(ApproveWorkflow(workflow_id=wf, approver="ann"))
    finished = await driver.reaches(wf, "Finished")
    assert finished.infra_status == "Completed"
    assert await driver.history(wf) == [
        "WorkflowCreated",
        "WorkflowStarted",
        "TransitionTaken:process",
        "StepScheduled",
        "StepCompleted",
        "TransitionTaken:request_approval",
        "TransitionTaken:approve",
    ]
    approved = (await driver.events(wf))[-1]
    assert approved.actor == "ann"
    await driver.assert_consistent(wf)


async def test_a_rejected_workflow_is_processed_again_until_approved(driver):
    wf = first_id(lambda wf: approvable(wf, attempts=3))
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    for attempt in (1, 2):
        waiting = await driver.reaches(wf, "Waiting For Approval", attempt=attempt)
        assert waiting.output == output(wf, attempt)
        await driver.send(RejectWorkflow(workflow_id=wf, approver="bob", reason=f"not good enough #{attempt}"))
    waiting = await driver.reaches(wf, "Waiting For Approval", attempt=3)
    assert waiting.output == output(wf, 3)
    await driver.send(ApproveWorkflow(workflow_id=wf))
    await driver.reaches(wf, "Finished", attempt=3)
    history = await driver.history(wf)
    assert history.count("TransitionTaken:reject") == 2 and history.count("StepScheduled") == 3
    jobs = [event.job_id for event in await driver.events(wf) if event.type == "StepScheduled"]
    assert jobs == [job_id(wf, sending_visit(a), 1) for a in (1, 2, 3)]
    await driver.assert_consistent(wf)


async def test_an_output_not_above_the_threshold_errors(driver):
    wf = first_id(lambda wf: not luck.send_fails(wf, 2, 1) and output(wf, 1) <= 0.25)
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    errored = await driver.reaches(wf, "Error")
    assert errored.infra_status == "Errored"
    assert errored.error == f"Output {output(wf, 1)} is not above 0.25"
    await driver.send(ApproveWorkflow(workflow_id=wf))  # a final state accepts nothing more
    await eventually(lambda: driver.has(wf, "CommandRejected"))
    rejection = (await driver.events(wf))[-1]
    assert rejection.code == "not_allowed" and "it is final" in rejection.reason
    await driver.assert_consistent(wf)


async def test_failed_sends_are_retried_after_the_backoff_then_succeed(driver):
    wf = first_id(lambda wf: luck.send_fails(wf, 2, 1) and luck.send_fails(wf, 2, 2) and not luck.send_fails(wf, 2, 3))
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    await eventually(lambda: driver.has(wf, "StepScheduled"))
    log = await driver.events(wf)
    failures = [event for event in log if event.type == "StepAttemptFailed"]
    scheduled = next(event for event in log if event.type == "StepScheduled")
    assert [(f.try_number, f.error_type) for f in failures] == [(1, "SendError"), (2, "SendError")]
    assert scheduled.try_number == 3 and scheduled.job_id == job_id(wf, 2, 3)
    first_delay, second_delay = delay_after(RETRY, 1), delay_after(RETRY, 2)
    assert first_delay is not None and second_delay is not None
    assert failures[0].retry_at - failures[0].occurred_at == timedelta(seconds=first_delay)
    assert failures[1].retry_at - failures[1].occurred_at == timedelta(seconds=second_delay)
    # Each retry ran when its durable timer fired, not before.
    assert failures[1].occurred_at >= failures[0].retry_at and scheduled.occurred_at >= failures[1].retry_at
    await driver.assert_consistent(wf)


async def test_a_send_failing_every_try_errors_the_workflow(driver):
    wf = first_id(lambda wf: all(luck.send_fails(wf, 2, t) for t in range(1, MAX_TRIES + 1)))
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    errored = await driver.reaches(wf, "Error")
    assert errored.infra_status == "Errored"
    assert errored.error == f"Step 'process' failed: could not send the job to the queue (after {MAX_TRIES} tries)"
    history = await driver.history(wf)
    assert history.count("StepAttemptFailed") == MAX_TRIES and "StepFailed" in history
    await driver.assert_consistent(wf)


async def test_a_command_delivered_twice_is_applied_once(driver):
    wf = first_id(lambda wf: approvable(wf, attempts=2))
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    await driver.reaches(wf, "Waiting For Approval")
    reject = RejectWorkflow(workflow_id=wf, approver="bob")
    # Without Nats-Msg-Id the broker stores every copy; the orchestrator must still apply it once.
    await driver.send(reject, dedup=False)
    await driver.send(reject, dedup=False)
    await driver.send(reject)
    await driver.reaches(wf, "Waiting For Approval", attempt=2)
    await driver.send(ApproveWorkflow(workflow_id=wf))  # commands are handled in order: every copy came before it
    await driver.reaches(wf, "Finished")
    events = await driver.events(wf)
    assert [e for e in events if e.causation_id == reject.message_id][0].type == "TransitionTaken"
    assert sum(1 for e in events if e.causation_id == reject.message_id) == 2  # the transition + its step's job
    assert not [e for e in events if e.type == "CommandRejected"]
    await driver.assert_consistent(wf)


async def test_the_workflow_continues_from_its_log_after_the_orchestrator_is_killed(
    driver, system, nats_url, topology, start_service
):
    # Its first send fails, so a durable retry timer is pending when the orchestrator dies.
    wf = first_id(lambda wf: luck.send_fails(wf, 2, 1) and not luck.send_fails(wf, 2, 2) and output(wf, 1, 2) > 0.25)
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.send(ProcessWorkflow(workflow_id=wf))
    await eventually(lambda: driver.has(wf, "StepAttemptFailed"))
    system["orchestrator"].stop(kill=True)

    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": str(SEND_FAILURE_RATE)}
    start_service("orchestrator", nats_url, topology, **settings)
    await driver.reaches(wf, "Waiting For Approval")
    await driver.send(ApproveWorkflow(workflow_id=wf))
    await driver.reaches(wf, "Finished")
    history = await driver.history(wf)
    assert history.count("StepAttemptFailed") == 1 and history.count("StepScheduled") == 1  # retried exactly once
    await driver.assert_consistent(wf)


@pytest.mark.malformed_messages
async def test_an_unreadable_command_is_dead_lettered_and_rejected_in_the_log(driver, js, topology):
    wf = first_id(approvable)
    await driver.send(CreateWorkflow(workflow_id=wf))
    await driver.reaches(wf, "Unprocessed")
    await js.publish(topology.commands_subject(wf), b'{"kind": "approve", "message_id": "m-1", "workflow_id": 7}')

    await eventually(lambda: driver.has(wf, "CommandRejected"))
    rejection = (await driver.events(wf))[-1]
    assert (rejection.command_id, rejection.command_kind, rejection.code) == ("m-1", "approve", "invalid")
    assert "workflow_id" in rejection.reason
    dead = await js.get_last_msg(topology.dead_stream, topology.dead_subject("commands"))
    assert dead.data.startswith(b'{"kind": "approve"') and "workflow_id" in dead.headers["Wf-Error"]
    await driver.assert_consistent(wf)
