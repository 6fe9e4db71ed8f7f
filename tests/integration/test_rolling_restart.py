"""A graceful stop loses nothing. SIGTERM drains a service: the handlers running finish and ack, and what it had fetched
but not started is nak'd, redelivered at once rather than after the consumer's ack_wait (runtime/draining.py). So a
rolling restart, each service stopped with SIGTERM and replaced in turn while workflows run, loses no workflow, no
command and no event, and a WebSocket client that resumes across the broadcaster's restart gets every event once."""

import asyncio
import time

import pytest

from bench.chaos import LogFollower
from bench.fleet import Fleet
from contracts.topology import Topology
from services.launcher.nats_server import free_port
from services.orchestrator.maintenance import check
from tests.conftest import eventually
from tests.integration.driving import SEED

pytestmark = pytest.mark.integration

WORKFLOWS = 150
STARTS_PER_S = 10.0  # the workflows start over 15 s, so work is in flight at every restart
EVENTS_BETWEEN_RESTARTS = 100  # the previous replacement has worked a while before the next stop
STOP_WITHIN_S = 8.0  # a running job is waited for up to GRACEFUL_TIMEOUT_S (5 s), then nak'd
CONSUMERS = {"orchestrator": "commands_stream", "processor": "jobs_stream"}  # durable name -> its stream


async def held_by_a_stopped_process(js, topology: Topology, durable: str) -> int:
    """How many messages the consumer still counts as handed out to someone while no service pulls from it. The test
    takes everything it can get at once (well within ack_wait), and gives it back."""
    stream = getattr(topology, CONSUMERS[durable])
    subscription = await js.pull_subscribe_bind(durable, stream)
    try:
        try:
            taken = await subscription.fetch(1000, timeout=0.5)
        except TimeoutError:
            taken = []
        outstanding = (await js.consumer_info(stream, durable)).num_ack_pending
        for message in taken:
            await message.nak()
        return outstanding - len(taken)
    finally:
        await subscription.unsubscribe()


async def events_stored(js, topology: Topology) -> int:
    return (await js.stream_info(topology.events_stream)).state.last_seq


async def events_reach(js, topology: Topology, count: int) -> bool:
    return await events_stored(js, topology) >= count


async def test_a_rolling_restart_of_every_service_loses_nothing(nats_url, topology, js, start_service):
    def start(name: str):
        ports = {"WF_API_PORT": str(free_port()), "WF_BROADCASTER_PORT": str(free_port())}
        return start_service(name, nats_url, topology, WF_SEED=str(SEED), WF_AUTH="off", **ports)

    running = {name: start(name) for name in ("orchestrator", "processor", "api", "broadcaster")}
    follower = LogFollower(lambda: f"ws://127.0.0.1:{running['broadcaster'].env['WF_BROADCASTER_PORT']}/ws")
    fleet = Fleet(js, await js.key_value(topology.state_bucket), topology, [f"wf-{i}" for i in range(WORKFLOWS)])
    tasks = [asyncio.create_task(work) for work in (follower.follow(), fleet.start_all(STARTS_PER_S))]
    driving = asyncio.create_task(fleet.run_until(WORKFLOWS, timeout_s=90))
    try:
        for name in ("orchestrator", "processor", "api", "broadcaster"):
            mark = await events_stored(js, topology)
            await eventually(lambda: events_reach(js, topology, mark + EVENTS_BETWEEN_RESTARTS), timeout_s=30)
            stopping = time.monotonic()
            code = await asyncio.to_thread(running[name].stop)
            assert code == 0, f"{name} exited with {code} on SIGTERM"
            assert time.monotonic() - stopping < STOP_WITHIN_S, f"{name} took {time.monotonic() - stopping:.1f} s"
            if name in CONSUMERS:  # what it fetched and did not settle, and what reached it late, it gave back
                held = await held_by_a_stopped_process(js, topology, name)
                assert held == 0, f"{name} left {held} message(s) held until the ack wait"
            running[name] = start(name)
        await driving
        report = await check(js, topology, fleet.sent_commands)
        assert report.ok and report.workflows == WORKFLOWS, report.summary()
        assert len(fleet.ended) == WORKFLOWS
        await eventually(lambda: follower.position >= report.events)
        received = follower.sequences
        assert follower.connections >= 2  # it resumed across the broadcaster's restart
        assert received == list(range(1, len(received) + 1)), "a gap, a duplicate or a reordering"
    finally:
        for task in (*tasks, driving):
            task.cancel()
