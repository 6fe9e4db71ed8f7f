"""How a worker of the worker library (worker/) takes one job: run its step's handler, answer once, ack; an unreadable
job dead-lettered; an answer that cannot be sent leaves the job for redelivery; a stop gives the job back. The processor
is such a worker, its simulator the handler."""

import asyncio
import json

import pytest
from nats.js.api import RawStreamMsg
from pydantic import BaseModel
from wfworker import Job, NonRetryableError, Worker

from contracts.commands import CompleteJob, FailJob
from contracts.jobs import ProcessJob
from contracts.topology import Topology
from services.processor.settings import ProcessorSettings
from services.processor.simulator import Simulator

TOPOLOGY = Topology()
JOB = ProcessJob(
    workflow_id="wf-1", message_id="job-1", job_id="job-1", workflow_type="approval", step="process", attempt=1,
    try_number=1, correlation_id="corr-1", context={"input": {"amount": 12.5}},
)  # fmt: skip


class Message:
    def __init__(self, data: bytes) -> None:
        self.data, self.subject = data, TOPOLOGY.jobs_subject("approval", "process")
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nak(self) -> None:
        self.settled.append("nak")

    async def in_progress(self) -> None:
        self.settled.append("in progress")


class Subscription:
    async def unsubscribe(self) -> None:
        pass


class Nats:
    """What a worker uses of a connection: publishing through JetStream, and a workflow's events."""

    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.published: list[tuple[str, bytes, dict]] = []
        self.watched: list[str] = []

    def jetstream(self) -> "Nats":
        return self

    async def publish(self, subject: str, data: bytes, headers: dict) -> None:
        if self.fails:
            raise self.fails
        self.published.append((subject, data, headers))

    async def subscribe(self, subject: str, cb) -> Subscription:
        self.watched.append(subject)
        return Subscription()

    async def get_last_msg(self, stream: str, subject: str, direct: bool) -> RawStreamMsg:
        """The workflow's last event: an ordinary one (the integration tests read real logs)."""
        return RawStreamMsg(subject=subject, data=json.dumps({"type": "StepStarted"}).encode())


def simulated(**rates: float) -> Worker:
    worker = Worker("nats://unused")
    worker.add_step("approval", "process", Simulator(ProcessorSettings.model_validate({"WF_SEED": 7, **rates})).run)
    return worker


def take(worker: Worker, nats: Nats, body: bytes) -> Message:
    message = Message(body)
    asyncio.run(worker._take(nats, message))  # type: ignore[arg-type]
    return message


def test_a_job_is_answered_with_one_result_on_its_results_subject_and_acked():
    nats, worker = Nats(), simulated()
    message = take(worker, nats, JOB.model_dump_json().encode())
    [(subject, data, headers)] = nats.published
    result = CompleteJob.model_validate_json(data)  # what the orchestrator reads
    assert subject == TOPOLOGY.results_subject("wf-1")
    assert 0 <= result.result["output"] < 1 and result.causation_id == "job-1" and result.correlation_id == "corr-1"
    # The same id however often the job runs: the broker keeps one result.
    assert headers == {"Nats-Msg-Id": "job-1-result"} == {"Nats-Msg-Id": result.message_id}
    assert message.settled == ["ack"] and nats.watched == [TOPOLOGY.events_subject("wf-1")]
    assert worker.metrics.jobs.labels(step="process", outcome="completed")._value.get() == 1


@pytest.mark.parametrize(
    ("rates", "error_type", "retryable"),
    [({"WF_PROCESSOR_TRANSIENT_ERROR_RATE": 1.0}, "TransientError", True), ({"WF_PROCESSOR_FATAL_ERROR_RATE": 1.0}, "FatalError", False)],
)  # fmt: skip
def test_a_failing_run_is_reported_as_a_failed_job(rates, error_type, retryable):
    nats = Nats()
    message = take(simulated(**rates), nats, JOB.model_dump_json().encode())
    [(_, data, _)] = nats.published
    failed = FailJob.model_validate_json(data)
    assert (failed.error_type, failed.retryable, failed.job_id) == (error_type, retryable, "job-1")
    assert message.settled == ["ack"]


class Expense(BaseModel):
    amount: float


class Payment(BaseModel):
    payment_id: str
    amount: float


def test_a_handler_gets_its_input_typed_and_its_result_is_sent_as_the_models_json():
    worker, nats, seen = Worker("nats://unused"), Nats(), []

    @worker.step("approval", "process")
    async def pay(job: Job[Expense]) -> Payment:
        seen.append(job)
        return Payment(payment_id=f"pay-{job.idempotency_key}", amount=job.input.amount)

    take(worker, nats, JOB.model_dump_json().encode())
    [job] = seen
    assert isinstance(job.input, Expense) and job.input.amount == 12.5 and job.idempotency_key == "wf-1:process:1"
    [(_, data, _)] = nats.published
    assert CompleteJob.model_validate_json(data).result == {"payment_id": "pay-wf-1:process:1", "amount": 12.5}


