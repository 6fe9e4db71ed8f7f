"""Scale-out: a 3-node JetStream cluster with every stream and bucket on 3 replicas, two orchestrators and two
processors sharing their consumers, and one node killed with -9 in the middle of a run. Nothing is lost: every
workflow ends, every invariant holds, and every node holds the same log once the killed one is back."""

import asyncio
import json
import time
import urllib.request
from collections import Counter
from dataclasses import replace
from functools import partial

import nats
import pytest

from bench.fleet import Fleet
from runtime.streams import UNAVAILABLE, ensure_topology, patiently
from services.launcher.nats_server import NatsCluster, NatsServer
from services.orchestrator.maintenance import check
from tests.conftest import eventually
from tests.integration.driving import SEED

pytestmark = pytest.mark.integration

WORKFLOWS = 200
REPLICAS = 2  # of the orchestrator and of the processor
RUN_DEADLINE_S = 60.0


@pytest.fixture
def cluster(tmp_path):
    nodes = NatsCluster(tmp_path / "cluster", log_dir=tmp_path).start()
    yield nodes
    nodes.stop()


async def ensured(js, topology) -> bool:
    """The streams and buckets exist; False while the cluster does not answer (the services create them meanwhile)."""
    try:
        await ensure_topology(js, topology)
        return True
    except UNAVAILABLE:
        return False


async def events_stored(js, topology, at_least: int) -> int | None:
    """How many events the stream holds once it is at least `at_least`; None before, or while it has no leader."""
    try:
        stored = (await js.stream_info(topology.events_stream)).state.last_seq
    except UNAVAILABLE:
        return None
    return stored if stored >= at_least else None


async def carried_on(js, topology, at_least: int, driving: asyncio.Task, fleet: Fleet) -> int:
    """Wait until the stream holds `at_least` events; if it does not, say whether the fleet driving the workflows
    stopped (its error) or the system did (where the workflows are)."""
    try:
        return await eventually(lambda: events_stored(js, topology, at_least=at_least), timeout_s=30)
    except AssertionError as stalled:
        if driving.done():
            driving.result()  # raises what stopped the fleet
        states = Counter(fleet.waiting.values())
        raise AssertionError(f"{stalled}; {len(fleet.ended)} ended, the others as last read: {dict(states)}") from None


async def leader_of(js, stream: str) -> str | None:
    """The node that leads the stream; None while it elects one."""
    try:
        return (await js.stream_info(stream)).cluster.leader
    except UNAVAILABLE:
        return None


def stream_state_on(node: NatsServer, stream: str) -> dict | None:
    """The stream as this node stores it (its own replica), from its monitoring endpoint."""
    url = f"http://127.0.0.1:{node.monitor_port}/jsz?accounts=true&streams=true"
    with urllib.request.urlopen(url, timeout=2) as response:
        report = json.load(response)
    for account in report.get("account_details", []):
        for detail in account.get("stream_detail", []):
            if detail["name"] == stream:
                return detail["state"]
    return None


async def test_no_workflow_and_no_event_is_lost_when_a_node_is_killed(cluster, topology, start_service):
    topology = replace(topology, replicas=3)
    settings = {"WF_REPLICAS": "3", "WF_SEED": str(SEED), "WF_SEND_FAILURE_RATE": "0.25"}
    for _ in range(REPLICAS):
        for name in ("orchestrator", "processor"):
            start_service(name, cluster.url, topology, **settings)

    nc = await nats.connect(servers=cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    driving: asyncio.Task | None = None
    try:
        js = nc.jetstream(timeout=5)
        await eventually(lambda: ensured(js, topology), timeout_s=30)
        info = await js.stream_info(topology.events_stream)
        assert info.config.num_replicas == 3 and info.cluster and len(info.cluster.replicas or []) == 2
        assert (await js.stream_info(f"KV_{topology.state_bucket}")).config.num_replicas == 3

        fleet = Fleet(js, await js.key_value(topology.state_bucket), topology, [f"wf-{i}" for i in range(WORKFLOWS)])
        started = time.monotonic()

        async def drive() -> None:
            await fleet.start_all()
            await fleet.run_until(WORKFLOWS, timeout_s=RUN_DEADLINE_S)

        # Watched from the first create on: starting every workflow first let them run far past mid-run (with every
        # write synced, a publish waits for three disks) before the kill, and too few events were left to carry on.
        driving = asyncio.create_task(drive())

        # Mid-run (a workflow makes about 7 events): crash the node that leads the events stream, where every
        # decision is appended, and bring it back once the other two have carried on for a while.
        watch = nc.jetstream(timeout=0.5)  # asks often while the stream elects a leader
        killed_at_events = await eventually(lambda: events_stored(watch, topology, at_least=2 * WORKFLOWS))
        leader = cluster.node(await eventually(lambda: leader_of(watch, topology.events_stream)))
        leader.stop(kill=True)
        killed_at = time.monotonic() - started
        await carried_on(watch, topology, killed_at_events + 1, driving, fleet)
        resumed_after = time.monotonic() - started - killed_at  # the stream's new leader takes appends
        await carried_on(watch, topology, killed_at_events + WORKFLOWS, driving, fleet)
        new_leader = await eventually(lambda: leader_of(watch, topology.events_stream))
        assert new_leader != leader.name
        await asyncio.to_thread(leader.start, 30)  # ready once it has caught up with the cluster
        back_at = time.monotonic() - started
        await driving
        elapsed = time.monotonic() - started

        ended = [state and state.business_state for state in fleet.states.values()]
        assert ended.count("Finished") + ended.count("Error") == WORKFLOWS
        assert ended.count("Finished") > WORKFLOWS // 2  # most outputs ask for approval (output > 0.25)
        report = await check(js, topology, fleet.sent_commands)
        assert report.ok, report.summary() + "".join(f"\n  {problem}" for problem in report.problems)
        assert report.workflows == WORKFLOWS

        # No event lost on any replica: the killed node holds the same log as the others, without a hole.
        last = (await patiently(partial(js.stream_info, topology.events_stream))).state.last_seq
        assert report.events == last
        held: list = []

        def every_node_holds_the_whole_log() -> bool:
            held[:] = [stream_state_on(node, topology.events_stream) for node in cluster.nodes]
            return all(state and state["last_seq"] == state["messages"] == last for state in held)

        try:
            await eventually(every_node_holds_the_whole_log, timeout_s=20)
        except AssertionError:
            raise AssertionError(f"the nodes hold {held}, not {last} events each") from None
        print(
            f"\n{WORKFLOWS} workflows, {last} events in {elapsed:.1f} s on 3 nodes: {leader.name}, leading the events, "
            f"killed at {killed_at:.1f} s ({killed_at_events} events); appends resumed {resumed_after:.1f} s later "
            f"under {new_leader}; {leader.name} back at {back_at:.1f} s"
        )
    finally:
        if driving and not driving.done():
            driving.cancel()
        await nc.close()
