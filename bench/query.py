"""7. The query side: how fast the API lists, searches and answers an inbox from the index as it grows, on each
database; and how far the index lags the log while the cycles run at their peak, and how fast it is rebuilt.

The index is seeded directly (the indexer's own projection, writing the rows a real run would: both shipped types,
their search fields, who each waits for), since driving a million workflows through the system would take hours
here; the lag and the rebuild are measured on workflows driven through the real system (bench/cycles.py). Every
request goes over HTTP to a real api process reading the index."""

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx

from bench.cycles import percentile
from bench.system import System, connected, drop_topology, new_topology, say, wait_http_ok
from contracts.definitions import PublishedType, version_key
from contracts.envelope import utcnow
from contracts.state import Bookkeeping, InfraStatus, WorkflowState
from runtime.index_db import connect
from runtime.streams import ensure_topology
from services.indexer.projection import Change, IndexProjection, migrate
from services.orchestrator.domain.types import WORKFLOW_TYPES

QUERIES = {
    "list": "/workflows?limit=20",
    "search": f"/workflows?type=expense&{quote('amount>=1000', safe='')}&limit=20",
    "inbox": "/me/inbox?limit=20",  # (the api runs open: the caller holds every role)
}
SEED_BATCH = 2000
START = datetime(2026, 9, 1, tzinfo=UTC)


@dataclass
class QueryFigure:
    database: str
    workflows: int
    query: str
    p50_ms: float
    p99_ms: float
    seeded_s: float  # how long seeding up to this size took (directly into the index)


def seeded_state(number: int, rng: random.Random) -> WorkflowState:
    """One workflow as the indexer would write it: half approvals, half expenses; most ended, some waiting."""
    moment = START + timedelta(seconds=number * 7)
    ended = rng.random() < 0.7
    if number % 2:
        business, waiting = ("Finished", ()) if ended else ("Waiting For Approval", ("role:approver",))
        values: dict[str, float | str] = {"output": round(rng.random(), 4)}
        kind = "approval"
    else:
        business, waiting = (
            ("Paid", ())
            if ended
            else rng.choice(
                [("Manager Approval", ("role:approver",)), ("Finance Approval", ("fin-ann", "fin-bob", "fin-cy"))]
            )
        )
        values = {"amount": float(rng.randrange(10, 5000)), "requester": rng.choice(["ann", "bob", "cy", "dee"])}
        kind = "expense"
    return WorkflowState(
        id=f"q{number:08d}",
        type=kind,
        business_state=business,
        created_at=moment,
        updated_at=moment,
        infra_status=InfraStatus.COMPLETED if ended else InfraStatus.WAITING_FOR_EVENT,
        bookkeeping=Bookkeeping(started=True),
        last_sequence=number + 1,
        waiting_for=waiting,
        search_values=values,
    )


async def seed(projection: IndexProjection, have: int, want: int) -> None:
    rng = random.Random(have)
    position = await projection.position()
    for first in range(have, want, SEED_BATCH):
        changes = [
            Change(position + i + 1, state.id, state)
            for i, state in enumerate(seeded_state(n, rng) for n in range(first, min(want, first + SEED_BATCH)))
        ]
        await projection.apply(position, changes)
        position = changes[-1].sequence


async def timed(http: httpx.AsyncClient, path: str, requests: int) -> list[float]:
    for _ in range(5):  # warm: connections, the database's caches
        (await http.get(path)).raise_for_status()
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await http.get(path)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds


async def measure(system: System, databases: dict[str, str], sizes: list[int], requests: int) -> list[QueryFigure]:
    figures: list[QueryFigure] = []
    topology = new_topology("query")
    async with connected(system.url) as nc:
        js = nc.jetstream()
        await ensure_topology(js, topology)
        types = await js.key_value(topology.types_bucket)
        for declared in WORKFLOW_TYPES.values():  # as the orchestrator publishes the shipped types' first versions
            published = PublishedType(
                version=1,
                definition=declared.definition,
                info=declared.describe(),
                published_at=utcnow(),
                published_by="bench",
            )
            await types.put(version_key(declared.name, 1), published.model_dump_json().encode())
        try:
            for database, url in databases.items():
                figures += await _on(system, topology, database, url, sizes, requests)
        finally:
            await drop_topology(js, topology)
    return figures


async def _on(system: System, topology, database: str, url: str, sizes: list[int], requests: int) -> list[QueryFigure]:
    await asyncio.to_thread(migrate, url)
    engine = connect(url)
    projection = IndexProjection(engine)
    await projection.reset()
    api = system.start_service("api", topology, WF_AUTH="off", WF_INDEX_URL=url)
    figures = []
    try:
        await wait_http_ok(f"http://127.0.0.1:{api.port}/healthz", api)
        have, started = 0, time.perf_counter()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api.port}", timeout=30) as http:
            for size in sizes:
                say(f"query, {database}: seeding the index up to {size:,} workflows")
                await seed(projection, have, size)
                have, seeded_s = size, time.perf_counter() - started
                for query, path in QUERIES.items():
                    seconds = await timed(http, path, requests)
                    figure = QueryFigure(
                        database,
                        size,
                        query,
                        percentile(seconds, 0.5) * 1000,
                        percentile(seconds, 0.99) * 1000,
                        seeded_s,
                    )
                    say(f"query, {database}, {size:,}: {query} p50 {figure.p50_ms:.1f} / p99 {figure.p99_ms:.1f} ms")
                    figures.append(figure)
    finally:
        system.stop_services([api])
        await projection.reset()
        await engine.dispose()
    return figures
