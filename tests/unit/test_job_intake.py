"""The processor's job intake: a job is run and answered with one result, or dead-lettered when unreadable."""

import asyncio
import json
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from contracts.jobs import ProcessJob
from contracts.topology import Topology
from services.processor.jobs import JobIntake, ProcessorMetrics, Simulator
from services.processor.settings import ProcessorSettings

TOPOLOGY = Topology()
JOB = ProcessJob(
    workflow_id="wf-1", message_id="job-1", job_id="job-1", workflow_type="approval", step="process", attempt=1,
    try_number=1, correlation_id="corr-1",
)  # fmt: skip


class Message:
    def __init__(self) -> None:
        self.raw_message = SimpleNamespace(subject=TOPOLOGY.jobs_subject())
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self) -> None:
        self.settled.append("nack")

    async def in_progress(self) -> None:
        self.settled.append("in progress")


class JetStream:
    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.published: list[tuple[str, bytes, dict]] = []

    async def publish(self, subject: str, data: bytes, headers: dict) -> None:
        if self.fails:
            raise self.fails
        self.published.append((subject, data, headers))


def take(js: JetStream, body: bytes, **rates: float) -> tuple[Message, ProcessorMetrics]:
    settings = ProcessorSettings.model_validate({"WF_SEED": 7, **rates})
    metrics = ProcessorMetrics(CollectorRegistry())
    message = Message()
    asyncio.run(JobIntake(TOPOLOGY, Simulator(settings), metrics).take(js, body, message))  # type: ignore[arg-type]
    return message, metrics


def test_a_job_is_answered_with_one_result_on_its_results_subject_and_acked():
    js = JetStream()
    message, metrics = take(js, JOB.model_dump_json().encode())
    [(subject, data, headers)] = js.published
    result = json.loads(data)
    assert subject == TOPOLOGY.results_subject("wf-1") and result["kind"] == "complete_job"
    assert 0 <= result["output"] < 1 and result["causation_id"] == "job-1" and result["correlation_id"] == "corr-1"
    # The same id however often the job runs: the broker keeps one result.
    assert headers == {"Nats-Msg-Id": "job-1-result"} == {"Nats-Msg-Id": result["message_id"]}
    assert message.settled == ["ack"]
    assert metrics.jobs.labels(step="process", outcome="completed")._value.get() == 1


@pytest.mark.parametrize(
    ("rates", "error_type", "retryable"),
    [({"WF_PROCESSOR_TRANSIENT_ERROR_RATE": 1.0}, "TransientError", True), ({"WF_PROCESSOR_FATAL_ERROR_RATE": 1.0}, "FatalError", False)],
)  # fmt: skip
def test_a_failing_run_is_reported_as_a_failed_job(rates, error_type, retryable):
    js = JetStream()
    message, _ = take(js, JOB.model_dump_json().encode(), **rates)
    [(_, data, _)] = js.published
    assert json.loads(data) | {"kind": "fail_job", "error_type": error_type, "retryable": retryable} == json.loads(data)
    assert message.settled == ["ack"]


def test_an_unreadable_job_is_dead_lettered_with_why_and_acked():
    js = JetStream()
    message, metrics = take(js, b'{"kind": "process_job"}')
    [(subject, data, headers)] = js.published
    assert subject == TOPOLOGY.dead_subject("jobs") and data == b'{"kind": "process_job"}'
    assert "job_id" in headers["Wf-Error"] and headers["Wf-Subject"] == TOPOLOGY.jobs_subject()
    assert message.settled == ["ack"] and metrics.dead_letters._value.get() == 1


def test_a_result_that_cannot_be_sent_leaves_the_job_unsettled_for_redelivery():
    js = JetStream(fails=ConnectionError("broker gone"))
    metrics = ProcessorMetrics(CollectorRegistry())
    message = Message()
    intake = JobIntake(TOPOLOGY, Simulator(ProcessorSettings()), metrics)
    with pytest.raises(ConnectionError):
        asyncio.run(intake.take(js, JOB.model_dump_json().encode(), message))  # type: ignore[arg-type]
    assert message.settled == [] and metrics.errors.labels(step="process", error="ConnectionError")._value.get() == 1


def test_a_job_stopped_before_it_finished_is_given_back():
    js, message = JetStream(), Message()
    settings = ProcessorSettings(WF_PROCESSOR_SLOW_RATE=1.0, WF_PROCESSOR_SLOW_S=60)  # a run that outlasts the stop
    intake = JobIntake(TOPOLOGY, Simulator(settings), ProcessorMetrics(CollectorRegistry()))

    async def stopped() -> None:
        taking = asyncio.create_task(intake.take(js, JOB.model_dump_json().encode(), message))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        taking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taking

    asyncio.run(stopped())
    assert message.settled == ["nack"] and js.published == []
