"""The worker library (worker/) against a real nats-server and orchestrator: a handler is stopped when its try times
out or its workflow is cancelled, every try of one entry into a step has the same idempotency key, no more jobs run at
once than the worker's concurrency, and a step one worker takes is refused to another."""

import asyncio
from collections.abc import Callable

import nats
import pytest
from wfworker import Job, StepNotFree, Worker, protocol

from contracts.commands import CancelWorkflow, CreateWorkflow, ProcessWorkflow
from tests.conftest import eventually
from tests.integration.driving import Driver, taking_jobs

pytestmark = pytest.mark.integration


@pytest.fixture
def driver(nats_url, topology, js, start_service) -> Driver:
    start_service("orchestrator", nats_url, topology, WF_SEND_FAILURE_RATE="0")  # no processor: the test's worker
    return Driver(js, topology)


def a_worker(nats_url: str, topology, handler: Callable, **options) -> Worker:
    worker = Worker(nats_url, prefix=topology.prefix, name="test-worker", **options)
    worker.add_step("approval", "process", handler)
    return worker


async def test_a_try_that_times_out_is_stopped_and_the_next_try_keeps_the_idempotency_key(nats_url, topology, driver):
    tries: list[tuple[int, str, str]] = []

    async def slow_then_quick(job: Job[dict]) -> dict:
        try:
            if job.try_number == 1:
                await asyncio.sleep(60)
        except asyncio.CancelledError:
            tries.append((job.try_number, job.idempotency_key, "stopped"))
            raise
        tries.append((job.try_number, job.idempotency_key, "answered"))
        return {"output": 0.9}

    async with taking_jobs(a_worker(nats_url, topology, slow_then_quick)):
        create = CreateWorkflow(workflow_id="timed", workflow_type="approval", input={"step_timeout_s": 1})
        await driver.send(create)
        await driver.send(ProcessWorkflow(workflow_id="timed"))
        await driver.reaches("timed", "Waiting For Approval", timeout_s=20)
    assert tries == [(1, "timed:process:1", "stopped"), (2, "timed:process:1", "answered")]


async def test_a_job_whose_workflow_is_cancelled_is_stopped(nats_url, topology, driver):
    started, stopped = asyncio.Event(), asyncio.Event()

    async def endless(job: Job[dict]) -> dict:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return {"output": 0.9}

    async with taking_jobs(a_worker(nats_url, topology, endless)) as worker:
        await driver.send(CreateWorkflow(workflow_id="cancelled", workflow_type="approval"))
        await driver.send(ProcessWorkflow(workflow_id="cancelled"))
        await asyncio.wait_for(started.wait(), 20)
        await driver.send(CancelWorkflow(workflow_id="cancelled", reason="no longer needed"))
        await asyncio.wait_for(stopped.wait(), 10)
        await eventually(lambda: worker.metrics.jobs.labels(step="process", outcome="abandoned")._value.get() == 1)
    assert (await driver.history("cancelled"))[-1] == "WorkflowCancelled"  # and nothing after it: no result


async def test_a_job_whose_workflow_was_cancelled_while_it_waited_in_the_queue_is_not_run(nats_url, topology, driver):
    ran: list[str] = []

    async def recorded(job: Job[dict]) -> dict:
        ran.append(job.workflow_id)
        return {"output": 0.9}

    await driver.send(CreateWorkflow(workflow_id="queued", workflow_type="approval"))
    await driver.send(ProcessWorkflow(workflow_id="queued"))
    await driver.reaches("queued", "Sending To Queue")  # its job waits: no worker takes the step yet
    await driver.send(CancelWorkflow(workflow_id="queued", reason="no longer needed"))
    await eventually(lambda: driver.has("queued", "WorkflowCancelled"))
    async with taking_jobs(a_worker(nats_url, topology, recorded)) as worker:
        await eventually(lambda: worker.metrics.jobs.labels(step="process", outcome="abandoned")._value.get() == 1)
    assert ran == []
    assert (await driver.history("queued"))[-1] == "WorkflowCancelled"


async def test_no_more_jobs_run_at_once_than_the_workers_concurrency(nats_url, topology, driver):
    running_now, most, gate = [0], [0], asyncio.Event()

    async def counted(job: Job[dict]) -> dict:
        running_now[0] += 1
        most[0] = max(most[0], running_now[0])
        await gate.wait()
        running_now[0] -= 1
        return {"output": 0.9}

    ids = [f"busy-{n}" for n in range(5)]
    async with taking_jobs(a_worker(nats_url, topology, counted, concurrency=2)):
        for workflow_id in ids:
            await driver.send(CreateWorkflow(workflow_id=workflow_id, workflow_type="approval"))
            await driver.send(ProcessWorkflow(workflow_id=workflow_id))
        await eventually(lambda: running_now[0] == 2)
        await asyncio.sleep(1.0)  # time for a third to start, were it allowed
        assert most[0] == 2
        gate.set()
        for workflow_id in ids:
            await driver.reaches(workflow_id, "Waiting For Approval")
    assert most[0] == 2


async def test_a_step_another_worker_takes_is_refused_with_the_reason(nats_url, topology, driver):
    async def answer(job: Job[dict]) -> dict:
        return {"output": 0.9}

    async with taking_jobs(a_worker(nats_url, topology, answer)):
        other = Worker(nats_url, prefix=topology.prefix, name="other-worker")
        other.add_step("approval", "process", answer)
        nc = await nats.connect(nats_url)
        try:
            with pytest.raises(StepNotFree, match="another worker takes one of"):
                await other.serve(nc)
        finally:
            await nc.drain()


async def test_a_job_longer_than_the_ack_wait_stays_with_its_worker(nats_url, topology, js, driver):
    runs: list[str] = []

    async def long(job: Job[dict]) -> dict:
        runs.append(job.id)
        await asyncio.sleep(protocol.ACK_WAIT_S + 2)  # its heartbeats keep it from being handed out again
        return {"output": 0.9}

    async with taking_jobs(a_worker(nats_url, topology, long)):
        await driver.send(CreateWorkflow(workflow_id="long", workflow_type="approval", input={"step_timeout_s": 30}))
        await driver.send(ProcessWorkflow(workflow_id="long"))
        await driver.reaches("long", "Waiting For Approval", timeout_s=30)
        assert (await js.consumer_info(topology.jobs_stream, "test-worker")).num_redelivered == 0
    assert len(runs) == 1
