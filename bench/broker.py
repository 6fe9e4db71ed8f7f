"""1. The broker's own limit: JetStream publish-with-ack on a stream configured like the events stream.

What one Python client (nats-py) gets from this server, the ceiling any of our services can reach with one
connection: one publish at a time (each awaits its ack), and many in flight (`publish_async`). And the same for the
way the orchestrator appends a decision: an atomic batch (two events, the commit awaited), one at a time and from
several writers at once, since a file-backed stream syncs its file to disk at every atomic commit."""

import asyncio
import os
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.js.client import JetStreamContext

from bench.system import cpu_seconds, drop_topology, new_topology, say
from contracts.events import TransitionTaken
from runtime.streams import ensure_topology

WORKFLOWS = 1000  # the messages go round-robin to this many subjects, as the events of that many workflows would
CONCURRENT_WRITERS = 8


@dataclass
class BrokerLimit:
    awaited_per_s: float
    in_flight_per_s: float
    atomic_per_s: float  # atomic batches of two events, one at a time
    atomic_concurrent_per_s: float  # the same from CONCURRENT_WRITERS writers at once
    payload_bytes: int
    server_cpu_us_per_msg: float  # nats-server's CPU per message stored at the limit (in flight)
    client_cpu_us_per_msg: float  # the Python client's (this process's) CPU per message published at the limit


def sample_event_payload() -> bytes:
    """An event of the size the orchestrator appends."""
    event = TransitionTaken(
        message_id="0199c0de5ab17e0b8c4f3a2d9e1f0a7b-2",
        workflow_id="0199c0de5ab17e0b8c4f3a2d9e1f0a7c",
        occurred_at=datetime.now(UTC),
        causation_id="0199c0de5ab17e0b8c4f3a2d9e1f0a7b",
        trigger="request_approval",
        source="Sending To Queue",
        dest="Waiting For Approval",
    )
    return event.model_dump_json().encode()


async def awaited(js: JetStreamContext, subjects: list[str], payload: bytes, seconds: float) -> float:
    sent, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        await js.publish(subjects[sent % len(subjects)], payload)
        sent += 1
    return sent / (time.perf_counter() - start)


async def in_flight(js: JetStreamContext, subjects: list[str], payload: bytes, seconds: float) -> float:
    """`publish_async` keeps up to 4 000 publishes awaiting their acks; the rate counts only acked messages."""
    sent, start = 0, time.perf_counter()
    futures = []
    while time.perf_counter() - start < seconds:
        futures.append(await js.publish_async(subjects[sent % len(subjects)], payload))
        sent += 1
    await js.publish_async_completed()
    elapsed = time.perf_counter() - start
    failed = sum(1 for future in futures if future.exception() is not None)
    if failed:
        raise RuntimeError(f"{failed} of {sent} async publishes failed")
    return sent / elapsed


async def atomic_batches(nc: Client, subjects: list[str], payload: bytes, seconds: float, writers: int = 1) -> float:
    """Batches/s: each is one fire-and-forget publish and an awaited commit, as the orchestrator appends."""
    js, committed = nc.jetstream(), 0
    deadline = time.perf_counter() + seconds

    async def writer(number: int) -> None:
        nonlocal committed
        while time.perf_counter() < deadline:
            subject, batch_id = subjects[(committed + number) % len(subjects)], uuid.uuid4().hex
            await nc.publish(subject, payload, headers={"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "1"})
            commit = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": "2", "Nats-Batch-Commit": "1"}
            await js.publish(subject, payload, headers=commit)
            committed += 1

    start = time.perf_counter()
    await asyncio.gather(*(writer(number) for number in range(writers)))
    return committed / (time.perf_counter() - start)


async def measure(nc: Client, seconds: float, server_pid: int) -> BrokerLimit:
    js, topology = nc.jetstream(), new_topology("broker")
    await ensure_topology(js, topology)
    subjects = [topology.events_subject(f"w{n}") for n in range(WORKFLOWS)]
    payload = sample_event_payload()
    try:
        await awaited(js, subjects, payload, 0.3)  # warm-up: connection, stream files, subject index
        one = await awaited(js, subjects, payload, seconds)
        say(f"broker: awaited publish {one:,.0f} msg/s ({len(payload)} B messages)")
        server_before, client_before, started = cpu_seconds(server_pid), cpu_seconds(os.getpid()), time.perf_counter()
        many = await in_flight(js, subjects, payload, seconds)
        sent = many * (time.perf_counter() - started)
        server_cpu_us = 1e6 * (cpu_seconds(server_pid) - server_before) / sent
        client_cpu_us = 1e6 * (cpu_seconds(os.getpid()) - client_before) / sent
        say(
            f"broker: publish_async    {many:,.0f} msg/s (CPU per message: nats-server {server_cpu_us:.1f} µs, "
            f"client {client_cpu_us:.1f} µs)"
        )
        atomic = await atomic_batches(nc, subjects, payload, seconds)
        say(f"broker: atomic batch of 2, one at a time  {atomic:,.0f} batches/s")
        atomic_concurrent = await atomic_batches(nc, subjects, payload, seconds, CONCURRENT_WRITERS)
        say(f"broker: atomic batch of 2, {CONCURRENT_WRITERS} writers    {atomic_concurrent:,.0f} batches/s")
        return BrokerLimit(one, many, atomic, atomic_concurrent, len(payload), server_cpu_us, client_cpu_us)
    finally:
        await drop_topology(js, topology)
