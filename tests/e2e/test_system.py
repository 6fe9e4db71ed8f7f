"""The whole system as `make run` starts it (the launcher, its embedded nats-server, the four services), driven the
way a person with curl would, while a WebSocket client watches the events arrive."""

import asyncio
import json
import os
import signal
import subprocess
import sys
from itertools import count

import httpx
import pytest
import websockets

from contracts.ids import job_id
from runtime.randomness import Randomness
from services.launcher.nats_server import free_port
from tests.conftest import PROJECT, TEST_TOKENS, bearer, eventually

pytestmark = pytest.mark.e2e

SEED = 424242
chance = Randomness(SEED)


@pytest.fixture
def system(tmp_path, tokens_file):
    api_port, broadcaster_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    env |= {
        "WF_DATA_DIR": str(tmp_path / "data"),
        "WF_API_PORT": str(api_port),
        "WF_ORCHESTRATOR_PORT": "0",
        "WF_PROCESSOR_PORT": "0",
        "WF_BROADCASTER_PORT": str(broadcaster_port),
        "WF_SEED": str(SEED),
        "WF_SEND_FAILURE_RATE": "0",
        "WF_API_TOKENS_FILE": str(tokens_file),
    }
    log = open(tmp_path / "launcher.log", "wb")
    launcher = subprocess.Popen(
        [sys.executable, "-m", "services.launcher"], env=env, cwd=PROJECT, stdout=log, stderr=log
    )
    yield {
        "log": tmp_path / "launcher.log",
        "api": f"http://127.0.0.1:{api_port}",
        "broadcaster": f"http://127.0.0.1:{broadcaster_port}",
        "ws": f"ws://127.0.0.1:{broadcaster_port}/ws",
    }
    launcher.send_signal(signal.SIGINT)
    launcher.wait(timeout=30)


async def ready(*services: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            statuses = [(await client.get(f"{url}/healthz")).status_code for url in services]
            return all(status == 200 for status in statuses)
    except httpx.HTTPError:
        return False


async def test_a_person_drives_a_workflow_to_finished_over_http_and_watches_it_live(system):
    api = system["api"]
    await eventually(lambda: ready(api, system["broadcaster"]), timeout_s=60)
    # Unprocessed is visit 1, so the step's first job runs in visit 2 (sends never fail here).
    wf = next(f"e2e-{i}" for i in count() if chance.draw("output", job_id(f"e2e-{i}", 2, 1)) > 0.25)

    # Ann's token: she creates, processes and approves. The WebSocket takes it in its URL, as a browser sends it.
    watching = f"{system['ws']}?workflow_id={wf}&token={TEST_TOKENS['ann']}"
    async with websockets.connect(watching) as socket, httpx.AsyncClient(base_url=api, headers=bearer("ann")) as http:
        created = await http.post("/workflows", json={"type": "approval", "workflow_id": wf})
        assert created.status_code == 201, created.text
        assert created.json()["workflow"]["business_state"] == "Unprocessed"

        assert (await http.post(f"/workflows/{wf}/process")).status_code == 200

        async def waiting_for_approval():
            view = (await http.get(f"/workflows/{wf}")).json()
            return view if view["business_state"] == "Waiting For Approval" else None

        view = await eventually(waiting_for_approval)
        assert view["infra_status"] == "Waiting For Event" and view["output"] > 0.25 and view["attempt"] == 1

        approved = await http.post(f"/workflows/{wf}/approve")
        assert approved.status_code == 200, approved.text
        assert approved.json()["workflow"]["business_state"] == "Finished"
        assert approved.json()["workflow"]["infra_status"] == "Completed"

        refused = await http.post(f"/workflows/{wf}/approve")
        assert refused.status_code == 409 and "Finished" in refused.text

        history = (await http.get(f"/workflows/{wf}/events")).json()
        types = [item["event"]["type"] for item in history]
        assert types[:2] == ["WorkflowCreated", "WorkflowStarted"]
        approvals = [item["event"] for item in history if item["event"].get("trigger") == "approve"]
        assert [event["actor"] for event in approvals] == ["ann"]
        assert types[-1] == "CommandRejected"  # the second approve, refused

        # Every event of the log reached the WebSocket client live, in order, with its stream sequence.
        streamed = []
        while len(streamed) < len(history):
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=10))
            if "event" in message:  # not a heartbeat
                streamed.append(message)
        assert [item["sequence"] for item in streamed] == [item["sequence"] for item in history]
        assert [item["event"]["type"] for item in streamed] == types

        # What an operator sees: the API counts the refused approve, the broadcaster the one client watching.
        api_metrics = (await http.get("/metrics")).text
        refused = 'path="/workflows/{workflow_id}/approve",status_code="409"} 1.0'
        assert any(
            line.startswith("wf_api_requests_total") and line.endswith(refused) for line in api_metrics.splitlines()
        )
        broadcaster_metrics = (await http.get(f"{system['broadcaster']}/metrics")).text
        assert "wf_websocket_clients 1.0" in broadcaster_metrics.splitlines()

    # The WebSocket's URL is logged, but never the token in it.
    assert "WebSocket /ws?workflow_id=" in system["log"].read_text()
    assert TEST_TOKENS["ann"] not in system["log"].read_text()
