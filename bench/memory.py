"""6. Memory: the orchestrator's RSS as workflows pile up waiting for approval, and the broadcaster's with many
WebSocket clients connected.

RSS is VmRSS from /proc/<pid>/status. The orchestrator keeps no workflow in memory (each command loads its state
from the KV snapshot), so its RSS should not grow with the number of waiting workflows."""

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

from bench.cycles import CycleDriver
from bench.system import (
    System,
    connected,
    drop_topology,
    new_topology,
    say,
    start_broadcaster,
    start_workers,
    wait_until,
)
from contracts.events import WorkflowArchived
from runtime.streams import ensure_topology

CONNECT_CONCURRENCY = 50


@dataclass
class OrchestratorMemory:
    target: int
    reached: int  # workflows waiting for approval when the target or the time box was reached
    seconds: float
    time_boxed: bool
    idle_mib: float  # after start-up, before any workflow
    final_mib: float  # with `reached` workflows waiting, once idle again
    peak_mib: float
    processor_idle_mib: float
    processor_final_mib: float
    metrics_idle_bytes: int  # the orchestrator's /metrics page: what a scrape downloads
    metrics_final_bytes: int
    samples: list[tuple[int, float]] = field(default_factory=list)  # (workflows waiting, RSS MiB), about 1 per s


@dataclass
class BroadcasterMemory:
    clients: int
    idle_mib: float
    connected_mib: float
    after_burst_mib: float
    burst_events: int
    burst_s: float  # until every client had every event of the burst


async def metrics_bytes(port: int) -> int:
    def get() -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return len(response.read())

    return await asyncio.to_thread(get)


async def orchestrator_memory(system: System, target: int, time_box_s: float) -> OrchestratorMemory:
    topology = new_topology("memo")
    async with connected(system.url) as nc:
        js = nc.jetstream()
        orchestrators, processors = await start_workers(system, js, topology, 1, WF_SEND_FAILURE_RATE="0")
        orchestrator, processor = orchestrators[0], processors[0]
        try:
            await asyncio.sleep(1.0)
            idle, processor_idle = orchestrator.rss_mib(), processor.rss_mib()
            metrics_idle = await metrics_bytes(orchestrator.port)
            say(
                f"memory: orchestrator idle {idle:.1f} MiB; leaving up to {target:,} workflows waiting for approval "
                f"(time box {time_box_s:g} s)"
            )
            driver = CycleDriver(nc, topology, in_flight=256, leave_waiting=target)
            started = time.perf_counter()
            await driver.start()
            samples = [(0, idle)]
            while driver.waiting < target and time.perf_counter() - started < time_box_s:
                await asyncio.sleep(1.0)
                orchestrator.check_alive()
                samples.append((driver.waiting, orchestrator.rss_mib()))
                if len(samples) % 5 == 0:
                    say(f"memory:   {driver.waiting:6,} waiting, orchestrator RSS {samples[-1][1]:.1f} MiB")
            time_boxed = driver.waiting < target
            await driver.drain()
            seconds = time.perf_counter() - started
            await asyncio.sleep(1.0)
            final = orchestrator.rss_mib()
            samples.append((driver.waiting, final))
            metrics_final = await metrics_bytes(orchestrator.port)
            result = OrchestratorMemory(
                target=target,
                reached=driver.waiting,
                seconds=seconds,
                time_boxed=time_boxed,
                idle_mib=idle,
                final_mib=final,
                peak_mib=max(rss for _, rss in samples),
                processor_idle_mib=processor_idle,
                processor_final_mib=processor.rss_mib(),
                metrics_idle_bytes=metrics_idle,
                metrics_final_bytes=metrics_final,
                samples=samples,
            )
        finally:
            system.stop_services([*orchestrators, *processors])
            await drop_topology(js, topology)
    say(
        f"memory: orchestrator {result.idle_mib:.1f} MiB idle → {result.final_mib:.1f} MiB with {result.reached:,} "
        f"waiting (peak {result.peak_mib:.1f}; {result.seconds:.0f} s{', time-boxed' if time_boxed else ''})"
    )
    say(
        f"memory: processor {result.processor_idle_mib:.1f} → {result.processor_final_mib:.1f} MiB; orchestrator's "
        f"/metrics {result.metrics_idle_bytes:,} → {result.metrics_final_bytes:,} B"
    )
    return result


class Client:
    """One WebSocket client that counts the events it receives."""

    def __init__(self) -> None:
        self.received = 0
        self.socket: ClientConnection | None = None
        self.task: asyncio.Task | None = None

    async def open(self, url: str) -> None:
        self.socket = socket = await connect(url, max_queue=None, open_timeout=30)
        self.task = asyncio.create_task(self._read(socket))

    async def _read(self, socket: ClientConnection) -> None:
        async for text in socket:
            if "event" in json.loads(text):
                self.received += 1

    async def close(self) -> None:
        if self.task:
            self.task.cancel()
        if self.socket:
            await self.socket.close()


async def broadcaster_memory(system: System, clients: int, burst_events: int = 20) -> BroadcasterMemory:
    topology = new_topology("memb")
    async with connected(system.url) as nc:
        js = nc.jetstream()
        await ensure_topology(js, topology)
        broadcaster, port = await start_broadcaster(system, topology)
        sockets: list[Client] = []
        try:
            await asyncio.sleep(0.5)
            idle = broadcaster.rss_mib()
            url = f"ws://127.0.0.1:{port}/ws"
            limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

            async def open_one() -> None:
                async with limit:
                    client = Client()
                    sockets.append(client)
                    await client.open(url)

            await asyncio.gather(*(open_one() for _ in range(clients)))
            await asyncio.sleep(0.5)
            connected_rss = broadcaster.rss_mib()
            say(f"memory: broadcaster {idle:.1f} MiB idle → {connected_rss:.1f} MiB with {clients:,} WebSocket clients")
            started = time.perf_counter()
            for number in range(burst_events):
                event = WorkflowArchived(workflow_id=f"burst{number}")
                await js.publish(topology.events_subject(event.workflow_id), event.model_dump_json().encode())

            async def all_delivered() -> bool:
                broadcaster.check_alive()
                return all(client.received >= burst_events for client in sockets)

            await wait_until(all_delivered, 60, f"{burst_events} events to reach {clients} clients")
            burst_s = time.perf_counter() - started
            after = broadcaster.rss_mib()
            say(
                f"memory: broadcaster {after:.1f} MiB after relaying {burst_events} events to every client "
                f"({burst_events * clients:,} messages in {burst_s:.2f} s)"
            )
        finally:
            await asyncio.gather(*(client.close() for client in sockets), return_exceptions=True)
            system.stop_services([broadcaster])
            await drop_topology(js, topology)
    return BroadcasterMemory(clients, idle, connected_rss, after, burst_events, burst_s)
