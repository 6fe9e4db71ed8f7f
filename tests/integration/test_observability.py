"""Metrics and logs a person watching the system relies on."""

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
import websockets
from nats.js.errors import NotFoundError

from contracts.commands import ApproveWorkflow, CreateWorkflow, ProcessWorkflow
from contracts.ids import job_id
from contracts.jobs import ProcessJob
from services.launcher.nats_server import free_port
from tests.conftest import TEST_TOKENS, bearer, eventually
from tests.integration.driving import SEED, Driver, Luck, first_id

pytestmark = pytest.mark.integration

luck = Luck(SEED, send_failure_rate=0.0)


def scrape(port: int) -> dict[str, float]:
    """Prometheus' text format as {'name{labels}': value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


async def test_services_count_their_work_and_log_it_with_the_workflows_correlation_id(
    nats_url, topology, start_service, js
):
    ports = {"orchestrator": free_port(), "processor": free_port()}
    env = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    orchestrator = start_service(
        "orchestrator", nats_url, topology, WF_ORCHESTRATOR_PORT=str(ports["orchestrator"]), **env
    )
    processor = start_service("processor", nats_url, topology, WF_PROCESSOR_PORT=str(ports["processor"]), **env)
    driver = Driver(js, topology)
    wf = first_id(lambda wf: luck.output(job_id(wf, 2, 1)) > 0.25)
    process = ProcessWorkflow(workflow_id=wf)
    for command in (CreateWorkflow(workflow_id=wf), process):
        await driver.send(command)
    await driver.reaches(wf, "Waiting For Approval")
    await driver.send(ApproveWorkflow(workflow_id=wf))
    await driver.send(ApproveWorkflow(workflow_id=wf))  # refused: it has finished
    await driver.reaches(wf, "Finished")

    async def counted():
        metrics = scrape(ports["orchestrator"])
        return metrics if metrics.get('wf_commands_total{kind="approve",outcome="rejected"}') == 1 else None

    orchestrator_metrics = await eventually(counted)
    assert orchestrator_metrics['wf_commands_total{kind="approve",outcome="applied"}'] == 1
    assert orchestrator_metrics['wf_events_appended_total{type="StepScheduled"}'] == 1
    assert orchestrator_metrics['wf_step_tries_total{outcome="scheduled",step="process"}'] == 1
    assert orchestrator_metrics["wf_command_seconds_count"] >= 5
    processor_metrics = scrape(ports["processor"])
    assert processor_metrics['wf_jobs_total{outcome="completed",step="process"}'] == 1
    assert httpx.get(f"http://127.0.0.1:{ports['processor']}/healthz").status_code == 204

    # One workflow followed across services: the process command's correlation id is on the lines of both the
    # orchestrator (the command, the job's result) and the processor (the job it caused).
    assert orchestrator.stop() == 0 and processor.stop() == 0  # SIGTERM: clean stops
    for service, expected in ((orchestrator, {"process", "complete_job"}), (processor, {"job"})):
        lines = [json.loads(line) for line in service.log_path.read_text().splitlines() if line.strip()]  # all JSON
        traced = {line["message"].split(" ")[0] for line in lines if line.get("correlation_id") == process.message_id}
        assert traced == expected, (service.name, traced)


@pytest.fixture
async def lone_processor(nats_url, topology, start_service, js) -> int:
    """A processor pulling jobs and serving its metrics, with no orchestrator: its HTTP port."""
    port = free_port()
    start_service("processor", nats_url, topology, WF_PROCESSOR_PORT=str(port))

    async def pulling() -> bool:
        try:
            return bool((await js.consumer_info(topology.jobs_stream, "processor")).num_waiting)
        except NotFoundError:
            return False

    def serving() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 204
        except httpx.TransportError:
            return False

    await eventually(pulling)
    await eventually(serving)
    return port


@pytest.mark.malformed_messages
async def test_the_processor_dead_letters_a_job_it_cannot_read_and_counts_it(lone_processor, topology, js):
    # Nested deeper than a JSON parser goes, under a JSON content type: FastStream's own decoding raised on it.
    body = b"[" * 10_000 + b"]" * 10_000
    subject = topology.jobs_subject("approval", "process")
    await js.publish(subject, body, headers={"content-type": "application/json"})

    async def dead_letter():
        try:
            return await js.get_last_msg(topology.dead_stream, topology.dead_subject("jobs"))
        except NotFoundError:
            return None

    dead = await eventually(dead_letter)
    assert dead.data == body and dead.headers["Wf-Subject"] == subject and "recursion" in dead.headers["Wf-Error"]
    assert await eventually(lambda: scrape(lone_processor).get("wf_dead_letters_total")) == 1

    async def settled() -> bool:  # acked: not delivered again
        info = await js.consumer_info(topology.jobs_stream, "processor")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(settled)


async def test_the_processor_counts_a_run_that_could_not_send_its_result(lone_processor, topology, js):
    await js.delete_stream(topology.commands_stream)  # where results go: now nothing answers their publish
    job = ProcessJob(
        workflow_id="wf-1", job_id="wf-1-2-1", workflow_type="approval", step="process", attempt=1, try_number=1
    )
    await js.publish(topology.jobs_subject("approval", "process"), job.model_dump_json().encode())

    def counted() -> float:  # by the error: no responders, or a timeout while something else listens on the subject
        metrics = scrape(lone_processor).items()
        return sum(value for name, value in metrics if name.startswith("wf_job_errors_total{") and "process" in name)

    assert await eventually(counted) >= 1


def catches_sigterm(pid: int) -> bool:
    """The process has its own SIGTERM handler (the kernel's SigCgt mask has signal 15's bit)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("name", ["api", "orchestrator", "processor", "broadcaster"])