def test_an_input_its_handler_cannot_read_fails_the_step_for_good_with_why():
    worker, nats = Worker("nats://unused"), Nats()

    @worker.step("approval", "process")
    async def pay(job: Job[Payment]) -> Payment:
        raise AssertionError("never run")

    take(worker, nats, JOB.model_dump_json().encode())
    [(_, data, _)] = nats.published
    failed = FailJob.model_validate_json(data)
    assert failed.error_type == "InvalidInput" and not failed.retryable and "payment_id" in failed.error


def test_a_non_retryable_error_of_a_handler_says_so_and_names_its_class():
    worker, nats = Worker("nats://unused"), Nats()

    class CardDeclined(NonRetryableError):
        pass

    @worker.step("approval", "process")
    async def pay(job: Job[dict]) -> dict:
        raise CardDeclined("the card was declined")

    take(worker, nats, JOB.model_dump_json().encode())
    failed = FailJob.model_validate_json(nats.published[0][1])
    assert (failed.error_type, failed.retryable, failed.error) == ("CardDeclined", False, "the card was declined")


def test_a_result_larger_than_the_orchestrator_takes_fails_the_step_instead():
    worker, nats = Worker("nats://unused"), Nats()

    @worker.step("approval", "process")
    async def big(job: Job[dict]) -> dict:
        return {"blob": "x" * 20_000}

    take(worker, nats, JOB.model_dump_json().encode())
    failed = FailJob.model_validate_json(nats.published[0][1])
    assert failed.error_type == "ResultTooLarge" and not failed.retryable


def test_an_unreadable_job_is_dead_lettered_with_why_and_acked():
    nats, worker = Nats(), simulated()
    message = take(worker, nats, b'{"kind": "process_job"}')
    [(subject, data, headers)] = nats.published
    assert subject == TOPOLOGY.dead_subject("jobs") and data == b'{"kind": "process_job"}'
    assert "job_id" in headers["Wf-Error"] and headers["Wf-Subject"] == message.subject
    assert message.settled == ["ack"] and worker.metrics.dead_letters._value.get() == 1


def test_an_answer_that_cannot_be_sent_leaves_the_job_unsettled_for_redelivery():
    worker = simulated()
    message = take(worker, Nats(fails=ConnectionError("broker gone")), JOB.model_dump_json().encode())
    assert message.settled == []
    assert worker.metrics.errors.labels(step="process", error="ConnectionError")._value.get() == 1


def test_a_job_stopped_before_it_finished_is_given_back_and_its_handler_cancelled():
    worker, nats, message, cancelled = Worker("nats://unused"), Nats(), Message(JOB.model_dump_json().encode()), []

    @worker.step("approval", "process")
    async def slow(job: Job[dict]) -> dict:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(job.id)
            raise
        return {}

    async def stopped() -> None:
        taking = asyncio.create_task(worker._take(nats, message))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking

    asyncio.run(stopped())
    assert message.settled == ["nak"] and nats.published == [] and cancelled == ["job-1"]


def test_a_job_delivered_after_its_try_timed_out_is_not_run():
    worker, nats, ran = Worker("nats://unused"), Nats(), []

    @worker.step("approval", "process")
    async def run(job: Job[dict]) -> dict:
        ran.append(job.id)
        return {}

    late = JOB.model_copy(update={"timeout_at": JOB.occurred_at})
    message = take(worker, nats, late.model_dump_json().encode())
    assert ran == [] and nats.published == [] and message.settled == ["ack"]
    assert worker.metrics.jobs.labels(step="process", outcome="abandoned")._value.get() == 1


def test_two_handlers_for_one_step_are_refused():
    worker = simulated()
    with pytest.raises(ValueError, match="approval.process has a handler already"):
        worker.add_step("approval", "process", Simulator(ProcessorSettings()).run)


def test_the_library_speaks_the_contracts_job_protocol():
    """The worker library cannot import the contracts (it installs on its own): its copy of the protocol's numbers and
    names must be theirs."""
    from wfworker import protocol

    from contracts.commands import MAX_RESULT_BYTES
    from contracts.topology import JOB_ACK_WAIT_S, JOB_HEARTBEAT_S
    from runtime.settings import LIVENESS

    assert (protocol.ACK_WAIT_S, protocol.HEARTBEAT_S) == (JOB_ACK_WAIT_S, JOB_HEARTBEAT_S)
    assert protocol.RESULT_MAX_BYTES == MAX_RESULT_BYTES
    assert protocol.LIVENESS == LIVENESS  # a worker gives up a silent server as soon as the services do
    assert protocol.MAX_DELIVER == TOPOLOGY.processor_consumer().max_deliver
    assert protocol.jobs_subject("wf", "expense", "pay") == TOPOLOGY.jobs_subject("expense", "pay")
    assert protocol.results_subject("wf", "w-1") == TOPOLOGY.results_subject("w-1")
    assert protocol.events_subject("wf", "w-1") == TOPOLOGY.events_subject("w-1")
    assert protocol.dead_jobs_subject("wf") == TOPOLOGY.dead_subject("jobs")
    assert protocol.jobs_stream("wf") == TOPOLOGY.jobs_stream
    assert set(protocol.JobMessage.model_fields) == set(ProcessJob.model_fields) - {
        "kind",
        "schema_version",
        "occurred_at",
        "causation_id",
    }
