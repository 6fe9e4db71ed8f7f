"""How often commands of one workflow are applied out of the order they were sent, how often replicas collide, and
how fast 200 workflows run end to end, with 1 and with 2 replicas (the figures of docs/decisions/0007).

    .venv/bin/python scripts/measure_command_order.py              # 1 and 2 replicas, one nats-server
    .venv/bin/python scripts/measure_command_order.py --cluster     # the same on a 3-node cluster (R3 streams)
    .venv/bin/python scripts/measure_command_order.py --measure cycles --runs 3

Each scenario starts its own nats-server (or cluster), N orchestrators and N processors, then publishes two bursts,
every command with its `Nats-Msg-Id`, pipelined as fast as one client can:
  start   Create then Process back to back for each of 300 workflows (as the API's `start` once did, and as any
          client may);
  same    10 commands to each of 40 existing workflows, interleaved across them (a burst on the same workflows).
It waits until every command is answered in the log, then counts, from the log: workflows whose commands were
answered in another order than sent (and the inverted pairs), Process commands refused because their Create had not
been applied yet, and from every orchestrator's /metrics the OCC conflicts and the redeliveries it found applied.

`--measure cycles` instead runs 200 approval workflows (`--workflows`) end to end (Create with start, then Approve
once one waits; sends fail at the default 0.25, so a quarter of the sends wait for a durable retry timer): the time
from the first Create to the last workflow ended, workflows per second, and the OCC conflicts."""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from itertools import combinations
from pathlib import Path

import nats

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from bench.fleet import Fleet  # noqa: E402
from contracts.commands import (  # noqa: E402
    ApproveWorkflow,
    ArchiveWorkflow,
    CancelWorkflow,
    CreateWorkflow,
    ProcessWorkflow,
    RejectWorkflow,
    RetryWorkflow,
)
from contracts.topology import Topology  # noqa: E402
from runtime.streams import ensure_topology  # noqa: E402
from services.launcher.nats_server import NatsCluster, NatsServer, free_port  # noqa: E402
from services.orchestrator.maintenance import read_all_events  # noqa: E402

START_WORKFLOWS = 300
SAME_WORKFLOWS, SAME_COMMANDS = 40, 10
SETTLE_TIMEOUT_S = 120.0


def metric(url: str, name: str, labels: str = "") -> float:
    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and labels in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def publish_all(js, topology: Topology, commands: list) -> None:
    """Pipelined: every publish in flight at once, acks awaited together (order of sending is the list's)."""
    futures = []
    for command in commands:
        subject = topology.commands_subject(command.workflow_id)
        futures.append(
            await js.publish_async(
                subject, command.model_dump_json().encode(), headers={"Nats-Msg-Id": command.message_id}
            )
        )
    await asyncio.gather(*futures)


async def settle(js, topology: Topology, commands: list) -> dict:
    """Wait until every command is answered in its workflow's log; the logs."""
    wanted = {(c.workflow_id, c.message_id) for c in commands}
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        logs = await read_all_events(js, topology)
        answered = {(wf, r.event.causation_id) for wf, log in logs.items() for r in log}
        if wanted <= answered:
            return logs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(wanted - answered)} commands unanswered")
        await asyncio.sleep(0.5)


def order_report(commands: list, logs: dict) -> tuple[int, int]:
    """(workflows whose commands were answered out of the order they were sent, inverted pairs)."""
    sent: dict[str, list[str]] = {}
    for command in commands:
        sent.setdefault(command.workflow_id, []).append(command.message_id)
    workflows = inversions = 0
    for workflow_id, ids in sent.items():
        first_answer = {}
        for position, recorded in enumerate(logs.get(workflow_id, [])):
            first_answer.setdefault(recorded.event.causation_id, position)
        positions = [first_answer[i] for i in ids]
        pairs = sum(1 for a, b in combinations(positions, 2) if a > b)
        workflows += pairs > 0
        inversions += pairs
    return workflows, inversions


def start_service(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log", "wb")
    return subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=env, cwd=PROJECT, stdout=log, stderr=log)