async def test_a_service_stopped_while_it_is_still_starting_exits_cleanly(name, nats_url, topology, start_service):
    # Stopped as soon as it can be: during its slow imports and connecting, before it serves (what Ctrl-C on
    # `make run` does to a service that is still starting).
    service = start_service(name, nats_url, topology, WF_API_PORT="0", WF_BROADCASTER_PORT="0")
    await eventually(lambda: catches_sigterm(service.process.pid), timeout_s=10, interval_s=0.001)
    assert service.stop() == 0


async def test_the_api_and_the_broadcaster_write_nothing_but_json_lines(nats_url, topology, start_service):
    ports = {"WF_API_PORT": str(free_port()), "WF_BROADCASTER_PORT": str(free_port())}
    start_service("orchestrator", nats_url, topology)  # makes the streams the other two wait for
    services = [start_service(name, nats_url, topology, **ports) for name in ("api", "broadcaster")]
    api, broadcaster = (f"http://127.0.0.1:{ports[name]}" for name in ("WF_API_PORT", "WF_BROADCASTER_PORT"))

    async def healthy() -> bool:
        async with httpx.AsyncClient() as client:
            try:
                answers = [await client.get(f"{url}/healthz") for url in (api, broadcaster)]
            except httpx.TransportError:
                return False
        return all(answer.status_code == 200 for answer in answers)

    await eventually(healthy, timeout_s=60)
    async with httpx.AsyncClient(base_url=api, headers=bearer()) as client:
        assert (await client.get("/workflows/nobody")).status_code == 404  # a request the access log records
        assert (await client.post("/workflows", content=b"{not json")).status_code == 400
    token = TEST_TOKENS["admin"]
    async with websockets.connect(f"{broadcaster.replace('http', 'ws')}/ws?since=0&token={token}") as socket:
        await asyncio.wait_for(socket.recv(), 5)

    lines: list[dict] = []
    for service in services:
        assert service.stop() == 0
        written = [line for line in service.log_path.read_text().splitlines() if line.strip()]
        lines = [json.loads(line) for line in written]  # fails on the first line that is not JSON
        assert {line["service"] for line in lines} == {service.name}, service.name
        assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines), service.name
        assert token not in "\n".join(written)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # its libraries' lines too
