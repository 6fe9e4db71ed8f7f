"""A worker in another language, from docs/job-protocol.md alone: examples/typescript-worker (TypeScript on nats.js)
runs the expense's policy check on the real system, under a consumer of its own, while the processor runs the rest."""

import shutil
import subprocess
from pathlib import Path

import pytest

from contracts.commands import CancelWorkflow, CreateWorkflow, ProcessWorkflow
from tests.conftest import PROJECT, eventually
from tests.integration.driving import SEED, Driver

pytestmark = pytest.mark.integration

EXAMPLE = PROJECT / "examples" / "typescript-worker"


@pytest.fixture(scope="module")
def built() -> Path:
    """Its packages installed (npm ci: the lock file's versions) and its TypeScript compiled."""
    npm = shutil.which("npm")
    assert npm, "the TypeScript worker needs Node.js and npm (scripts/bootstrap.sh checks for them)"
    if not (EXAMPLE / "node_modules" / ".package-lock.json").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=EXAMPLE, check=True)
    subprocess.run([npm, "run", "--silent", "build"], cwd=EXAMPLE, check=True)
    return EXAMPLE / "dist" / "worker.js"


@pytest.fixture
def start_typescript_worker(built, nats_url, topology, start_service, tmp_path):
    """Starts the orchestrator and the processor (the other steps) now, and the TypeScript worker when called: its
    log."""
    settings = {"WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0"}
    start_service("orchestrator", nats_url, topology, **settings)
    start_service("processor", nats_url, topology, WF_PROCESSOR_STEPS="approval.process,expense.pay", **settings)
    log = tmp_path / "typescript-worker.log"
    started: list[subprocess.Popen] = []

    def start() -> Path:
        with log.open("wb") as output:
            started.append(
                subprocess.Popen(
                    ["node", str(built)],
                    env={
                        "PATH": "/usr/bin:/bin",
                        "NATS_URL": nats_url,
                        "WF_PREFIX": topology.prefix,
                        "POLICY_LIMIT": "1000",
                    },  # fmt: skip
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
        return log

    yield start
    for worker in started:
        worker.terminate()
        assert worker.wait(timeout=20) == 0, log.read_text()  # SIGTERM: it stops cleanly


async def test_the_typescript_worker_checks_each_expense_and_the_routes_read_its_results(
    js, topology, start_typescript_worker
):
    typescript_worker = start_typescript_worker()
    driver = Driver(js, topology)
    for workflow_id, amount in (("small", 120), ("large", 50_000)):
        await driver.send(CreateWorkflow(workflow_id=workflow_id, workflow_type="expense", input={"amount": amount}))
        await driver.send(ProcessWorkflow(workflow_id=workflow_id))
    allowed = await driver.reaches("small", "Manager Approval", timeout_s=30)
    assert allowed.context["validate"] == {"output": 0.9}
    refused = await driver.reaches("large", "Error", timeout_s=30)
    assert refused.context["validate"] == {"output": 0} and "score 0" in (refused.error or "")
    logged = await eventually(lambda: typescript_worker.read_text().count("score"), timeout_s=5)
    assert logged == 2, typescript_worker.read_text()


async def test_the_typescript_worker_answers_no_job_whose_workflow_was_cancelled_while_it_waited(
    js, topology, start_typescript_worker
):
    driver = Driver(js, topology)
    await driver.send(CreateWorkflow(workflow_id="withdrawn", workflow_type="expense", input={"amount": 120}))
    await driver.send(ProcessWorkflow(workflow_id="withdrawn"))
    await eventually(lambda: driver.has("withdrawn", "StepScheduled"), timeout_s=20)  # no worker takes it yet
    await driver.send(CancelWorkflow(workflow_id="withdrawn", reason="no longer needed"))
    await eventually(lambda: driver.has("withdrawn", "WorkflowCancelled"))
    typescript_worker = start_typescript_worker()
    await eventually(lambda: "given up" in typescript_worker.read_text(), timeout_s=20)
    assert (await driver.history("withdrawn"))[-1] == "WorkflowCancelled"  # and no result after it
