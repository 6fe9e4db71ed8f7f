"""Metrics and logs a person watching the system relies on."""

import json
import signal
from pathlib import Path

import httpx
import pytest

from contracts.commands import ApproveWorkflow, CreateWorkflow, ProcessWorkflow
from contracts.ids import job_id
from services.launcher.nats_server import free_port
from tests.conftest import eventually
from tests.integration.driving import SEED, Driver, Luck, first_id

pytestmark = pytest.mark.integration

luck = Luck(SEED, send_failure_rate=0.0)


def scrape(port: int) -> dict[str, float]:
    """Prometheus' text format as {'name{labels}': value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


async def test_services_count_their_work_and_log_it_with_the_workflows_correlation_id(nats_url, topology, start_service, js):
    ports = {"orchestrator": free_port(), "processor": free_port()}
    env = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    orchestrator = start_service("orchestrator", nats_url, topology, WF_ORCHESTRATOR_PORT=str(ports["orchestrator"]), **env)
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
        lines = [json.loads(line) for line in service.log_path.read_text().splitlines() if line.startswith("{")]
        traced = {line["message"].split(" ")[0] for line in lines if line["correlation_id"] == process.message_id}
        assert traced == expected, (service.name, traced)


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