async def wait_ok(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status < 300:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(url)
        await asyncio.sleep(0.1)


async def cycles(js, topology: Topology, ports: list[int], workflows: int) -> dict:
    fleet = Fleet(
        js,
        await js.key_value(topology.state_bucket),
        topology,
        [f"c{i}" for i in range(workflows)],
        sweep_interval_s=0.05,
    )
    began = time.monotonic()
    await fleet.start_all()
    await fleet.run_until(workflows, timeout_s=SETTLE_TIMEOUT_S)
    elapsed = time.monotonic() - began
    commands = sum(metric(f"http://127.0.0.1:{p}/metrics", "wf_commands_total") for p in ports)
    conflicts = sum(metric(f"http://127.0.0.1:{p}/metrics", "wf_occ_conflicts_total") for p in ports)
    return {
        "workflows": workflows,
        "seconds": elapsed,
        "per_s": workflows / elapsed,
        "commands": int(commands),
        "conflicts": int(conflicts),
    }


async def order(js, topology: Topology, ports: list[int]) -> dict:
    figures: dict = {}
    # Burst 1: create + process back to back.
    start = [
        c
        for i in range(START_WORKFLOWS)
        for c in (CreateWorkflow(workflow_id=f"s{i}"), ProcessWorkflow(workflow_id=f"s{i}"))
    ]
    began = time.monotonic()
    await publish_all(js, topology, start)
    logs = await settle(js, topology, start)
    figures["start_s"] = time.monotonic() - began
    figures["start_out_of_order"], _ = order_report(start, logs)
    figures["process_refused_unknown"] = sum(
        1
        for log in logs.values()
        for r in log
        if r.event.type == "CommandRejected"
        and r.event.command_kind == "process"
        and r.event.code == "unknown_workflow"
    )

    # Burst 2: many commands to the same workflows, sent interleaved.
    same_ids = [f"q{i}" for i in range(SAME_WORKFLOWS)]
    creates = [CreateWorkflow(workflow_id=wf) for wf in same_ids]
    await publish_all(js, topology, creates)
    await settle(js, topology, creates)
    kinds = [
        ProcessWorkflow,
        RejectWorkflow,
        ApproveWorkflow,
        CancelWorkflow,
        RetryWorkflow,
        ArchiveWorkflow,
        ApproveWorkflow,
        RejectWorkflow,
        CancelWorkflow,
        ArchiveWorkflow,
    ][:SAME_COMMANDS]
    same = [kind(workflow_id=wf) for kind in kinds for wf in same_ids]

    def counters() -> dict[int, tuple[float, float]]:
        return {
            p: (
                metric(f"http://127.0.0.1:{p}/metrics", "wf_occ_conflicts_total"),
                metric(f"http://127.0.0.1:{p}/metrics", "wf_commands_total", 'outcome="duplicate"'),
            )
            for p in ports
        }

    before = counters()
    began = time.monotonic()
    await publish_all(js, topology, same)
    logs = await settle(js, topology, same)
    figures["same_s"] = time.monotonic() - began
    figures["same_out_of_order"], figures["same_inversions"] = order_report(same, logs)
    after = counters()
    figures["same_conflicts"] = sum(after[p][0] - before[p][0] for p in ports)
    figures["same_redelivered_applied"] = sum(after[p][1] - before[p][1] for p in ports)
    figures["conflicts_total"] = sum(after[p][0] for p in ports)
    figures["redelivered_applied_total"] = sum(after[p][1] for p in ports)
    return figures


async def scenario(measure: str, replicas: int, cluster: bool, root: Path, workflows: int) -> dict:
    root.mkdir(parents=True)
    servers = NatsCluster(root / "nats", log_dir=root).start() if cluster else NatsServer(root / "nats").start()
    topology = Topology(prefix=f"m{uuid.uuid4().hex[:8]}", replicas=3 if cluster else 1)
    ports = [free_port() for _ in range(replicas)]
    send_failure_rate = "0.25" if measure == "cycles" else "0"
    base = {
        **os.environ,
        "NATS_URL": servers.url,
        "WF_PREFIX": topology.prefix,
        "WF_REPLICAS": str(topology.replicas),
        "WF_SEND_FAILURE_RATE": send_failure_rate,
        "WF_SEED": "7",
        "WF_BIND_HOST": "127.0.0.1",
        "WF_PROCESSOR_PORT": "0",
    }
    processes = []
    try:
        for port in ports:
            processes.append(start_service("orchestrator", base | {"WF_ORCHESTRATOR_PORT": str(port)}, root))
            processes.append(start_service("processor", base, root))
        for port in ports:
            await wait_ok(f"http://127.0.0.1:{port}/healthz")
        nc = await nats.connect(servers.url.split(","), max_reconnect_attempts=-1)
        js = nc.jetstream(timeout=10)
        await ensure_topology(js, topology)
        await asyncio.sleep(1.0)  # every replica has started pulling (not part of what is measured)
        figures = {"measure": measure, "replicas": replicas, "cluster": cluster}
        figures |= await (cycles(js, topology, ports, workflows) if measure == "cycles" else order(js, topology, ports))
        await nc.close()
        return figures
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)
        servers.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", action="store_true", help="on a 3-node cluster with R3 streams")
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--measure", choices=["order", "cycles"], nargs="+", default=["order"])
    parser.add_argument("--workflows", type=int, default=200, help="how many workflows `cycles` runs")
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="order-"))
    for run in range(arguments.runs):
        for measure in arguments.measure:
            for replicas in arguments.replicas:
                figures = await scenario(
                    measure, replicas, arguments.cluster, root / f"{measure}-r{replicas}-{run}", arguments.workflows
                )
                print(
                    " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()),
                    flush=True,
                )
    print(f"logs in {root}")


if __name__ == "__main__":
    asyncio.run(main())
