"""README's "Write your own step", as written: the refund type published with `wf types apply`, its worker
(examples/refund/worker.py) run beside the system, and `wf create --start` taking each refund to where its check
leads. No service knows the type or its step beforehand."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

from services.api.app import create_app
from services.cli.main import main
from tests.conftest import PROJECT, TEST_TOKENS, eventually
from tests.integration.serving import served

pytestmark = pytest.mark.integration


@pytest.fixture
def refund_worker(nats_url, topology, start_service, tmp_path):
    start_service("orchestrator", nats_url, topology, WF_SEND_FAILURE_RATE="0")
    start_service("processor", nats_url, topology)
    environment = {**os.environ, "NATS_URL": nats_url, "WF_PREFIX": topology.prefix, "WORKER_PORT": "0"}
    log = tmp_path / "refund-worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "examples/refund/worker.py"], cwd=PROJECT, env=environment, stdout=output, stderr=output
        )
    yield log
    worker.terminate()
    assert worker.wait(timeout=20) == 0, log.read_text()  # SIGTERM: a clean stop


async def test_the_walk_through_publishes_the_refund_and_its_worker_decides_each_one(
    nats_url, topology, settings_for, refund_worker, capsys
):
    async with served(create_app(settings_for(nats_url, topology))) as address:

        async def wf(*argv: str) -> tuple[int, str]:
            arguments = ["--url", f"http://{address}", "--token", TEST_TOKENS["admin"], *argv]
            code = await asyncio.to_thread(main, arguments)
            return code, capsys.readouterr().out

        async def published() -> bool:  # once the orchestrator answers
            return (await wf("types", "apply", "examples/refund/refund.yaml"))[0] == 0

        await eventually(published, timeout_s=30)
        ends = {}
        for order, amount, expected in (("A-17", 40, "Approval"), ("A-18", 900, "Refused"), ("TEST-1", 5, "Error")):
            code, out = await wf(
                "--json",
                "create",
                "--type",
                "refund",
                "--start",
                "--input",
                json.dumps({"order": order, "amount": amount}),
            )
            assert code == 0, out
            ends[json.loads(out)["workflow_id"]] = expected

        async def decided() -> dict | None:
            seen = {}
            for workflow_id in ends:
                code, out = await wf("--json", "show", workflow_id)
                seen[workflow_id] = json.loads(out)["workflow"]["business_state"] if code == 0 else None
            return seen if seen == ends else None

        await eventually(decided, timeout_s=30)
        code, out = await wf("--json", "show", next(iter(ends)))
        assert json.loads(out)["workflow"]["context"]["check_refund"] == {
            "refundable": True,
            "reason": "within the limit",
        }
